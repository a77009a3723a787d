"""The no-LLM controls that isolate the LLM: equal_cost (L's total quantum cost spread evenly) and
loss_stopping (a stopping rule of L's kind on the arm's own server loss)."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmqfl.contracts import SERVER, TIMING_COLUMNS
from llmqfl.errors import DataError
from llmqfl.federated.client import Client, ClientData
from llmqfl.federated.cost_budget import CostBudget, total_circuits
from llmqfl.federated.server import Federation, FederationPlan, ServerData
from llmqfl.federated.termination import PlateauState, TerminationConfig, check_termination
from llmqfl.federated.threshold import delta_tau_from_reference
from llmqfl.quantum import build_model, make_evaluator, train_local
from llmqfl.quantum.training.optimizers import fit_calls

N_QUBITS, N_CLASSES = 2, 2


def _items(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(0, np.pi, (n, N_QUBITS))
    return x, (x[:, 0] > np.pi / 2).astype(np.int64)


def _federation(plan: FederationPlan, optimizer: str = "adam", **kwargs) -> Federation:
    rng = np.random.default_rng(0)
    clients = []
    for k, n in enumerate((8, 12, 10)):
        train_x, train_y = _items(rng, n)
        test_x, test_y = _items(rng, 4)
        data = ClientData(k, train_x, train_y, test_x, test_y, llm_loss=0.3)
        clients.append(Client(data, trainer=functools.partial(train_local, optimizer=optimizer),
                              distill_weight=0.0, temperature=2.0))
    val_x, val_y = _items(rng, 6)
    test_x, test_y = _items(rng, 6)
    model = build_model(kind="vqc", n_qubits=N_QUBITS, n_classes=N_CLASSES, ansatz_reps=1)
    return Federation(clients=clients, server=ServerData(val_x, val_y, test_x, test_y, llm_loss=0.3),
                      evaluator=make_evaluator(model, seed=0), plan=plan, seed=3,
                      initial_weights=np.full(model.n_params, 0.4), **kwargs)


def _plan(**kwargs) -> FederationPlan:
    settings = {"rounds": 6, "initial_maxiter": 2, "max_maxiter": 40, "selection": "all"} | kwargs
    return FederationPlan(**settings)


def _circuits(history: pd.DataFrame) -> int:
    return int(history["circuits"].sum())


# ---------------------------------------------------------------- equal_cost


def test_client_round_cost_counts_the_fit_and_the_train_read() -> None:
    budget = CostBudget(10_000, "adam", n_params=4)
    assert budget.client_round(3, n_train=10) == 10 * (sum(fit_calls("adam", 3, 4)) + 1) == 10 * (3 * 9 + 1 + 1)
    both = budget.client_round(1, 10) + budget.client_round(1, 5)
    assert budget.round_cost(1, [10, 5], server_circuits=7) == 7 + both


def test_even_maxiter_takes_the_largest_step_count_that_fits_the_rounds_share() -> None:
    budget = CostBudget(10_000, "cobyla", n_params=4)  # one circuit per item and step, +1 item read
    # 2 rounds left, 5000 each; a round costs 100 + 2 clients x 50 items x (m + 1)
    assert budget.even_maxiter(spent=0, rounds_left=2, sizes=[50, 50], server_circuits=100) == 48
    assert budget.round_cost(48, [50, 50], 100) <= 5000 < budget.round_cost(49, [50, 50], 100)
    # not even one step left: 0 (the run stops); less than the share but one step fits: 1
    assert budget.even_maxiter(spent=9_850, rounds_left=3, sizes=[50, 50], server_circuits=100) == 0
    assert budget.even_maxiter(spent=9_700, rounds_left=3, sizes=[50, 50], server_circuits=100) == 1


def test_equal_cost_spends_llm_guided_total_within_one_round_budget() -> None:
    # the reference: an LLM-like run that raised its clients' budgets and stopped after 3 of 6 rounds
    guided = _federation(_plan(rounds=3, initial_maxiter=7)).run()
    reference = _circuits(guided.history)
    plan = _plan(cost_budget=CostBudget(reference, "adam", n_params=4))
    even = _federation(plan).run()
    spent = _circuits(even.history)
    server_rows = even.history[even.history["client"] == SERVER]
    one_round = int(even.history[even.history["round"] == 1]["circuits"].sum())
    assert spent <= reference and reference - spent < one_round
    assert even.rounds_run == 6 and (server_rows["stop_reason"] == "").all()  # spread over every round
    # evenly: every selected client of a round gets the same maxiter, and the rounds' maxiters differ by <= 1
    selected = even.history[(even.history["client"] != SERVER) & even.history["selected"]]
    per_round = selected.groupby("round")["maxiter"].agg(["min", "max"])
    assert (per_round["min"] == per_round["max"]).all()
    assert per_round["min"].max() - per_round["min"].min() <= 1


def test_equal_cost_stops_when_not_one_step_is_left() -> None:
    small = _federation(_plan(rounds=1, initial_maxiter=1)).run()
    plan = _plan(cost_budget=CostBudget(_circuits(small.history) * 2, "adam", n_params=4))
    run = _federation(plan).run()
    assert run.rounds_run == 2 and run.stop_reason == "cost_budget"


def test_equal_cost_resumes_to_the_same_numbers(tmp_path: Path) -> None:
    plan = _plan(cost_budget=CostBudget(20_000, "adam", n_params=4))
    whole = _federation(plan).run()

    def crash(round_index: int, rows: list) -> None:
        if round_index == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _federation(plan, checkpoint_dir=tmp_path, fingerprint="f", on_round=crash).run()
    resumed = _federation(plan, checkpoint_dir=tmp_path, fingerprint="f").run(resume=True)
    timing = list(TIMING_COLUMNS)
    pd.testing.assert_frame_equal(whole.history.drop(columns=timing), resumed.history.drop(columns=timing))
    assert np.array_equal(whole.weights, resumed.weights)


def test_total_circuits_reads_a_history_and_refuses_a_bad_one(tmp_path: Path) -> None:
    frame = pd.DataFrame({"round": [1, 1, 1], "client": [0, 1, SERVER], "circuits": [10, 20, 5]})
    frame.to_parquet(tmp_path / "history.parquet")
    assert total_circuits(tmp_path / "history.parquet") == 35
    frame[frame["client"] != SERVER].to_parquet(tmp_path / "clients.parquet")
    with pytest.raises(DataError, match="no server rows"):
        total_circuits(tmp_path / "clients.parquet")
    with pytest.raises(DataError, match="not found"):
        total_circuits(tmp_path / "missing.parquet")


def test_a_plan_cannot_replay_and_spread_at_once() -> None:
    from llmqfl.federated.schedule import Schedule

    schedule = Schedule(maxiter={(1, 0): 1}, selected={1: (0,)})
    with pytest.raises(ValueError, match="not both"):
        _plan(rounds=1, schedule=schedule, cost_budget=CostBudget(10, "adam", n_params=4))


# ---------------------------------------------------------------- loss_stopping


def test_loss_delta_stops_when_the_server_loss_stops_moving() -> None:
    config = TerminationConfig(loss_delta=0.01)
    common = {"plateau": PlateauState(), "server_llm_loss": math.nan, "shots_used": 0}
    assert check_termination(config, server_loss=0.50, previous_server_loss=0.505, **common) == "loss_delta"
    assert check_termination(config, server_loss=0.50, previous_server_loss=0.55, **common) == ""
    assert check_termination(config, server_loss=0.50, previous_server_loss=math.nan, **common) == ""  # round 1


def test_loss_delta_tau_is_the_quantile_of_the_reference_changes() -> None:
    losses = np.array([0.7, 0.6, 0.55, 0.54, 0.535])  # changes .1 .05 .01 .005: median .03
    assert delta_tau_from_reference(losses, 0.5) == pytest.approx(0.03)
    with pytest.raises(ValueError, match="at least 2"):
        delta_tau_from_reference(np.array([0.7]), 0.25)


def test_loss_stopping_arm_stops_on_its_own_loss_without_an_llm() -> None:
    free = _federation(_plan(rounds=8)).run()
    server = free.history[free.history["client"] == SERVER]["loss"].to_numpy()
    tau = delta_tau_from_reference(server, 0.5)
    stopping = _federation(_plan(rounds=8, termination=TerminationConfig(loss_delta=tau))).run()
    assert stopping.stop_reason == "loss_delta" and stopping.rounds_run < free.rounds_run
    # it stopped at the first round whose change fell under tau, and ran the same rounds before that
    changes = np.abs(np.diff(server))
    assert stopping.rounds_run == int(np.argmax(changes < tau)) + 2
    assert np.allclose(stopping.history[stopping.history["client"] == SERVER]["loss"], server[: stopping.rounds_run])
