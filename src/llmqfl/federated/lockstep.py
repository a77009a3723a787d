"""Lockstep job batching: the selected clients' k-th evaluations of a round travel in ONE job.

Why: on a QPU every job waits in a queue and costs a fixed overhead, and the clients of a round are
independent. Run one after another (:class:`~llmqfl.federated.server.Federation`), a round costs
the SUM of the clients' evaluator calls in jobs; here it costs about the LARGEST client's.

How: each selected client trains in its own thread, with its own optimizer (COBYLA's scipy loop,
SPSA, Adam: :mod:`llmqfl.quantum.training.optimizers`), unchanged. Its evaluator is a keyed view
(:mod:`llmqfl.federated.evaluation_scope`) whose calls block at a batcher. The round's main thread
waits until every client still training has a call waiting, then submits all of them as one job
(one pub per client, clients by id) and hands each its result. Evaluations are therefore grouped
by their index: job k holds the k-th call of every client that makes at least k calls. A client's
call for its train metrics, right after its fit, joins the jobs of the clients still fitting; the
server's evaluation of the aggregate joins the last one (the metrics call of the client whose fit
ended last) when the clients' trainers report their fit's end (:class:`ReportFit`).

Same numbers: each call draws its shots from a seed of its own key (participant, round, call
index), the optimizers are deterministic given their values, and FedAvg sums in the selection's
order, so weights, losses and counts equal those of the one-after-another federation (tested on
the exact path and the seeded Aer samplers). On ``fake`` and ``ibm`` a job takes one seed, so
batched draws differ from single-pub draws there (deterministically). All quantum work runs in the
round's main thread, one job at a time; the client threads only run their optimizers' arithmetic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmqfl.contracts import Usage
from llmqfl.federated.client import ClientUpdate
from llmqfl.federated.evaluation_scope import (
    Key,
    Request,
    ScopedEvaluator,
    client_scope,
    evaluate_requests,
    server_scope,
)
from llmqfl.federated.server import Federation

_SERVER = ("server",)


class ReportFit:
    """A local trainer that tells a lockstep view the fit's final weights as soon as the fit ends.

    Then the server can aggregate and put its evaluation into the same job as the last client's
    train-metrics call, one job less per round. Any other evaluator is left alone.
    """

    def __init__(self, trainer: Callable[..., Any]) -> None:
        self.trainer = trainer

    def __call__(self, evaluator: Any, *args: Any, **kwargs: Any) -> Any:
        result = self.trainer(evaluator, *args, **kwargs)
        report = getattr(evaluator, "fit_done", None)
        if callable(report):
            report(np.asarray(result.weights, dtype=np.float64))
        return result


class _Aborted(Exception):
    """Another participant of the round failed: this client's fit stops here."""


@dataclass(eq=False)
class _Call:
    participant: tuple[Any, ...]
    view: ScopedEvaluator
    request: Request
    result: np.ndarray | None = None
    error: BaseException | None = None
    done: bool = False


class _ClientView(ScopedEvaluator):
    """A client's keyed view whose calls wait at the round's batcher."""

    def __init__(self, round_: _LockstepRound, parent: Any, k: int, r: int) -> None:
        super().__init__(parent, client_scope(k, r), submit=round_.submit)
        self.participant = ("client", k)
        self._round = round_

    def fit_done(self, weights: np.ndarray) -> None:
        self._round.fit_done(self.participant[1], weights)


