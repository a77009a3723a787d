"""llmqfl: LLM-guided quantum federated learning (Gurung & Pokhrel, arXiv 2505.18656) as a pipeline.

The public API, imported on first use so that ``import llmqfl`` stays cheap (no torch, qiskit or
mlflow until a name that needs them is asked for)::

    model = llmqfl.load_model("results/default/qfl/llm_guided/seed_0/model")   # or an MLflow URI
    model.predict(["ACGT...", "TTGA..."])                                       # label, class_index, prob_*
    llmqfl.compare_experiments(["default", "variant"])                          # what `llmqfl compare` prints
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "load_model": "llmqfl.serving",
    "compare_experiments": "llmqfl.evaluation.compare",
    "load_config": "llmqfl.config",
    "validate_config": "llmqfl.config",
    "derive_seed": "llmqfl.config",
    "provenance_table": "llmqfl.provenance",
    "LlmqflError": "llmqfl.errors",
    "ConfigError": "llmqfl.errors",
    "DataError": "llmqfl.errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'llmqfl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
