"""Client-level differential privacy of the quantum weight updates (``privacy.quantum``, docs/privacy.md).

Each selected client's update (its trained weights minus the round's global weights) is clipped to
L2 norm C with Flower's own clipping (``flwr.supercore.differential_privacy.compute_clip_model_update``,
what its fixed-clipping DP strategy wrappers call); the new global weights are the global weights plus
the uniform mean of the clipped updates plus Gaussian noise of std sigma C / m (m clients in the round;
Flower's ``compute_stdv``). One client changes the mean by at most C / m, so every round is a Gaussian
mechanism of noise multiplier sigma on each client's data; the run's epsilon composes the rounds run
with Opacus's accountant (sample rate 1: the selection rules are not Poisson sampling, so no
amplification is claimed). The same function aggregates in-process and on the Flower transport.
The noise is drawn from a seed derived per round, so a resumed run adds the same noise.
Not covered: what the clients report besides their weights (train losses for guidance and selection).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmqfl.config import derive_seed
from llmqfl.privacy_accounting import checked_epsilon
from llmqfl.settings import Settings


@dataclass(frozen=True)
class ClientLevelDP:
    """``privacy.quantum`` when enabled."""

    noise_multiplier: float
    clip_norm: float
    delta: float = 1e-5
    accountant: str = "rdp"

    @classmethod
    def from_config(cls, settings: Settings) -> ClientLevelDP | None:
        """The mechanism of the settings' ``privacy.quantum``, or None when it is off."""
        quantum = settings.privacy.quantum
        if not quantum.enabled:
            return None
        return cls(float(quantum.noise_multiplier), float(quantum.clip_norm), float(quantum.delta), quantum.accountant)

    def epsilon(self, rounds: int) -> float:
        """Epsilon at ``delta`` after ``rounds`` releases (one a round), by the accountant."""
        return checked_epsilon("privacy.quantum", noise_multiplier=self.noise_multiplier, sample_rate=1.0,
                               steps=int(rounds), delta=self.delta, accountant=self.accountant)

    def noise_std(self, n_clients: int) -> float:
        """Std of the noise on the mean of ``n_clients`` clipped updates (Flower's ``compute_stdv``)."""
        from flwr.supercore.differential_privacy import compute_stdv

        return compute_stdv(self.noise_multiplier, self.clip_norm, n_clients)


def clip_update(weights: np.ndarray, global_weights: np.ndarray, clip_norm: float) -> np.ndarray:
    """``global + clip(weights - global, C)``: Flower's fixed clipping of one client's upload."""
    from flwr.supercore.differential_privacy import compute_clip_model_update

    clipped = [np.array(weights, dtype=np.float64, copy=True)]
    if not np.any(clipped[0] != global_weights):  # no move: nothing to clip (Flower's helper divides by the norm)
        return clipped[0]
    compute_clip_model_update(clipped, [np.asarray(global_weights, dtype=np.float64)], clip_norm)
    return clipped[0]


def private_aggregate(
    weights: Mapping[int, np.ndarray], global_weights: np.ndarray, dp: ClientLevelDP, *, seed: int, round_index: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """The noisy mean of the clipped updates, and the round's record (update norms before and after clipping)."""
    if not weights:
        raise ValueError("private aggregation needs at least one client's weights")
    base = np.asarray(global_weights, dtype=np.float64)
    clients = sorted(weights)  # fixed order: float sums are order dependent
    clipped = {k: clip_update(weights[k], base, dp.clip_norm) for k in clients}
    mean_update = np.mean(np.stack([clipped[k] - base for k in clients]), axis=0)
    std = dp.noise_std(len(clients))
    aggregated = base + mean_update + noise_stream(seed, round_index).normal(0.0, std, base.shape)
    return aggregated, round_record(weights, base, dp, round_index)


def noise_stream(seed: int, round_index: int) -> np.random.RandomState:
    """The round's noise generator. A legacy ``RandomState``: Flower's DP wrapper draws its noise from
    ``np.random.normal``, so the Flower transport seeds numpy's global generator with the same seed and the
    two transports add the same noise (:mod:`llmqfl.federated.flower.dp`)."""
    return np.random.RandomState(derive_seed(seed, "privacy", "quantum", "round", round_index))


def round_record(
    weights: Mapping[int, np.ndarray], global_weights: np.ndarray, dp: ClientLevelDP, round_index: int
) -> dict[str, Any]:
    """One round's clipping record: each client's update norm before and after clipping, the noise std."""
    base = np.asarray(global_weights, dtype=np.float64)
    clients = sorted(weights)
    return {
        "round": int(round_index),
        "clients": [int(k) for k in clients],
        "update_norms": [float(np.linalg.norm(np.asarray(weights[k], dtype=np.float64) - base)) for k in clients],
        "clipped_norms": [float(np.linalg.norm(clip_update(weights[k], base, dp.clip_norm) - base)) for k in clients],
        "noise_std": float(dp.noise_std(len(clients))),
    }


def accounting_entry(dp: ClientLevelDP | None, rounds_run: int, records: Mapping[int, dict[str, Any]]) -> dict:
    """``accounting.json``'s ``privacy`` block ({} when privacy.quantum is off)."""
    if dp is None:
        return {}
    return {"quantum": privacy_summary(dp, rounds_run, [records[r] for r in sorted(records)])}


def privacy_summary(dp: ClientLevelDP, rounds_run: int, records: list[dict[str, Any]]) -> dict[str, Any]:
    """``accounting.json``'s ``privacy.quantum``: the mechanism, the run's (epsilon, delta) and each round's norms."""
    return {
        "mechanism": "client-level Gaussian, fixed clipping",
        "noise_multiplier": dp.noise_multiplier,
        "clip_norm": dp.clip_norm,
        "delta": dp.delta,
        "accountant": dp.accountant,
        "sample_rate": 1.0,
        "releases": int(rounds_run),
        "epsilon": dp.epsilon(rounds_run),
        "rounds": records,
    }
