"""Scores of the global or a local model on one item set: accuracy, weighted F1, CE (nats).

Thin wrapper over :mod:`llmqfl.quantum.training.loss`, so the federated history uses exactly the loss the
local training minimises (same clipping, natural log), and an empty set scores NaN instead of failing.
"""

from __future__ import annotations

import math

import numpy as np

from llmqfl.quantum.training.loss import accuracy, cross_entropy, weighted_f1


def classification_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``accuracy``, weighted ``f1`` and ``loss`` (mean natural-log CE); NaN for an empty set."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return {"accuracy": math.nan, "f1": math.nan, "loss": math.nan}
    return {
        "accuracy": accuracy(probs, labels),
        "f1": weighted_f1(probs, labels),
        "loss": float(cross_entropy(probs, labels)),
    }
