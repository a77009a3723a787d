"""A federated client: its quantum features, its LLM signal, and one round of local training.

Plain object, no transport. Each round the client starts from the GLOBAL weights it is sent (never
from its own previous fit: the paper's VQC paths lose the aggregate through ``warm_start``, D6 in
``docs/differences.md``), trains with its current ``maxiter``, and returns its weights, its losses
and what the training cost.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from llmqfl.federated.protocols import EvaluatorLike, LocalTrainer, Usage, snapshot
from llmqfl.federated.scores import classification_metrics


@dataclass(frozen=True)
class ClientData:
    """One client's quantum features (n, n_qubits), labels, and LLM outputs.

    ``teacher_probs`` (n_train, C) are its fine-tuned LLM's soft labels for its train items (None
    without an LLM); ``llm_loss`` its LLM's natural-log eval loss (NaN without an LLM).
    """

    client: int
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    teacher_probs: np.ndarray | None = None
    llm_loss: float = math.nan

    def __post_init__(self) -> None:
        if len(self.train_x) != len(self.train_y) or len(self.test_x) != len(self.test_y):
            raise ValueError(f"client {self.client}: features and labels differ in length")
        if len(self.train_y) == 0:
            raise ValueError(f"client {self.client}: no train items")
        if self.teacher_probs is not None and len(self.teacher_probs) != len(self.train_y):
            raise ValueError(
                f"client {self.client}: {len(self.teacher_probs)} teacher rows for {len(self.train_y)} train items"
            )

    @property
    def n_train(self) -> int:
        return len(self.train_y)


@dataclass(frozen=True)
class ClientUpdate:
    """What a client sends back after a round, plus its own bookkeeping."""

    client: int
    weights: np.ndarray
    objective: float  # final local objective (CE, + distillation term when on)
    train_loss: float  # CE of the local weights on the train items: the J of guidance and selection
    train_accuracy: float
    nfev: int
    usage: Usage
    compute_seconds: float


class Client:
    """Holds a client's data; :meth:`train` runs one round of local training."""

    def __init__(self, data: ClientData, *, trainer: LocalTrainer, distill_weight: float, temperature: float) -> None:
        if distill_weight > 0 and data.teacher_probs is None:
            raise ValueError(f"client {data.client}: distillation needs teacher probabilities")
        self.data = data
        self._trainer = trainer
        self._distill_weight = float(distill_weight)
        self._temperature = float(temperature)

    @property
    def id(self) -> int:
        return self.data.client

    def train(self, evaluator: EvaluatorLike, *, global_weights: np.ndarray, maxiter: int, seed: int) -> ClientUpdate:
        """Train from ``global_weights`` for at most ``maxiter`` optimizer steps."""
        if maxiter < 1:
            raise ValueError(f"client {self.id}: maxiter must be >= 1, got {maxiter}")
        before = snapshot(evaluator)
        start = time.perf_counter()
        result = self._trainer(
            evaluator,
            self.data.train_x,
            self.data.train_y,
            x0=np.array(global_weights, dtype=np.float64, copy=True),
            maxiter=int(maxiter),
            seed=int(seed),
            teacher_probs=self.data.teacher_probs if self._distill_weight > 0 else None,
            distill_weight=self._distill_weight,
            temperature=self._temperature,
        )
        weights = np.asarray(result.weights, dtype=np.float64)
        # one batched evaluation of the trained weights: train accuracy and the CE that guidance compares
        train_metrics = classification_metrics(evaluator.probabilities(self.data.train_x, weights), self.data.train_y)
        seconds = time.perf_counter() - start
        return ClientUpdate(
            client=self.id,
            weights=weights,
            objective=float(result.loss),
            train_loss=train_metrics["loss"],
            train_accuracy=train_metrics["accuracy"],
            nfev=int(result.nfev),
            usage=snapshot(evaluator) - before,
            compute_seconds=seconds,
        )
