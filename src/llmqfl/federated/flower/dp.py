"""``privacy.quantum`` on the Flower transport: Flower's own DP strategy wrapper aggregates the replies.

The round's train replies go through ``flwr.serverapp.strategy.DifferentialPrivacyServerSideFixedClipping``
around a ``FedAvg`` that weighs every reply alike (the wrapper's sensitivity C / m assumes the uniform
mean): it clips each reply's weights to the global weights plus an update of norm at most C, averages,
and adds Gaussian noise of std sigma C / m with ``np.random.normal``. Numpy's global generator is seeded
for that call with the round's seed of :func:`llmqfl.federated.privacy.noise_stream` (and restored after),
so the Flower transport and the in-process loop (:func:`llmqfl.federated.privacy.private_aggregate`, the
same mechanism through Flower's helper functions) give the same global weights.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
from flwr.app import Message

from llmqfl.config import derive_seed
from llmqfl.federated.flower import messages
from llmqfl.federated.privacy import ClientLevelDP, round_record


@contextmanager
def _zero_safe_clipping() -> Iterator[None]:
    """Flower 1.42's clipping divides by the update's norm: a client that did not move (norm 0) raises
    ZeroDivisionError. For the call, the wrapper's module uses a version that leaves a zero update as it is
    (clipping it is a no-op), and gets Flower's own function back afterwards."""
    from flwr.serverapp.strategy import dp_fixed_clipping

    original = dp_fixed_clipping.compute_clip_model_update

    def clip(param1: list, param2: list, clipping_norm: float) -> None:
        if any(np.any(np.asarray(a) != np.asarray(b)) for a, b in zip(param1, param2, strict=True)):
            original(param1=param1, param2=param2, clipping_norm=clipping_norm)

    dp_fixed_clipping.compute_clip_model_update = clip
    try:
        yield
    finally:
        dp_fixed_clipping.compute_clip_model_update = original


WEIGHT_KEY = "dp-uniform-weight"  # every reply weighs 1: the wrapper's noise assumes the uniform mean


def flower_private_aggregate(
    replies: Mapping[int, Message], global_weights: np.ndarray, dp: ClientLevelDP, *, seed: int, round_index: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """The new global weights from Flower's DP wrapper, and the round's clipping record."""
    from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg

    clients = sorted(replies)
    updates = {k: messages.weights_of(replies[k].content) for k in clients}
    record = round_record(updates, global_weights, dp, round_index)
    for k in clients:
        replies[k].content.metric_records["metrics"][WEIGHT_KEY] = 1
    strategy = DifferentialPrivacyServerSideFixedClipping(
        FedAvg(weighted_by_key=WEIGHT_KEY, arrayrecord_key="weights"),
        noise_multiplier=dp.noise_multiplier,
        clipping_norm=dp.clip_norm,
        num_sampled_clients=len(clients),
    )
    strategy.current_arrays = messages.weights_record(global_weights)
    state = np.random.get_state()
    np.random.seed(derive_seed(seed, "privacy", "quantum", "round", round_index))
    try:
        with _zero_safe_clipping():
            arrays, _ = strategy.aggregate_train(round_index, [replies[k] for k in clients])
    finally:
        np.random.set_state(state)
    if arrays is None:
        raise RuntimeError(f"round {round_index}: Flower's DP wrapper aggregated no replies")
    return np.asarray(arrays.to_numpy_ndarrays()[0], dtype=np.float64), record
