"""Aggregators (``llmqfl.registry`` kind ``aggregator``); the built-in is FedAvg (McMahan et al. 2017)
over the clients selected in a round, weighted by train size.

theta_bar = sum_{i in S} n_i / (sum_{j in S} n_j) * theta_i. The paper's code takes an unweighted
mean over all clients (D5 in ``docs/differences.md``; the ``mean`` aggregator); with equal shards
the two agree, with a Dirichlet partition they do not, and the weighted form is the one FedAvg's
convergence argument uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from llmqfl.averaging import weighted_mean
from llmqfl.registry import register


@runtime_checkable
class Aggregator(Protocol):
    """The new global weights from the selected clients' weights and train sizes (keys: client ids)."""

    def aggregate(self, weights: Mapping[int, np.ndarray], sizes: Mapping[int, int]) -> np.ndarray: ...


@register("aggregator", "fedavg")
class FedAvg:
    """Size-weighted mean (see :func:`fedavg`)."""

    def aggregate(self, weights: Mapping[int, np.ndarray], sizes: Mapping[int, int]) -> np.ndarray:
        return fedavg(weights, sizes)


@register("aggregator", "mean")
class Mean:
    """Unweighted mean over the selected clients (the paper's code, which weighs every client alike)."""

    def aggregate(self, weights: Mapping[int, np.ndarray], sizes: Mapping[int, int]) -> np.ndarray:
        return fedavg(weights, dict.fromkeys(weights, 1))


def fedavg(weights: Mapping[int, np.ndarray], sizes: Mapping[int, int]) -> np.ndarray:
    """Size-weighted mean of the clients' weight vectors (keys: client ids)."""
    if not weights:
        raise ValueError("fedavg needs at least one client's weights")
    missing = sorted(set(weights) - set(sizes))
    if missing:
        raise ValueError(f"fedavg: no train size for clients {missing}")
    shapes = {np.shape(w) for w in weights.values()}
    if len(shapes) != 1:
        raise ValueError(f"fedavg: clients sent weights of different shapes {sorted(shapes)}")
    if any(sizes[c] <= 0 for c in weights):
        raise ValueError("fedavg: every aggregated client needs a positive train size")
    return _fedavg(weights, sizes)


def _fedavg(weights: Mapping[int, np.ndarray], sizes: Mapping[int, int]) -> np.ndarray:
    clients = sorted(weights)  # fixed order: float sums are order dependent
    return weighted_mean([weights[c] for c in clients], [sizes[c] for c in clients])
