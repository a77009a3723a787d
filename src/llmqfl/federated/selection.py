"""Client selection: which clients train in the next round.

Three strategies, as in the paper's code and in Flower's ``fraction_train``:

* ``all``: every client, every round (the paper's genomic path trains all clients).
* ``random``: k = max(1, floor(fraction N)) clients drawn without replacement from a seeded
  :class:`numpy.random.Generator` (its state is checkpointed, so a resumed run draws the same).
* ``closest_to_server``: the k clients whose last quantum loss J_i is nearest the server's loss J_s,
  d_i = |J_i - J_s| (paper-notes.md section 2.3 (e)). Round 1 has no losses yet, so it selects
  every client; a client that has never trained counts as infinitely far. Ties go to the lower
  client id, so the choice is deterministic.

The result is a sorted tuple of client ids.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

SELECTIONS: tuple[str, ...] = ("all", "random", "closest_to_server")


def n_selected(fraction: float, n_clients: int) -> int:
    """k = max(1, floor(fraction N)); the epsilon keeps 0.7 * 10 = 7.000000000000001 at 7 and 0.29 * 100 at 29."""
    return max(1, math.floor(fraction * n_clients + 1e-9))


def select_clients(
    kind: str,
    *,
    clients: Sequence[int],
    fraction: float,
    rng: np.random.Generator,
    last_losses: Mapping[int, float],
    server_loss: float | None,
) -> tuple[int, ...]:
    """The clients that train next round, by strategy ``kind``."""
    if kind not in SELECTIONS:
        raise ValueError(f"unknown selection kind {kind!r}; expected one of {', '.join(SELECTIONS)}")
    if not clients:
        raise ValueError("no clients to select from")
    if not 0 < fraction <= 1:
        raise ValueError(f"selection fraction must be in (0, 1], got {fraction}")
    ordered = sorted(int(c) for c in clients)
    if kind == "all":
        return tuple(ordered)
    k = n_selected(fraction, len(ordered))
    if kind == "random":
        return _random(ordered, k, rng)
    return _closest_to_server(ordered, k, last_losses, server_loss)


def _random(clients: list[int], k: int, rng: np.random.Generator) -> tuple[int, ...]:
    picked = rng.choice(len(clients), size=k, replace=False)
    return tuple(sorted(clients[i] for i in picked))


def _closest_to_server(
    clients: list[int], k: int, last_losses: Mapping[int, float], server_loss: float | None
) -> tuple[int, ...]:
    if server_loss is None or not math.isfinite(server_loss) or not last_losses:
        return tuple(clients)  # round 1: nothing to compare yet

    def distance(client: int) -> float:
        loss = last_losses.get(client, math.nan)
        return abs(loss - server_loss) if math.isfinite(loss) else math.inf

    return tuple(sorted(sorted(clients, key=lambda c: (distance(c), c))[:k]))
