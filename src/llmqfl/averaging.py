"""The size-weighted mean that FedAvg is: sum_i n_i / (sum_j n_j) * x_i, in float64, in a fixed order.

One implementation for both federations: the quantum weights (``federated.aggregation``) and the LoRA
adapters' tensors (``llm.fedavg``). It sits below both layers so either may import it; it knows
arrays only (a torch tensor goes through ``numpy()``), so it pulls in neither torch nor the round loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def size_weights(sizes: Sequence[float]) -> np.ndarray:
    """n_i / sum_j n_j; every size >= 0 and a positive total, else :class:`ValueError`."""
    coef = np.asarray(sizes, dtype=np.float64)
    if coef.ndim != 1 or not len(coef):
        raise ValueError("a weighted mean needs at least one size")
    if (coef < 0).any() or not np.isfinite(coef).all() or coef.sum() <= 0:
        raise ValueError(f"sizes must be finite and >= 0 with a positive total, got {list(sizes)}")
    return coef / coef.sum()


def weighted_mean(values: Sequence[np.ndarray], sizes: Sequence[float]) -> np.ndarray:
    """The size-weighted mean of same-shaped arrays (float64), summed in the order given."""
    if len(values) != len(sizes):
        raise ValueError(f"{len(values)} arrays but {len(sizes)} sizes")
    coef = size_weights(sizes)
    stacked = np.stack([np.asarray(v, dtype=np.float64) for v in values])
    return np.tensordot(coef, stacked, axes=1)