class _LockstepRound:
    """One round: client threads, the batcher they meet at, and the server's evaluation."""

    def __init__(
        self, federation: Federation, r: int, selected: tuple[int, ...], maxiters: dict[int, int],
        global_weights: np.ndarray,
    ) -> None:
        self.federation, self.r, self.selected = federation, r, tuple(selected)
        self.maxiters, self.global_weights = maxiters, global_weights
        self._cond = threading.Condition()
        self._live = {("client", k) for k in self.selected}
        self._pending: dict[tuple[Any, ...], _Call] = {}
        self._fitted: dict[int, np.ndarray] = {}
        self._errors: list[BaseException] = []
        self._in_flight: list[_Call] = []  # the job being run: released too if the round aborts
        self._aborted = False
        self.updates: dict[int, ClientUpdate] = {}

    # ---- the client threads' side

    def submit(self, view: ScopedEvaluator, features: np.ndarray, weights: np.ndarray, key: Key) -> np.ndarray:
        participant = view.participant  # type: ignore[attr-defined]
        call = _Call(participant, view, Request(features, weights, key))
        with self._cond:
            if self._aborted:
                raise _Aborted
            self._pending[participant] = call
            self._cond.notify_all()
            self._cond.wait_for(lambda: call.done)
        if call.error is not None:
            raise call.error
        assert call.result is not None
        return call.result

    def fit_done(self, k: int, weights: np.ndarray) -> None:
        with self._cond:
            self._fitted[k] = weights
            self._cond.notify_all()

    def _train(self, k: int, view: _ClientView) -> None:
        federation = self.federation
        try:
            seed = federation.client_seed(k, self.r)
            update = federation.clients[k].train(
                view, global_weights=self.global_weights, maxiter=self.maxiters[k], seed=seed
            )
            with self._cond:
                self.updates[k] = update
        except _Aborted:
            pass
        except BaseException as exc:  # handed to the main thread, which re-raises the first
            with self._cond:
                self._errors.append(exc)
        finally:
            with self._cond:
                self._live.discard(("client", k))
                self._cond.notify_all()

    # ---- the main thread's side

    def run(self) -> tuple[dict[int, ClientUpdate], np.ndarray, dict[str, dict[str, float]], Usage, float]:
        federation = self.federation
        threads = [
            threading.Thread(target=self._train, args=(k, _ClientView(self, federation.evaluator, k, self.r)),
                             name=f"lockstep-client-{k}", daemon=True)
            for k in self.selected
        ]
        server_view = ScopedEvaluator(federation.evaluator, server_scope(self.r))
        server_view.participant = _SERVER  # type: ignore[attr-defined]
        server: dict[str, Any] = {}
        for thread in threads:
            thread.start()
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._errors or all(p in self._pending for p in self._live))
                    if self._errors:
                        break
                    if not server and len(self._fitted) == len(self.selected):
                        server.update(self._server_call(server_view))
                        self._pending[_SERVER] = server["call"]
                    if not self._pending:
                        break
                    batch = [self._pending.pop(p) for p in sorted(self._pending, key=_order)]
                    self._in_flight = batch
                results = evaluate_requests(federation.evaluator, [call.request for call in batch])
                with self._cond:
                    for call, (probs, usage) in zip(batch, results, strict=True):
                        call.view.add(usage)
                        call.result, call.done = probs, True
                    self._cond.notify_all()
        finally:  # a failed job or client: release every waiting client before joining them
            self._abort()
            for thread in threads:
                thread.join()
        if self._errors:
            raise self._errors[0]
        if not server:  # the trainers did not report their fits: the server's evaluation runs alone
            server.update(self._server_call(server_view))
            call = server["call"]
            call.result = server_view.probabilities(call.request.features, call.request.weights)
        evaluation = federation._evaluate(server["weights"], probs=server["call"].result)
        seconds = server["seconds"] + server_view.stats.seconds
        return {k: self.updates[k] for k in self.selected}, server["weights"], evaluation, server_view.stats, seconds

    def _server_call(self, view: ScopedEvaluator) -> dict[str, Any]:
        """Aggregate (in the selection's order, as the sequential federation sums) and the server's call."""
        start = time.perf_counter()
        weights = self.federation.aggregate({k: self._fitted[k] for k in self.selected} if self._fitted else
                                            {k: self.updates[k] for k in self.selected},
                                            global_weights=self.global_weights, round_index=self.r)
        key = (*view.scope, "call", 0)
        request = Request(self.federation.evaluation_features(), weights, key)
        return {"weights": weights, "call": _Call(_SERVER, view, request), "seconds": time.perf_counter() - start}

    def _abort(self) -> None:
        """Release every waiting client with an error and refuse new calls (a job failed or a client did)."""
        with self._cond:
            self._aborted = True
            for call in [*self._pending.values(), *self._in_flight]:
                if not call.done:
                    call.error, call.done = _Aborted(), True
            self._pending.clear()
            self._cond.notify_all()


def _order(participant: tuple[Any, ...]) -> tuple[int, int]:
    """Pubs in a job: clients by id, then the server."""
    return (1, 0) if participant == _SERVER else (0, int(participant[1]))


class LockstepFederation(Federation):
    """A :class:`Federation` whose rounds batch the clients' calls by index (see the module docstring)."""

    def _train_and_evaluate(
        self, r: int, selected: tuple[int, ...], maxiters: dict[int, int], global_weights: np.ndarray
    ) -> tuple[dict[int, ClientUpdate], np.ndarray, dict[str, dict[str, float]], Usage, float]:
        from llmqfl.quantum.simulators.exact import single_threaded_blas

        # one BLAS limit for the whole round: the client threads' own limits nest inside it
        with single_threaded_blas():
            return _LockstepRound(self, r, selected, maxiters, global_weights).run()
