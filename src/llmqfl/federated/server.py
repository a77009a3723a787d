"""The federation's round loop: select, train locally from the global weights, aggregate, evaluate.

Plain objects, no transport (the clients run one after another in this process; the accounting
reports the wall time a synchronous deployment would see). Round r:

1. the clients selected at the end of round r-1 (round 1: the initial selection) each start from
   the current GLOBAL weights and train with their own ``maxiter`` (``Client.train``);
2. the server aggregates their weights (size-weighted FedAvg over the selected clients), then
   evaluates the global model in ONE batched call on its own ``server_val`` set (its loss J_s), on
   its held-out test set, and on every client's local test items (monitoring);
3. guidance updates each trained client's ``maxiter`` for round r+1 from its J and its LLM loss;
4. termination may stop the run; otherwise selection picks round r+1's clients.

After every round the state is checkpointed; :meth:`Federation.run` with ``resume=True`` continues
from the last complete checkpoint and produces the same numbers as an uninterrupted run (all
randomness comes from seeds derived per (client, round) and one checkpointed selection RNG).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from llmqfl.config import derive_seed
from llmqfl.contracts import SERVER, Usage, history_frame
from llmqfl.federated.accounting import model_bytes
from llmqfl.federated.checkpoint import (
    FederationState,
    clear_checkpoints,
    engine_state,
    load_latest,
    restore_engine_state,
    save_checkpoint,
)
from llmqfl.federated.client import Client, ClientUpdate
from llmqfl.federated.evaluation_scope import ScopedEvaluator, client_scope, server_scope
from llmqfl.federated.federation_plan import FederationPlan, FederationResult, ServerData
from llmqfl.federated.guidance import next_maxiter
from llmqfl.federated.privacy import private_aggregate
from llmqfl.federated.protocols import EvaluatorLike, snapshot
from llmqfl.federated.rows import client_row, round_rows, server_row
from llmqfl.federated.scores import classification_metrics
from llmqfl.federated.selection import select_clients
from llmqfl.federated.termination import check_termination, update_plateau

__all__ = ["Federation", "FederationPlan", "FederationResult", "ServerData"]

log = logging.getLogger(__name__)
RoundCallback = Callable[[int, list[dict[str, Any]]], None]
StartCallback = Callable[[FederationState], None]


class Federation:
    """Runs the rounds of one arm and seed; ``seed`` is the arm-independent QFL seed of the stage."""

    def __init__(
        self,
        *,
        clients: Sequence[Client],
        server: ServerData,
        evaluator: EvaluatorLike,
        plan: FederationPlan,
        seed: int,
        initial_weights: np.ndarray,
        checkpoint_dir: str | Path | None = None,
        fingerprint: str = "",
        on_round: RoundCallback | None = None,
        on_start: StartCallback | None = None,
        budget_errors: tuple[type[BaseException], ...] = (),
    ) -> None:
        ids = [c.id for c in clients]
        if not ids or len(set(ids)) != len(ids):
            raise ValueError(f"clients must be non-empty with unique ids, got {ids}")
        if plan.schedule is not None:
            unknown = {c for chosen in plan.schedule.selected.values() for c in chosen} - set(ids)
            if unknown:
                raise ValueError(f"schedule selects unknown clients {sorted(unknown)}")
        self.clients = {c.id: c for c in sorted(clients, key=lambda c: c.id)}
        self.server = server
        self.evaluator = evaluator
        self.plan = plan
        self.seed = int(seed)
        self.initial_weights = np.array(initial_weights, dtype=np.float64, copy=True)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.fingerprint = fingerprint
        self.on_round = on_round
        self.on_start = on_start
        self.budget_errors = budget_errors
        self._bytes = model_bytes(self.initial_weights.size)
        self.privacy_rounds: dict[int, dict[str, Any]] = {}  # round -> clipping record (privacy.quantum)

    # -- state -----------------------------------------------------------------------------------
    def initial_state(self) -> FederationState:
        """Round 0: the initial point, every client at the initial maxiter, round 1's selection."""
        rng = np.random.default_rng(derive_seed(self.seed, "selection"))
        if self.plan.schedule is not None:
            first = self.plan.schedule.selected[1]
        else:
            first = select_clients(
                self.plan.selector,
                clients=list(self.clients),
                fraction=self.plan.fraction,
                rng=rng,
                last_losses={},
                server_loss=None,
            )
        return FederationState(
            round=0,
            weights=self.initial_weights.copy(),
            maxiters={k: self.plan.initial_maxiter for k in self.clients},
            last_losses={},
            server_loss=None,
            next_selected=first,
            rng_state=rng.bit_generator.state,
        )

    def run(self, *, resume: bool = False) -> FederationResult:
        """All rounds (or until termination); ``resume`` continues from the last matching checkpoint.

        ``on_start`` sees the starting state (fresh or restored), ``on_round`` each round this call
        runs. A ``budget_errors`` exception (the backend's shot budget would be overrun) ends the
        run after the last complete round with stop reason ``shot_budget``.
        """
        state = None
        if self.checkpoint_dir is not None:
            if resume:
                state = load_latest(self.checkpoint_dir, fingerprint=self.fingerprint)
                if state is not None:
                    log.info("resuming after round %d from %s", state.round, self.checkpoint_dir)
                    restore_engine_state(self.evaluator, state.engine_state)  # shot-based: the same next seeds
            if state is None:
                clear_checkpoints(self.checkpoint_dir)
        state = state or self.initial_state()
        if self.on_start is not None:
            self.on_start(state)
        while state.round < self.plan.rounds and not state.stop_reason:
            before = snapshot(self.evaluator)
            try:
                state = self._round(state)
            except self.budget_errors as exc:
                if state.round == 0:
                    raise  # not even one round fits the budget: nothing to report
                log.warning("round %d aborted: %s; the run ends after round %d", state.round + 1, exc, state.round)
                spent = snapshot(self.evaluator) - before
                aborted = {"round": state.round + 1, **asdict(spent)}
                state = replace(_stopped(state, "shot_budget"), aborted=aborted)
                self._save(state)
                break
            self._save(state)
            if self.on_round is not None:
                self.on_round(state.round, [row for row in state.rows if row["round"] == state.round])
        return FederationResult(
            weights=state.weights.copy(),
            history=history_frame(state.rows),
            stop_reason=state.stop_reason,
            rounds_run=state.round,
            aborted=dict(state.aborted),
        )

    def _save(self, state: FederationState) -> None:
        if self.checkpoint_dir is not None:
            state = replace(state, engine_state=engine_state(self.evaluator))
            save_checkpoint(self.checkpoint_dir, state, fingerprint=self.fingerprint)

    # -- one round -------------------------------------------------------------------------------
    def _round(self, state: FederationState) -> FederationState:
        r = state.round + 1
        selected = state.next_selected
        maxiters = dict(state.maxiters)
        if self.plan.schedule is not None:
            maxiters = {k: self.plan.schedule.maxiter[(r, k)] for k in self.clients}
        if self.plan.cost_budget is not None:  # equal_cost: this round's even share of what is left
            even = max(1, self._even_maxiter(_circuits(state.rows), r, selected))
            maxiters.update({k: even for k in selected})
        updates, weights, evaluation, server_usage, server_seconds = self._train_and_evaluate(
            r, selected, maxiters, state.weights
        )

        last_losses = dict(state.last_losses)
        last_losses.update({k: u.train_loss for k, u in updates.items()})
        server_loss = evaluation["server_val"]["loss"]
        distances = {k: abs(j - server_loss) for k, j in last_losses.items() if math.isfinite(j)}
        mean_distance = float(np.mean(list(distances.values()))) if distances else math.nan

        next_maxiters = dict(maxiters)
        for k, update in updates.items():
            next_maxiters[k] = next_maxiter(
                self.plan.guidance,
                maxiter=maxiters[k],
                quantum_loss=update.train_loss * self.plan.quantum_loss_scale,
                llm_loss=self.clients[k].data.llm_loss,
                max_maxiter=self.plan.max_maxiter,
                max_increment=self.plan.max_increment,
                round_index=r + 1,
            )

        round_shots = server_usage.shots + sum(u.usage.shots for u in updates.values())
        plateau = update_plateau(state.plateau, mean_distance, self.plan.termination.plateau_tolerance)
        scale = self.plan.quantum_loss_scale
        stop_reason = check_termination(
            self.plan.termination,
            plateau=plateau,
            server_loss=server_loss * self.plan.quantum_loss_scale,
            server_llm_loss=self.server.llm_loss,
            shots_used=state.shots_used + round_shots,
            round_index=r,
            previous_server_loss=math.nan if state.server_loss is None else state.server_loss * scale,
        )

        rng = np.random.default_rng()
        rng.bit_generator.state = state.rng_state
        next_selected: tuple[int, ...] = ()
        if not stop_reason and r < self.plan.rounds:
            next_selected = self._select(r + 1, rng, last_losses, server_loss)

        rows = self._rows(r, selected, maxiters, updates, evaluation, distances, server_usage, server_seconds)
        spent = _circuits([*state.rows, *rows])
        if next_selected and self.plan.cost_budget is not None and self._even_maxiter(spent, r + 1, next_selected) == 0:
            stop_reason, next_selected = "cost_budget", ()
        rows[-1]["terminated"] = bool(stop_reason)
        rows[-1]["stop_reason"] = stop_reason
        log.info(
            "round %d: server val loss %.4f, test acc %.3f, selected %s%s",
            r,
            server_loss,
            evaluation["server_test"]["accuracy"],
            list(selected),
            f", stop: {stop_reason}" if stop_reason else "",
        )
        return FederationState(
            round=r,
            weights=weights,
            maxiters=next_maxiters,
            last_losses=last_losses,
            server_loss=server_loss,
            next_selected=next_selected,
            rng_state=rng.bit_generator.state,
            plateau=plateau,
            rows=[*state.rows, *rows],
            stop_reason=stop_reason,
            shots_used=state.shots_used + round_shots,
        )

    def _train_and_evaluate(
        self, r: int, selected: tuple[int, ...], maxiters: dict[int, int], global_weights: np.ndarray
    ) -> tuple[dict[int, ClientUpdate], np.ndarray, dict[str, dict[str, float]], Usage, float]:
        """Round ``r``'s work: the selected clients train one after another, then the server aggregates
        and evaluates. Returns (updates, global weights, evaluation, server usage, server seconds).

        Every call is keyed (participant, round, call index; :mod:`llmqfl.federated.evaluation_scope`),
        so its shots do not depend on how calls are grouped into jobs: the lockstep federation
        (:mod:`llmqfl.federated.lockstep`) overrides this method and ends with the same numbers.
        """
        updates: dict[int, ClientUpdate] = {}
        for k in selected:
            updates[k] = self.clients[k].train(
                ScopedEvaluator(self.evaluator, client_scope(k, r)),
                global_weights=global_weights,
                maxiter=maxiters[k],
                seed=self.client_seed(k, r),
            )
        server_start = time.perf_counter()
        view = ScopedEvaluator(self.evaluator, server_scope(r))
        weights = self.aggregate(updates, global_weights=global_weights, round_index=r)
        evaluation = self._evaluate(weights, view)
        return updates, weights, evaluation, view.stats.snapshot(), time.perf_counter() - server_start

    def _even_maxiter(self, spent: int, r: int, selected: Sequence[int]) -> int:
        """equal_cost: round ``r``'s common maxiter for ``selected`` (0: not one step is left)."""
        assert self.plan.cost_budget is not None
        return self.plan.cost_budget.even_maxiter(
            spent=spent,
            rounds_left=self.plan.rounds - r + 1,
            sizes=[self.clients[k].data.n_train for k in selected],
            server_circuits=sum(len(x) for _, x, _ in self._evaluation_sets()),
        )

    def client_seed(self, k: int, r: int) -> int:
        """Client ``k``'s optimizer seed in round ``r``."""
        return derive_seed(self.seed, "client", k, "round", r)

    def aggregate(
        self,
        updates: dict[int, ClientUpdate] | dict[int, np.ndarray],
        *,
        global_weights: np.ndarray | None = None,
        round_index: int = 0,
    ) -> np.ndarray:
        """The global weights from the trained clients' weights (size-weighted by their train items), or,
        with ``plan.privacy``, the noisy mean of their clipped updates from ``global_weights``
        (:mod:`llmqfl.federated.privacy`; each round's norms go to :attr:`privacy_rounds`)."""
        weights = {k: getattr(u, "weights", u) for k, u in updates.items()}
        if self.plan.privacy is not None:
            if global_weights is None:
                raise ValueError("private aggregation needs the round's global weights")
            aggregated, record = private_aggregate(
                weights, global_weights, self.plan.privacy, seed=self.seed, round_index=round_index
            )
            self.privacy_rounds[round_index] = record
            return aggregated
        return self.plan.aggregation.aggregate(weights, {k: self.clients[k].data.n_train for k in weights})

    def _select(
        self, round_index: int, rng: np.random.Generator, last_losses: dict[int, float], server_loss: float
    ) -> tuple[int, ...]:
        if self.plan.schedule is not None:
            return self.plan.schedule.selected[round_index]
        return select_clients(
            self.plan.selector,
            clients=list(self.clients),
            fraction=self.plan.fraction,
            rng=rng,
            last_losses=last_losses,
            server_loss=server_loss,
        )

    def evaluation_features(self) -> np.ndarray:
        """Every evaluation set's items, in :meth:`_evaluate`'s order: the server's one batched call."""
        return np.concatenate([np.asarray(x, dtype=np.float64) for _, x, _ in self._evaluation_sets() if len(x)])

    def _evaluation_sets(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        sets: list[tuple[str, np.ndarray, np.ndarray]] = [
            ("server_val", self.server.val_x, self.server.val_y),
            ("server_test", self.server.test_x, self.server.test_y),
        ]
        return sets + [(f"client_{k}", c.data.test_x, c.data.test_y) for k, c in self.clients.items()]

    def _evaluate(
        self, weights: np.ndarray, evaluator: EvaluatorLike | None = None, probs: np.ndarray | None = None
    ) -> dict[str, dict[str, float]]:
        """The global model on every evaluation set, in one batched call (or from its ``probs``)."""
        sets = self._evaluation_sets()
        if probs is None:
            probs = (evaluator or self.evaluator).probabilities(self.evaluation_features(), weights)
        results: dict[str, dict[str, float]] = {}
        offset = 0
        for name, x, y in sets:
            results[name] = classification_metrics(probs[offset : offset + len(x)], y)
            offset += len(x)
        return results

    def _rows(
        self,
        r: int,
        selected: tuple[int, ...],
        maxiters: dict[int, int],
        updates: dict[int, ClientUpdate],
        evaluation: dict[str, dict[str, float]],
        distances: dict[int, float],
        server_usage: Usage,
        server_seconds: float,
    ) -> list[dict[str, Any]]:
        clients = [
            client_row(
                r,
                client,
                selected=k in selected,
                maxiter=maxiters[k],
                update=updates.get(k),
                test=evaluation[f"client_{k}"],
                distance=distances.get(k, math.nan),
                model_bytes=self._bytes,
            )
            for k, client in self.clients.items()
        ]
        server = server_row(
            r,
            n_items=len(self.server.val_y),
            usage=server_usage,
            val=evaluation["server_val"],
            test=evaluation["server_test"],
            llm_loss=self.server.llm_loss,
            seconds=server_seconds,
        )
        return round_rows(clients, server)


def _stopped(state: FederationState, reason: str) -> FederationState:
    """``state`` with its last round's server row marked as the one that stopped the run."""
    rows = [dict(row) for row in state.rows]
    server_row = next(row for row in reversed(rows) if row["round"] == state.round and row["client"] == SERVER)
    server_row["terminated"], server_row["stop_reason"] = True, reason
    return replace(state, rows=rows, stop_reason=reason, next_selected=())


def _circuits(rows: Sequence[dict[str, Any]]) -> int:
    """Circuit executions recorded in history rows (clients and server)."""
    return int(sum(row["circuits"] for row in rows))
