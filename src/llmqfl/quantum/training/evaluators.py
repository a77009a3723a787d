"""Evaluators: class probabilities of a model for a batch of items and one or many weight sets.

Two implementations behind one protocol, chosen by :func:`make_evaluator`:

* exact (``backend is None`` or an ideal ``aer`` backend with ``shots is None``): the batched
  statevector engine of :mod:`llmqfl.quantum.simulators.exact`, no circuit per item;
* primitive (shots, noise, fake devices, hardware): :mod:`llmqfl.quantum.training.primitive`, one SamplerV2
  call per evaluation with every item and weight set bound by parameter broadcasting.

Both keep :class:`EvaluationStats` so the federated accounting can report work done.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llmqfl.quantum.models.circuits import QuantumModel
from llmqfl.quantum.simulators.exact import ExactEngine
from llmqfl.quantum.training.evaluator_base import (
    BaseEvaluator,
    EvaluationStats,
    Evaluator,
    validate_features,
    validate_weights,
)

__all__ = [
    "EvaluationStats",
    "Evaluator",
    "ExactEvaluator",
    "is_exact_backend",
    "make_evaluator",
    "validate_features",
    "validate_weights",
]


class ExactEvaluator(BaseEvaluator):
    """Ideal-simulator probabilities (exact, deterministic)."""

    def __init__(self, model: QuantumModel, *, seed: int = 0) -> None:
        self.model = model
        self.seed = seed
        self.stats = EvaluationStats()
        self._engine = ExactEngine(model)

    def _probabilities(self, features: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return self._engine.probabilities(features, weights)


def is_exact_backend(backend: Any) -> bool:
    """True for no backend, or a kind whose shots-null path is exact (``aer``) without shots."""
    if backend is None:
        return True
    if getattr(backend, "shots", None) is not None:
        return False
    return bool(backend.traits["exact_without_shots"])


def make_evaluator(model: QuantumModel, *, backend: Any = None, seed: int) -> Evaluator:
    """The exact evaluator for ideal, shot-free runs; else the primitive evaluator on ``backend``."""
    if not isinstance(model, QuantumModel):
        raise TypeError(f"model: expected a QuantumModel, got {type(model).__name__}")
    if is_exact_backend(backend):
        return ExactEvaluator(model, seed=seed)
    from llmqfl.quantum.training.primitive import PrimitiveEvaluator  # qiskit primitives only when needed (one-way)

    return PrimitiveEvaluator(model, backend=backend, seed=seed)
