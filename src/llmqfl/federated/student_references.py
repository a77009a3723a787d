"""The quantum student's natural bounds: centralised and local-only training on the run's own splits.

A federated number is read between two references (issue 22): *centralised*, one model trained on the
pooled client train items (what the data allow when they may move), and *local only*, each client
training alone on its own items (what a client gets without the federation; the mean over clients).
Both start from the run's initial weights, use the run's optimizer and learning rate, and train
``rounds x maxiter`` steps: what one client of the baseline arm trains over its rounds. Both are scored
on the server's test set, the set the arms are compared on. Computed in the baseline arm's run
(``qfl.references``), once per seed, on the exact simulator or the run's backend.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from llmqfl.config import derive_seed
from llmqfl.federated.scores import classification_metrics


def student_references(prepared: Any, backend: Any) -> dict[str, Any]:
    """``{"centralised": {...}, "local_only": {...}}``: server-test accuracy, F1, steps, seconds."""
    from llmqfl.quantum import make_evaluator, train_local

    optimizer = prepared.config.qfl.optimizer
    steps = int(prepared.plan.rounds) * int(optimizer.maxiter)
    evaluator = make_evaluator(prepared.model, backend=backend, seed=derive_seed(prepared.base_seed, "references"))
    server = prepared.server

    def fit(x: np.ndarray, y: np.ndarray, name: str) -> tuple[dict[str, float], float]:
        began = time.perf_counter()
        result = train_local(evaluator, x, y, x0=prepared.weights, optimizer=optimizer.name, maxiter=steps,
                             seed=derive_seed(prepared.base_seed, "references", name),
                             learning_rate=optimizer.learning_rate)
        scores = classification_metrics(evaluator.probabilities(server.test_x, result.weights), server.test_y)
        return scores, time.perf_counter() - began

    pooled_x = np.vstack([c.train_x for c in prepared.clients])
    pooled_y = np.concatenate([c.train_y for c in prepared.clients])
    central, central_seconds = fit(pooled_x, pooled_y, "centralised")
    local = [fit(c.train_x, c.train_y, f"client_{c.client}") for c in prepared.clients]
    per_client = [scores["accuracy"] for scores, _ in local]
    return {
        "steps": steps,
        "centralised": {"test_accuracy": central["accuracy"], "test_f1": central["f1"], "seconds": central_seconds,
                        "n_train": len(pooled_y)},
        "local_only": {"test_accuracy": float(np.mean(per_client)),
                       "test_f1": float(np.mean([scores["f1"] for scores, _ in local])),
                       "per_client": per_client, "seconds": float(sum(s for _, s in local))},
    }
