"""What the federated engine needs from the quantum layer (``llmqfl.quantum``), as protocols.

The engine talks to an evaluator (class probabilities, cumulative execution counters) and a local
trainer (``llmqfl.quantum.training.local_training.train_local`` with the optimizer bound); tests pass doubles.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from llmqfl.contracts import Usage

__all__ = ["EvaluatorLike", "LocalResultLike", "LocalTrainer", "Usage", "snapshot"]


class EvaluatorLike(Protocol):
    """``probabilities(features (n, q), weights (P,)) -> (n, C)``; ``stats`` counts all work so far."""

    stats: Any

    def probabilities(self, features: np.ndarray, weights: np.ndarray) -> np.ndarray: ...


class LocalResultLike(Protocol):
    weights: np.ndarray
    loss: float
    nfev: int


class LocalTrainer(Protocol):
    """Signature of ``train_local`` once the optimizer name and learning rate are bound."""

    def __call__(
        self,
        evaluator: EvaluatorLike,
        features: np.ndarray,
        labels: np.ndarray,
        *,
        x0: np.ndarray,
        maxiter: int,
        seed: int,
        teacher_probs: np.ndarray | None = None,
        distill_weight: float = 0.0,
        temperature: float = 2.0,
    ) -> LocalResultLike: ...


def snapshot(evaluator: EvaluatorLike) -> Usage:
    """The evaluator's cumulative counters now, as an independent :class:`llmqfl.contracts.Usage`."""
    stats = evaluator.stats
    return Usage(
        objective_evaluations=int(getattr(stats, "objective_evaluations", 0)),
        circuits=int(stats.circuits),
        shots=int(stats.shots),
        jobs=int(stats.jobs),
        seconds=float(stats.seconds),
    )
