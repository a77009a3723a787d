"""The QFL server as a Flower ServerApp: the project's own round loop, clients reached by messages.

:class:`FlowerFederation` is :class:`llmqfl.federated.server.Federation` with one method replaced:
how a round's selected clients train and how the global model is scored on their test items. Selection,
guidance, FedAvg, termination, checkpoints and history rows are the parent's code. The global
model's evaluation on the clients' test items runs at the clients; its work is booked on the server
row, as in-process (where the server runs it), so the totals do not depend on the transport. A client that fails
mid-round (its node died, it errored, it timed out) is dropped from that round: the round aggregates
the clients that replied (at least ``federation.flower.min_clients``), the dropped client is not
asked to evaluate that round's model (its test metrics are NaN), and its row says
``stop_reason = "dropped: <why>"``. With ``federation.flower.rejoin`` (the default) a site that
missed a round comes back in a later one: while its node is connected it is asked again, and a
restarted SuperNode that names the client is found at the start of the next round; the round it
trains again says ``stop_reason = "rejoined: missed rounds [...]"``. With ``rejoin: false`` a site
that missed a round is left out of every later one (its rows say why).
With ``federation.flower.secagg`` on, the train exchange is Flower's SecAgg+ protocol (:mod:`.secagg`):
the server gets the weighted sum of the updates, never one client's weights.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from llmqfl.config import derive_seed
from llmqfl.contracts import Usage, uses_llm
from llmqfl.federated.client import ClientUpdate
from llmqfl.federated.flower import messages
from llmqfl.federated.flower.bundles import ServerBundle, load_server
from llmqfl.federated.flower.dp import flower_private_aggregate
from llmqfl.federated.flower.secagg import secagg_settings, secure_round
from llmqfl.federated.flower.transport import FlowerTransportError, GridTransport, Identity
from llmqfl.federated.protocols import snapshot
from llmqfl.federated.scores import classification_metrics
from llmqfl.federated.server import Federation, FederationResult
from llmqfl.io import atomic_path
from llmqfl.settings import SecAggSettings

log = logging.getLogger(__name__)
app = ServerApp()
RESULT_FILE = "flower_result.pkl"
PROGRESS_FILE = "progress.log"


@dataclass(frozen=True)
class RemoteClient:
    """The server's view of a client: its id and what it told about itself, never its items."""

    data: Identity

    @property
    def id(self) -> int:
        return self.data.client


@dataclass(frozen=True)
class FlowerRun:
    """What the ServerApp hands back to the launcher."""

    result: FederationResult
    round_weights: dict[int, np.ndarray]
    bytes_down: dict[int, dict[int, int]]
    bytes_up: dict[int, dict[int, int]]
    dropped: dict[int, dict[int, str]]  # round -> client -> why (the rounds each site missed)
    round_seconds: dict[int, float]  # wall time of each round at the server (messages included)
    rejoined: dict[int, list[int]] | None = None  # round -> clients that trained again after missing rounds
    # federation.flower.secagg on: per round, the bytes SecAgg+ added, the stated tolerance, clipped entries
    secagg: dict[int, dict[str, float]] = field(default_factory=dict)
    privacy: dict[int, dict[str, Any]] = field(default_factory=dict)  # privacy.quantum: each round's clipping


