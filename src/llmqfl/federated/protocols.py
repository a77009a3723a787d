"""What the federated engine needs from the quantum layer (``llmqfl.quantum``), as protocols.

The engine talks to an evaluator (class probabilities, cumulative execution counters) and a local
trainer (``llmqfl.quantum.training.train_local`` with the optimizer bound); tests pass doubles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


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


@dataclass(frozen=True)
class Usage:
    """Execution counters between two snapshots of an evaluator's ``stats``."""

    circuits: int = 0
    shots: int = 0
    jobs: int = 0
    seconds: float = 0.0

    def __sub__(self, other: Usage) -> Usage:
        return Usage(
            self.circuits - other.circuits,
            self.shots - other.shots,
            self.jobs - other.jobs,
            self.seconds - other.seconds,
        )


def snapshot(evaluator: EvaluatorLike) -> Usage:
    """The evaluator's cumulative counters now (fields of ``EvaluationStats``)."""
    stats = evaluator.stats
    return Usage(
        circuits=int(stats.circuits),
        shots=int(stats.shots),
        jobs=int(stats.jobs),
        seconds=float(stats.seconds),
    )
