"""What every evaluator shares: work counters, the protocol, input checks and output shaping.

Its own module so that both implementations (:mod:`llmqfl.quantum.training.evaluators` for the exact path,
:mod:`llmqfl.quantum.training.primitive` for shots) build on it without importing each other.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

import numpy as np

from llmqfl.contracts import Usage
from llmqfl.errors import DataError
from llmqfl.quantum.models.circuits import QuantumModel

# The work counters are the run's one usage counter (evaluators, client updates, server rows).
EvaluationStats = Usage


@runtime_checkable
class Evaluator(Protocol):
    """What training and scoring need from an engine."""

    model: QuantumModel
    stats: EvaluationStats

    def probabilities(self, features: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """features (n_items, n_qubits); weights (n_params,) -> (n_items, n_classes),
        or (n_sets, n_params) -> (n_sets, n_items, n_classes)."""
        ...


def validate_features(model: QuantumModel, features: np.ndarray) -> np.ndarray:
    """Float array (n_items, n_inputs), finite; a clear DataError otherwise."""
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != model.n_inputs:
        raise DataError(
            f"features: expected shape (n_items, {model.n_inputs}) for a {model.n_qubits}-qubit "
            f"{model.kind}, got {array.shape}"
        )
    if array.shape[0] == 0:
        raise DataError("features: no items")
    if not np.all(np.isfinite(array)):
        raise DataError("features: contain NaN or infinite values")
    return array


def validate_weights(model: QuantumModel, weights: np.ndarray) -> tuple[np.ndarray, bool]:
    """(n_sets, n_params) float array and whether the caller passed a single set."""
    array = np.asarray(weights, dtype=np.float64)
    single = array.ndim == 1
    if single:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != model.n_params or array.shape[0] == 0:
        raise ValueError(
            f"weights: expected shape ({model.n_params},) or (n_sets, {model.n_params}), got {np.shape(weights)}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError("weights: contain NaN or infinite values")
    return array, single


class BaseEvaluator:
    """Validation, stats and output shaping shared by both paths."""

    model: QuantumModel
    stats: EvaluationStats

    def probabilities(self, features: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Class probabilities; see :class:`Evaluator`."""
        feature_array = validate_features(self.model, features)
        weight_array, single = validate_weights(self.model, weights)
        start = time.perf_counter()
        probs = self._probabilities(feature_array, weight_array)
        self.stats.seconds += time.perf_counter() - start
        n_sets, n_items = weight_array.shape[0], feature_array.shape[0]
        self.stats.objective_evaluations += n_sets
        self.stats.circuits += n_sets * n_items
        return probs[0] if single else probs

    def _probabilities(self, features: np.ndarray, weights: np.ndarray) -> np.ndarray:
        raise NotImplementedError