class FlowerFederation(Federation):
    def __init__(
        self, *, transport: GridTransport, min_clients: int, rejoin: bool = True,
        secagg: SecAggSettings | None = None, **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.transport = transport
        self.secagg = secagg
        self.secagg_rounds: dict[int, dict[str, float]] = {}
        self.min_clients = int(min_clients)
        self.rejoin = bool(rejoin)
        self.round_weights: dict[int, np.ndarray] = {}
        self.dropped: dict[int, dict[int, str]] = {}
        self.rejoined: dict[int, list[int]] = {}
        self.away: dict[int, int] = {}  # client -> the round it first missed, while it has not come back
        self.round_seconds: dict[int, float] = {}

    def _round(self, state: Any) -> Any:
        start = time.perf_counter()
        state = super()._round(state)
        self.round_seconds[state.round] = time.perf_counter() - start
        return state

    def _train_and_evaluate(
        self, r: int, selected: tuple[int, ...], maxiters: dict[int, int], global_weights: np.ndarray
    ) -> tuple[dict[int, ClientUpdate], np.ndarray, dict[str, dict[str, float]], Usage, float]:
        contents = {
            k: messages.train_content(global_weights, round_index=r, maxiter=maxiters[k], seed=self.client_seed(k, r))
            for k in selected
        }
        left = {k: f"missed round {self.away[k]}; federation.flower.rejoin is off" for k in selected
                if k in self.away and not self.rejoin}  # fmt: skip
        if self.rejoin and self.away:  # a restarted SuperNode of a site that missed a round
            self.transport.rejoin(r, self.away)
        sent = {k: c for k, c in contents.items() if k not in left}
        if self.secagg is not None:
            updates, secure_weights, failed = self._secure_train(r, sent, global_weights)
        else:
            secure_weights = None
            replies, failed = self.transport.exchange(r, messages.TRAIN, sent)
            updates = {k: messages.update_of(replies[k].content) for k in sorted(replies)}
        failed = {**failed, **left}
        back = sorted(k for k in updates if k in self.away)
        if back:
            self.rejoined[r] = back
            for k in back:
                del self.away[k]
        if failed:
            self.dropped[r] = dict(failed)
            for k in failed:
                self.away.setdefault(k, r)
        if len(updates) < self.min_clients:
            raise FlowerTransportError(
                f"round {r}: {len(updates)} of {len(selected)} clients replied, "
                f"federation.flower.min_clients is {self.min_clients}: {failed}"
            )
        start, before = time.perf_counter(), snapshot(self.evaluator)
        if secure_weights is not None:
            weights = secure_weights
        elif self.plan.privacy is not None:  # Flower's DP wrapper on the replies (federated/flower/dp.py)
            weights, self.privacy_rounds[r] = flower_private_aggregate(
                replies, global_weights, self.plan.privacy, seed=self.seed, round_index=r
            )
        else:
            weights = self.aggregate(updates, global_weights=global_weights, round_index=r)
        self.round_weights[r] = weights.copy()
        evaluation = self._evaluate_server(weights)
        reachable = [k for k in self.clients if k not in failed and (self.rejoin or k not in self.away)]
        evaluations, eval_failed = self.transport.exchange(
            r, messages.EVALUATE, {k: messages.evaluate_content(weights, round_index=r) for k in reachable}
        )
        nan = {"accuracy": math.nan, "f1": math.nan, "loss": math.nan}
        usage = snapshot(self.evaluator) - before
        for k in self.clients:
            reply = evaluations.get(k)
            metrics = reply.content.metric_records["metrics"] if reply else {}
            evaluation[f"client_{k}"] = {name: float(metrics[name]) for name in nan} if reply else dict(nan)
            if reply:  # booked on the server row, as in-process where the server runs this evaluation
                usage = _plus(usage, messages.usage_of(metrics))
        for k, reason in eval_failed.items():
            self.dropped.setdefault(r, {}).setdefault(k, f"evaluate: {reason}")
            self.away.setdefault(k, r)
        self.transport.note(f"round {r}: aggregated {sorted(updates)}")
        return updates, weights, evaluation, usage, time.perf_counter() - start

    def _secure_train(
        self, r: int, contents: dict[int, Any], global_weights: np.ndarray
    ) -> tuple[dict[int, ClientUpdate], np.ndarray, dict[int, str]]:
        """The round's training under SecAgg+, weighted as :meth:`aggregate` weighs (fedavg or mean)."""
        assert self.secagg is not None
        sizes = {k: self.clients[k].data.n_train if self.plan.aggregator == "fedavg" else 1 for k in contents}
        done = secure_round(self.transport, self.secagg, r, contents, sizes, global_weights,
                            timeout_s=self.transport.round_timeout_s)  # fmt: skip
        self.secagg_rounds[r] = {"bytes_added": done.bytes_added, "tolerance": done.tolerance, "clipped": done.clipped}
        self.transport.note(f"round {r}: SecAgg+ added {done.bytes_added} bytes, tolerance {done.tolerance:.3g}")
        return done.updates, done.weights, done.failed

    def _evaluate_server(self, weights: np.ndarray) -> dict[str, dict[str, float]]:
        """The global model on the server's own sets, in one batched call."""
        sets = [
            ("server_val", self.server.val_x, self.server.val_y),
            ("server_test", self.server.test_x, self.server.test_y),
        ]
        features = np.concatenate([np.asarray(x, dtype=np.float64) for _, x, _ in sets if len(x)])
        probs = self.evaluator.probabilities(features, weights)
        results, offset = {}, 0
        for name, x, y in sets:
            results[name] = classification_metrics(probs[offset : offset + len(x)], y)
            offset += len(x)
        return results

    def _rows(self, r: int, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        """The parent's rows, with the bytes that really crossed the wire and who was dropped."""
        rows = super()._rows(r, *args, **kwargs)
        dropped = self.dropped.get(r, {})
        for row in rows:
            k = row["client"]
            if k in self.clients:
                row["bytes_down"] = int(self.transport.bytes_down[r].get(k, 0))
                row["bytes_up"] = int(self.transport.bytes_up[r].get(k, 0))
                if k in dropped:
                    row["stop_reason"] = f"dropped: {dropped[k]}"
                elif k in self.rejoined.get(r, ()):
                    row["stop_reason"] = f"rejoined: missed rounds {self.missed_rounds(k, before=r)}"
        return rows

    def missed_rounds(self, k: int, *, before: int | None = None) -> list[int]:
        """The rounds client ``k`` was dropped from (before round ``before``)."""
        return [r for r in sorted(self.dropped) if k in self.dropped[r] and (before is None or r < before)]


def _plus(a: Usage, b: Usage) -> Usage:
    return Usage(**{name: value + getattr(b, name) for name, value in vars(a).items()})


def serve(bundle: ServerBundle, transport: GridTransport, out_dir: Path, *, resume: bool = False) -> FlowerRun:
    """Connect the clients and run the federation; the run's outcome, also written to ``out_dir``."""
    from llmqfl.federated.run import build_model, open_backend
    from llmqfl.quantum import make_evaluator

    flower = bundle.config.federation.flower
    identities = transport.connect(bundle.client_ids)
    clients = [RemoteClient(identities[k]) for k in sorted(identities)]
    server = bundle.server
    if uses_llm(bundle.arm):  # l_s from the LLM losses the clients sent, as prepare() computes it
        sizes = np.array([c.data.n_train for c in clients], dtype=np.float64)
        losses = np.array([c.data.llm_loss for c in clients])
        server = replace(server, llm_loss=float(np.dot(sizes, losses) / sizes.sum()))
    model = build_model(bundle.config, bundle.n_classes)
    site = SimpleNamespace(config=bundle.config, model=model, base_seed=bundle.base_seed)
    with open_backend(site) as backend:
        federation = FlowerFederation(
            transport=transport,
            min_clients=flower.min_clients,
            rejoin=flower.rejoin,
            secagg=secagg_settings(bundle.config),
            clients=clients,  # type: ignore[arg-type]  # the loop reads only .id and .data.{n_train,llm_loss}
            server=server,
            evaluator=make_evaluator(model, backend=backend, seed=derive_seed(bundle.base_seed, "evaluator")),
            plan=bundle.plan,
            seed=bundle.base_seed,
            initial_weights=bundle.weights,
            checkpoint_dir=out_dir / "checkpoints",
            fingerprint=bundle.fingerprint,
        )
        result = federation.run(resume=resume)
    outcome = FlowerRun(
        result=result,
        round_weights=federation.round_weights,
        bytes_down={r: dict(v) for r, v in transport.bytes_down.items()},
        bytes_up={r: dict(v) for r, v in transport.bytes_up.items()},
        dropped=federation.dropped,
        round_seconds=federation.round_seconds,
        rejoined=federation.rejoined,
        secagg=federation.secagg_rounds,
        privacy=federation.privacy_rounds,
    )
    with atomic_path(out_dir / RESULT_FILE) as tmp, tmp.open("wb") as handle:
        pickle.dump(outcome, handle, protocol=pickle.HIGHEST_PROTOCOL)
    transport.note(f"done: {result.rounds_run} rounds, stop reason {result.stop_reason or 'none'}")
    return outcome


def load_outcome(out_dir: Path) -> FlowerRun:
    with (Path(out_dir) / RESULT_FILE).open("rb") as handle:
        return pickle.load(handle)


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run config ``bundles`` (the server's bundle folder) and ``out`` (where results go)."""
    run_config = context.run_config
    bundles = run_config.get("bundles") or os.environ["LLMQFL_FLOWER_BUNDLES"]
    out_dir = Path(str(run_config.get("out") or os.environ["LLMQFL_FLOWER_OUT"]))
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle = load_server(Path(str(bundles)))  # its config rebuilt as Settings (bundles.load_server)
    flower = bundle.config.federation.flower
    transport = GridTransport(
        grid,
        round_timeout_s=flower.round_timeout_s,
        connect_timeout_s=flower.connect_timeout_s,
        progress=out_dir / PROGRESS_FILE,
    )
    serve(bundle, transport, out_dir, resume=bool(run_config.get("resume", False)))
