"""Keyed evaluator calls: every call of a round's participant draws its shots from its own seed.

Why: the shot seed used to follow the job counter, so grouping several clients' calls into one job
(:mod:`llmqfl.federated.lockstep`) would have changed every draw. A :class:`ScopedEvaluator` is one
participant's view of the run's evaluator for one round; its n-th call carries the key
``(participant..., round, "call", n)``, and an evaluator that samples (the primitive path) derives
that call's seed from the key alone. The same call therefore draws the same shots whether it runs
alone (``backend.batching: off``) or in a job with other clients' calls (``lockstep``).

A view keeps its own work counters (what its calls cost) while the run's evaluator keeps the
totals. A job shared by several calls is counted once, for the first call in it (clients by id,
the server last); its engine seconds are split by circuits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmqfl.contracts import Usage
from llmqfl.federated.protocols import snapshot

Key = tuple[Any, ...]
# A view hands each call to ``submit(view, features, weights, key)``; the default runs it at once, alone.
Submit = Callable[["ScopedEvaluator", np.ndarray, np.ndarray, Key], np.ndarray]


def client_scope(client: int, round_index: int) -> Key:
    """The key prefix of client ``client``'s calls in round ``round_index``."""
    return ("client", int(client), "round", int(round_index))


def server_scope(round_index: int) -> Key:
    """The key prefix of the server's calls (aggregate evaluation) in round ``round_index``."""
    return ("server", "round", int(round_index))


@dataclass(frozen=True)
class Request:
    """One keyed call: features (n_items, n_inputs), weights (n_params,) or (n_sets, n_params)."""

    features: np.ndarray
    weights: np.ndarray
    key: Key


class ScopedEvaluator:
    """One participant's calls in one round, keyed and counted; see the module docstring."""

    def __init__(self, parent: Any, scope: Key, submit: Submit | None = None) -> None:
        self.parent = parent
        self.model = getattr(parent, "model", None)
        self.scope = scope
        self.stats = Usage()
        self._calls = 0
        self._submit = submit

    def probabilities(self, features: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """As the parent's ``probabilities``, for this participant's next call key."""
        key = (*self.scope, "call", self._calls)
        self._calls += 1
        if self._submit is not None:
            return self._submit(self, features, weights, key)
        [(probs, usage)] = evaluate_requests(self.parent, [Request(features, weights, key)])
        self.add(usage)
        return probs

    def add(self, usage: Usage) -> None:
        """Charge ``usage`` (this view's share of a job) to this view's counters."""
        for name, value in usage.as_dict().items():
            setattr(self.stats, name, getattr(self.stats, name) + value)


def evaluate_requests(evaluator: Any, requests: Sequence[Request]) -> list[tuple[np.ndarray, Usage]]:
    """Run ``requests`` as ONE job where the evaluator can (``probabilities_batch``); each result with its share.

    An evaluator without ``probabilities_batch`` (the exact path, test doubles) runs the calls one
    by one: no jobs, each call's own counters. Results are those of separate calls either way.
    """
    batch = getattr(evaluator, "probabilities_batch", None)
    if batch is None:
        out = []
        for request in requests:
            before = snapshot(evaluator)
            probs = evaluator.probabilities(request.features, request.weights)
            out.append((probs, snapshot(evaluator) - before))
        return out
    before = snapshot(evaluator)
    start = time.perf_counter()
    results = batch([(r.features, r.weights, r.key) for r in requests])
    seconds = time.perf_counter() - start
    spent = snapshot(evaluator) - before
    return list(zip(results, _shares(requests, spent, seconds), strict=True))


def _shares(requests: Sequence[Request], spent: Usage, seconds: float) -> list[Usage]:
    """Split one job's counters over its calls: exact counts per call, the job to the first, time by circuits."""
    sets = [1 if np.ndim(r.weights) == 1 else int(np.shape(r.weights)[0]) for r in requests]
    circuits = [n * int(np.shape(r.features)[0]) for n, r in zip(sets, requests, strict=True)]
    total = sum(circuits)
    shots_per_circuit = spent.shots // total if total else 0
    engine_seconds = spent.seconds if spent.seconds else seconds
    return [
        Usage(
            objective_evaluations=n,
            circuits=c,
            shots=c * shots_per_circuit,
            jobs=spent.jobs if index == 0 else 0,
            seconds=engine_seconds * c / total if total else 0.0,
        )
        for index, (n, c) in enumerate(zip(sets, circuits, strict=True))
    ]
