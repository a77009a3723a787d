"""The trained quantum classifier as an MLflow ``python_function`` model.

``mlflow.pyfunc.load_model(uri).predict(frame)`` takes a data frame of raw items (column ``item``:
DNA or text; or the feature columns of a ``data.feature_columns`` run) and returns one row per item
with ``label``, ``class_index`` and ``prob_<class>``. The model's artifacts are one
:mod:`llmqfl.serving.bundle` folder; the python model is this module's :class:`QuantumClassifier`,
so loading needs the ``llmqfl`` package importable (as an sklearn model needs sklearn).
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc

from llmqfl.serving.bundle import ITEM_COLUMN, Bundle

ARTIFACT_KEY = "bundle"
MODEL_NAME = "quantum-classifier"  # a model logged without experiment and arm (llmqfl.serving tests, older runs)
# what predict imports; pinned to this environment's versions (the llmqfl package itself is not on PyPI)
_REQUIREMENTS = ("mlflow", "numpy", "pandas", "qiskit", "scipy", "sympy", "threadpoolctl", "scikit-learn")


class QuantumClassifier(mlflow.pyfunc.PythonModel):
    """Loads the bundle from the model's artifacts; predicts on a data frame of raw items."""

    def load_context(self, context: Any) -> None:
        self.bundle = Bundle(context.artifacts[ARTIFACT_KEY])

    def predict(self, context, model_input, params=None):  # MLflow's signature; no type hints on purpose
        return self.bundle.predict(model_input)


def pip_requirements() -> list[str]:
    """``name==version`` of what predict imports, as installed here."""
    return [f"{name}=={metadata.version(name)}" for name in _REQUIREMENTS]


def signature(bundle: Bundle) -> Any:
    """Input: the item column (or the feature columns); output: label, class index, one probability per class."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    columns = bundle.feature_columns
    if columns is not None:
        inputs = Schema([ColSpec("double", c) for c in columns])
    else:
        inputs = Schema([ColSpec("string", bundle.features_meta.get("item_column", ITEM_COLUMN))])
    outputs = Schema(
        [ColSpec("string", "label"), ColSpec("long", "class_index")]
        + [ColSpec("double", f"prob_{name}") for name in bundle.class_names]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def model_name(experiment: str, arm: str, seed: Any = None) -> str:
    """What the MLflow UI lists a logged model as: ``{experiment}-{arm}`` (``-seed{s}`` when the seed is known)."""
    parts = [str(experiment), str(arm)] + ([f"seed{seed}"] if seed not in (None, "") else [])
    return "-".join(p for p in parts if p) or MODEL_NAME


def log_pyfunc(run_id: str, bundle_dir: str | Path, *, name: str = MODEL_NAME, tags: dict[str, str] | None = None,
               input_example: Any = None):
    """Log ``bundle_dir`` as an MLflow logged model of run ``run_id``; returns MLflow's ``ModelInfo``.

    ``input_example`` (a few raw items as the model's input frame) is saved beside the signature, so the
    MLflow UI and ``mlflow models predict`` show what the model takes.
    """
    from mlflow.models import Model

    bundle = Bundle(bundle_dir)
    return Model.log(
        artifact_path=None,  # MLflow 3 names logged models by ``name``; the positional is the deprecated path
        name=name,
        flavor=mlflow.pyfunc,
        run_id=run_id,
        python_model=QuantumClassifier(),
        artifacts={ARTIFACT_KEY: str(bundle_dir)},
        signature=signature(bundle),
        input_example=input_example,
        pip_requirements=pip_requirements(),
        metadata={"llmqfl_version": metadata.version("llmqfl"), **_flat_info(bundle)},
        tags=tags,
    )


def _flat_info(bundle: Bundle) -> dict[str, Any]:
    return {
        "class_names": bundle.class_names,
        "feature_source": bundle.features_meta["source"],
        **{k: v for k, v in bundle.meta.get("info", {}).items() if isinstance(v, str | int | float)},
    }
