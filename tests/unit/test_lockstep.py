"""Lockstep job batching: the same weights, losses and counts as clients one after another, in fewer jobs."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
from fakes.backend_settings import backend_settings

from llmqfl.config import load_settings
from llmqfl.errors import DataError
from llmqfl.federated.client import Client, ClientData
from llmqfl.federated.lockstep import LockstepFederation, ReportFit
from llmqfl.federated.schedule import Schedule
from llmqfl.federated.server import Federation, FederationPlan, ServerData
from llmqfl.planning import CostModel, Sizes, plan_arm
from llmqfl.quantum import build_model, make_evaluator, train_local
from llmqfl.quantum.backends.backend import ShotBudgetExceeded, make_backend
from llmqfl.quantum.training.optimizers import fit_calls

N_QUBITS, SIZES = 2, (6, 9, 7, 8)
COUNTED = ["client", "round", "loss", "train_loss", "test_accuracy", "test_loss", "nfev", "circuits", "shots"]


def _items(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(0, np.pi, (n, N_QUBITS))
    return x, (x[:, 0] > np.pi / 2).astype(np.int64)


def _clients() -> list[ClientData]:
    rng = np.random.default_rng(0)
    return [ClientData(k, *_items(rng, n), *_items(rng, 3), llm_loss=0.05) for k, n in enumerate(SIZES)]


def _server() -> ServerData:
    rng = np.random.default_rng(1)
    return ServerData(*_items(rng, 4), *_items(rng, 4), llm_loss=0.05)


def _federation(cls: type[Federation], optimizer: str, kind: str | None, plan: FederationPlan, **backend) -> tuple:
    model = build_model(kind="vqc", n_qubits=N_QUBITS, n_classes=2, ansatz_reps=1)
    settings = backend_settings(kind=kind, shots=20, **backend) if kind is not None else None
    device = None if settings is None else make_backend(settings, seed=1, n_qubits=N_QUBITS)
    trainer = ReportFit(functools.partial(train_local, optimizer=optimizer, learning_rate=0.1))
    clients = [Client(d, trainer=trainer, distill_weight=0.0, temperature=2.0) for d in _clients()]
    evaluator = make_evaluator(model, backend=device, seed=0)
    federation = cls(clients=clients, server=_server(), evaluator=evaluator, plan=plan, seed=0,
                     initial_weights=np.full(model.n_params, 0.5))
    return federation, evaluator


def _plan(**kwargs) -> FederationPlan:
    return FederationPlan(**{"rounds": 2, "initial_maxiter": 3, "max_maxiter": 6, "selection": "all", **kwargs})


@pytest.mark.parametrize("optimizer", ["cobyla", "spsa", "adam"])
@pytest.mark.parametrize("kind", [None, "aer"], ids=["exact", "aer_shots"])
def test_lockstep_gives_the_numbers_of_clients_one_after_another_in_fewer_jobs(optimizer: str, kind: str) -> None:
    # Prepare
    off, off_evaluator = _federation(Federation, optimizer, kind, _plan())
    lockstep, lockstep_evaluator = _federation(LockstepFederation, optimizer, kind, _plan())
    # Act
    expected, got = off.run(), lockstep.run()
    # Assert: the same weights bit for bit and the same losses and counts (seeded shots: the same draws)
    assert np.array_equal(expected.weights, got.weights)
    pd.testing.assert_frame_equal(expected.history[COUNTED], got.history[COUNTED])
    # jobs: per round the longest client's calls (its fit, then train metrics; the server joins the last)
    calls = len(fit_calls(optimizer, 3, off.initial_weights.size)) + 1  # every client: maxiter 3
    if kind is None:
        assert off_evaluator.stats.jobs == lockstep_evaluator.stats.jobs == 0
    else:
        assert off_evaluator.stats.jobs == 2 * (len(SIZES) * calls + 1)
        assert lockstep_evaluator.stats.jobs == 2 * calls
        assert int(got.history["jobs"].sum()) == lockstep_evaluator.stats.jobs  # each job counted once


def test_seeded_noisy_counts_do_not_depend_on_the_job_a_call_travels_in() -> None:
    # Prepare: the noisy simulator (FakeManilaV2's noise, numpy density-matrix engine), two keyed calls
    model = build_model(kind="vqc", n_qubits=N_QUBITS, n_classes=2, ansatz_reps=1)
    backend = make_backend(backend_settings(kind="aer_noisy", shots=50), seed=1, n_qubits=N_QUBITS)
    evaluator = make_evaluator(model, backend=backend, seed=3)
    rng = np.random.default_rng(0)
    first = (rng.uniform(0, 3, (5, N_QUBITS)), rng.uniform(0, 3, model.n_params), ("client", 0, "round", 1, "call", 0))
    second = (rng.uniform(0, 3, (4, N_QUBITS)), rng.uniform(0, 3, (3, model.n_params)), ("client", 1, "round", 1,
                                                                                          "call", 0))
    # Act
    together = evaluator.probabilities_batch([first, second])
    alone = [evaluator.probabilities_batch([call])[0] for call in (first, second)]
    # Assert: the same counts, one job for both against one each
    assert together[0].shape == (5, 2) and together[1].shape == (3, 4, 2)
    assert all(np.array_equal(a, b) for a, b in zip(together, alone, strict=True))
    assert backend.usage()["jobs"] == 3


def test_jobs_follow_the_longest_client_and_the_plan_counts_them() -> None:
    # Prepare: a replayed schedule with different budgets per client, client 3 left out of round 2
    maxiter = {(1, 0): 2, (1, 1): 5, (1, 2): 3, (1, 3): 1, (2, 0): 4, (2, 1): 1, (2, 2): 2, (2, 3): 1}
    schedule = Schedule(maxiter=maxiter, selected={1: (0, 1, 2, 3), 2: (0, 1, 2)})
    plan = _plan(max_maxiter=5, schedule=schedule)
    federation, evaluator = _federation(LockstepFederation, "cobyla", "aer", plan)
    config = load_settings({"federation": {"n_clients": 4, "rounds": 2}, "backend": {"kind": "aer", "shots": 20}})
    sizes = Sizes(n_train=SIZES, n_test=(3,) * 4, server_val=4, server_test=4)
    # Act
    result = federation.run()
    planned = plan_arm(config, "budget_matched", 0, sizes, n_params=federation.initial_weights.size,
                       cost_model=CostModel(device=None), schedule=schedule)
    # Assert: round 1 = 5 fit calls + 1, round 2 = 4 + 1 (COBYLA uses its whole budget here)
    per_round = result.history.groupby("round")["jobs"].sum().tolist()
    assert per_round == [6, 5] and evaluator.stats.jobs == 11
    usage = evaluator.stats
    assert (planned.expected.jobs, planned.expected.circuits, planned.expected.shots) == (
        usage.jobs, usage.circuits, usage.shots)


def test_a_shot_budget_hit_mid_round_ends_the_run_after_the_last_complete_round() -> None:
    # Prepare: a budget that round 1 fits and round 2 does not (every client thread must be released)
    probe, probe_evaluator = _federation(LockstepFederation, "cobyla", "aer", _plan(rounds=1))
    probe.run()
    budget = int(probe_evaluator.stats.shots * 1.5)
    federation, evaluator = _federation(LockstepFederation, "cobyla", "aer", _plan(rounds=3), shot_budget=budget)
    federation.budget_errors = (ShotBudgetExceeded,)
    # Act
    result = federation.run()
    # Assert
    assert result.rounds_run == 1 and result.stop_reason == "shot_budget"
    assert result.aborted["round"] == 2 and 0 < result.aborted["shots"] <= budget - probe_evaluator.stats.shots
    assert evaluator.backend.usage()["shots"] <= budget


def test_a_failing_client_fails_the_round_with_its_own_error_and_releases_the_others() -> None:
    # Prepare: client 2's trainer fails after its fit has started (others are waiting at the batcher)
    federation, _ = _federation(LockstepFederation, "cobyla", "aer", _plan())
    client = federation.clients[2]

    def failing(evaluator, *args, **kwargs):
        evaluator.probabilities(client.data.train_x, np.zeros(federation.initial_weights.size))
        raise DataError("client 2: broken items")

    client._trainer = failing
    # Act / Assert: the client's error, not a hang or another client's abort
    with pytest.raises(DataError, match="client 2: broken items"):
        federation.run()
