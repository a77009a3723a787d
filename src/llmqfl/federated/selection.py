"""Client selection: which clients train in the next round.

Each strategy is a small class registered by name (``llmqfl.registry``, kind ``selection``). Three
ship, as in the paper's code and in Flower's ``fraction_train``:

* ``all``: every client, every round (the paper's genomic path trains all clients).
* ``random``: k = max(1, floor(fraction N)) clients drawn without replacement from a seeded
  :class:`numpy.random.Generator` (its state is checkpointed, so a resumed run draws the same).
* ``closest_to_server``: the k clients whose last quantum loss J_i is nearest the server's loss J_s,
  d_i = |J_i - J_s| (``docs/method.md``). Round 1 has no losses yet, so it selects
  every client; a client that has never trained counts as infinitely far. Ties go to the lower
  client id, so the choice is deterministic.

The result is a sorted tuple of client ids. A plan resolves its strategy once
(``FederationPlan.selector``); the fraction was checked when the config was validated (the schema:
0 < fraction <= 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from llmqfl.registry import get, register


@runtime_checkable
class SelectionStrategy(Protocol):
    """Picks ``k`` of ``clients`` (sorted ids) for the next round; returns a sorted tuple."""

    def select(
        self,
        clients: list[int],
        k: int,
        rng: np.random.Generator,
        last_losses: Mapping[int, float],
        server_loss: float | None,
    ) -> tuple[int, ...]: ...


def n_selected(fraction: float, n_clients: int) -> int:
    """k = max(1, floor(fraction N)); the epsilon keeps 0.7 * 10 = 7.000000000000001 at 7 and 0.29 * 100 at 29."""
    return max(1, math.floor(fraction * n_clients + 1e-9))


def strategy(kind: str) -> SelectionStrategy:
    """An instance of the registered strategy ``kind`` (an unknown name: the registry's one-line ConfigError)."""
    return get("selection", kind)()


def select_clients(
    picker: SelectionStrategy,
    *,
    clients: Sequence[int],
    fraction: float,
    rng: np.random.Generator,
    last_losses: Mapping[int, float],
    server_loss: float | None,
) -> tuple[int, ...]:
    """The clients that train next round, by the strategy ``picker`` (resolved once per plan from its
    registered name: ``FederationPlan.selector``, :func:`strategy`)."""
    if not clients:
        raise ValueError("no clients to select from")
    ordered = sorted(int(c) for c in clients)
    return tuple(sorted(picker.select(ordered, n_selected(fraction, len(ordered)), rng, last_losses, server_loss)))


@register("selection", "all")
class AllClients:
    """Every client, every round (``fraction`` is ignored)."""

    def select(self, clients, k, rng, last_losses, server_loss) -> tuple[int, ...]:
        return tuple(clients)


@register("selection", "random")
class RandomClients:
    """k clients drawn without replacement from the checkpointed selection RNG."""

    def select(self, clients, k, rng, last_losses, server_loss) -> tuple[int, ...]:
        picked = rng.choice(len(clients), size=k, replace=False)
        return tuple(sorted(clients[i] for i in picked))


@register("selection", "closest_to_server")
class ClosestToServer:
    """The k clients whose last loss is nearest the server's; every client while there is nothing to compare."""

    def select(self, clients, k, rng, last_losses, server_loss) -> tuple[int, ...]:
        if server_loss is None or not math.isfinite(server_loss) or not last_losses:
            return tuple(clients)  # round 1: nothing to compare yet

        def distance(client: int) -> float:
            loss = last_losses.get(client, math.nan)
            return abs(loss - server_loss) if math.isfinite(loss) else math.inf

        return tuple(sorted(sorted(clients, key=lambda c: (distance(c), c))[:k]))
