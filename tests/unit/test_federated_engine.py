"""The round loop on the exact simulator: global weights carried over, resume, determinism, accounting."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmqfl.errors import ConfigError
from llmqfl.federated.accounting import TIMING_COLUMNS, accounting_summary, model_bytes
from llmqfl.federated.aggregation import fedavg
from llmqfl.federated.client import Client, ClientData
from llmqfl.federated.schedule import _schedule_from_frame
from llmqfl.federated.server import Federation, FederationPlan, ServerData
from llmqfl.federated.termination import TerminationConfig
from llmqfl.quantum import build_model, make_evaluator, train_local

N_QUBITS, N_CLASSES = 3, 2


def _items(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(0, np.pi, (n, N_QUBITS))
    return x, (x[:, 0] > np.pi / 2).astype(np.int64)


def _clients(seed: int = 0, sizes: tuple[int, ...] = (8, 12, 10), teacher: bool = False) -> list[ClientData]:
    rng = np.random.default_rng(seed)
    out = []
    for k, n in enumerate(sizes):
        train_x, train_y = _items(rng, n)
        test_x, test_y = _items(rng, 4)
        probs = np.full((n, N_CLASSES), 0.1)
        probs[np.arange(n), train_y] = 0.9
        out.append(
            ClientData(k, train_x, train_y, test_x, test_y, teacher_probs=probs if teacher else None, llm_loss=0.05)
        )
    return out


def _server(seed: int = 1) -> ServerData:
    rng = np.random.default_rng(seed)
    val_x, val_y = _items(rng, 6)
    test_x, test_y = _items(rng, 6)
    return ServerData(val_x, val_y, test_x, test_y, llm_loss=0.05)


class RecordingTrainer:
    """``train_local`` with COBYLA bound; remembers every call's start point and result."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self._train = functools.partial(train_local, optimizer="cobyla")

    def __call__(self, evaluator, features, labels, *, x0, maxiter, seed, **kwargs):
        result = self._train(evaluator, features, labels, x0=x0, maxiter=maxiter, seed=seed, **kwargs)
        self.calls.append({"n": len(labels), "x0": np.array(x0), "weights": result.weights, "maxiter": maxiter})
        return result


def _federation(
    plan: FederationPlan,
    *,
    trainer: RecordingTrainer | None = None,
    checkpoint_dir: Path | None = None,
    on_round=None,
    distill_weight: float = 0.0,
) -> Federation:
    model = build_model(kind="vqc", n_qubits=N_QUBITS, n_classes=N_CLASSES, ansatz_reps=1)
    trainer = trainer or RecordingTrainer()
    clients = [
        Client(data, trainer=trainer, distill_weight=distill_weight, temperature=2.0)
        for data in _clients(teacher=distill_weight > 0)
    ]
    return Federation(
        clients=clients,
        server=_server(),
        evaluator=make_evaluator(model, seed=0),
        plan=plan,
        seed=123,
        initial_weights=np.random.default_rng(5).uniform(-np.pi, np.pi, model.n_params),
        checkpoint_dir=checkpoint_dir,
        fingerprint="test",
        on_round=on_round,
    )


def _guided_plan(rounds: int = 3, **kwargs) -> FederationPlan:
    defaults = {
        "initial_maxiter": 3,
        "max_maxiter": 12,
        "guidance_rule": "adaptive",
        "selection": "random",
        "fraction": 0.67,
    }
    return FederationPlan(rounds=rounds, **{**defaults, **kwargs})


def _untimed(history: pd.DataFrame) -> pd.DataFrame:
    return history.drop(columns=list(TIMING_COLUMNS))


def test_selected_clients_start_each_round_from_the_aggregated_global_weights() -> None:
    # Prepare
    trainer = RecordingTrainer()
    federation = _federation(FederationPlan(rounds=2, initial_maxiter=4, max_maxiter=4), trainer=trainer)
    # Execute
    result = federation.run()
    # Assert: round 2 starts from FedAvg of round 1, NOT from each client's own round-1 weights (D6)
    round1, round2 = trainer.calls[:3], trainer.calls[3:]
    expected = fedavg({i: c["weights"] for i, c in enumerate(round1)}, {i: c["n"] for i, c in enumerate(round1)})
    for first, second in zip(round1, round2, strict=True):
        np.testing.assert_array_equal(second["x0"], expected)
        assert not np.allclose(second["x0"], first["weights"])
    np.testing.assert_allclose(
        result.weights,
        fedavg({i: c["weights"] for i, c in enumerate(round2)}, {i: c["n"] for i, c in enumerate(round2)}),
    )
    np.testing.assert_array_equal(round1[0]["x0"], federation.initial_weights)


def test_same_seed_gives_the_same_history_and_weights() -> None:
    # Prepare / Execute
    first = _federation(_guided_plan()).run()
    second = _federation(_guided_plan()).run()
    # Assert: every column but the measured times
    pd.testing.assert_frame_equal(_untimed(first.history), _untimed(second.history))
    np.testing.assert_array_equal(first.weights, second.weights)


def test_interrupted_run_resumes_to_the_same_result_as_an_uninterrupted_one(tmp_path: Path) -> None:
    # Prepare
    class Interrupt(Exception):
        pass

    def stop_after_two(round_index: int, rows: list[dict]) -> None:
        if round_index == 2:
            raise Interrupt

    plan = _guided_plan(rounds=4)
    uninterrupted = _federation(plan, checkpoint_dir=tmp_path / "a").run()
    with pytest.raises(Interrupt):
        _federation(plan, checkpoint_dir=tmp_path / "b", on_round=stop_after_two).run()
    trainer = RecordingTrainer()
    # Execute
    resumed = _federation(plan, trainer=trainer, checkpoint_dir=tmp_path / "b").run(resume=True)
    # Assert: only rounds 3-4 were trained again, and the numbers are identical
    assert len(trainer.calls) == int(uninterrupted.history.query("round > 2 and selected").shape[0])
    pd.testing.assert_frame_equal(_untimed(resumed.history), _untimed(uninterrupted.history))
    np.testing.assert_array_equal(resumed.weights, uninterrupted.weights)
    expected_files = [f"round_{r}.{ext}" for r in range(1, 5) for ext in ("json", "npz")]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == expected_files


def test_resume_ignores_checkpoints_of_other_inputs_and_a_corrupt_last_round(tmp_path: Path) -> None:
    # Prepare: a finished run, then its last checkpoint damaged
    plan = _guided_plan(rounds=3)
    reference = _federation(plan, checkpoint_dir=tmp_path).run()
    (tmp_path / "round_3.npz").write_bytes(b"not an npz")
    trainer = RecordingTrainer()
    # Execute: resumes after round 2 (round 3's weights unreadable)
    resumed = _federation(plan, trainer=trainer, checkpoint_dir=tmp_path).run(resume=True)
    fresh_trainer = RecordingTrainer()
    other_federation = _federation(plan, trainer=fresh_trainer, checkpoint_dir=tmp_path)
    other_federation.fingerprint = "other inputs"
    other_federation.run(resume=True)
    # Assert
    assert len(trainer.calls) == int(reference.history.query("round == 3 and selected").shape[0])
    np.testing.assert_array_equal(resumed.weights, reference.weights)
    assert len(fresh_trainer.calls) == int(reference.history.query("selected").shape[0])  # started from scratch


def test_history_rows_and_accounting_follow_the_contract() -> None:
    # Prepare
    plan = _guided_plan(rounds=2)
    federation = _federation(plan)
    n_params = federation.initial_weights.size
    # Execute
    result = federation.run()
    summary = accounting_summary(result.history, arm="llm_guided", seed=0, stop_reason=result.stop_reason)
    history = result.history
    # Assert
    assert len(history) == 2 * 4 and set(history["client"]) == {-1, 0, 1, 2}
    clients, server = history[history["client"] >= 0], history[history["client"] == -1]
    selected = clients[clients["selected"]]
    assert (selected["bytes_up"] == model_bytes(n_params)).all() and (selected["bytes_down"] == 8 * n_params).all()
    assert (clients.loc[~clients["selected"], ["bytes_up", "nfev", "circuits"]] == 0).all().all()
    assert (selected["circuits"] == (selected["nfev"] + 1) * selected["n_items"]).all()  # training + one train eval
    assert (server["circuits"] == 6 + 6 + 3 * 4).all()  # server_val + server test + every client's local test
    assert (server["maxiter"] == 0).all() and server["distance"].isna().all()
    for _, rows in history.groupby("round"):
        chosen = rows[rows["selected"]]
        slowest = chosen["compute_seconds"].max()
        np.testing.assert_allclose(chosen["idle_seconds"], slowest - chosen["compute_seconds"])
        client_idle = rows.loc[rows["client"] >= 0, "idle_seconds"].sum()
        assert rows.loc[rows["client"] == -1, "idle_seconds"].item() == pytest.approx(client_idle)
    server_loss = selected["round"].map(server.set_index("round")["loss"])
    np.testing.assert_allclose(selected["distance"], (selected["train_loss"] - server_loss).abs())
    assert summary["totals"]["circuits"] == history["circuits"].sum()
    assert summary["totals"]["bytes_up"] == history["bytes_up"].sum()
    assert summary["rounds_run"] == 2 and [r["round"] for r in summary["per_round"]] == [1, 2]
    assert all(math.isfinite(v) for v in summary["totals"].values())


def test_guidance_raises_maxiter_of_trained_clients_and_rounds_record_the_budget_used() -> None:
    # Prepare: LLM loss 0.05 is far below any quantum loss, so adaptive multiplies maxiter each round
    plan = FederationPlan(rounds=3, initial_maxiter=2, max_maxiter=9, guidance_rule="adaptive")
    trainer = RecordingTrainer()
    # Execute
    history = _federation(plan, trainer=trainer).run().history
    # Assert
    by_round = history[history["client"] >= 0].groupby("round")["maxiter"].apply(list).to_dict()
    assert by_round[1] == [2, 2, 2]
    assert all(m == 9 for m in by_round[2])  # floor(2 * J / 0.05) is far above the cap
    assert [c["maxiter"] for c in trainer.calls] == [2, 2, 2, 9, 9, 9, 9, 9, 9]


def test_llm_threshold_stops_early_and_plateau_is_switchable() -> None:
    # Prepare
    stop_now = _guided_plan(rounds=4, termination=TerminationConfig(llm_threshold=100.0))
    never = _guided_plan(rounds=2, termination=TerminationConfig())
    # Execute
    stopped = _federation(stop_now).run()
    full = _federation(never).run()
    # Assert
    assert stopped.rounds_run == 1 and stopped.stop_reason == "llm_threshold"
    server = stopped.history[stopped.history["client"] == -1]
    assert server["terminated"].tolist() == [True] and server["stop_reason"].tolist() == ["llm_threshold"]
    assert full.rounds_run == 2 and full.stop_reason == "" and not full.history["terminated"].any()


def test_budget_matched_schedule_replays_selection_and_maxiter() -> None:
    # Prepare
    frame = pd.DataFrame(
        {
            "round": [1, 1, 1, 2, 2, 2],
            "client": [0, 1, 2, 0, 1, 2],
            "selected": [True, False, True, False, True, False],
            "maxiter": [2, 3, 4, 5, 6, 7],
        }
    )
    schedule = _schedule_from_frame(frame, clients=[0, 1, 2], source="test")
    plan = FederationPlan(rounds=2, initial_maxiter=1, max_maxiter=1, selection="all", schedule=schedule)
    trainer = RecordingTrainer()
    # Execute
    history = _federation(plan, trainer=trainer).run().history
    # Assert
    assert [c["maxiter"] for c in trainer.calls] == [2, 4, 6]
    clients = history[history["client"] >= 0]
    assert clients["selected"].tolist() == frame["selected"].tolist()
    assert clients["maxiter"].tolist() == frame["maxiter"].tolist()


def test_distillation_uses_teacher_probabilities_and_changes_the_result() -> None:
    # Prepare
    plan = FederationPlan(rounds=1, initial_maxiter=6, max_maxiter=6)
    # Execute
    plain = _federation(plan).run()
    distilled = _federation(plan, distill_weight=1.0).run()
    # Assert
    assert not np.allclose(plain.weights, distilled.weights)
    client_rows = distilled.history[distilled.history["client"] >= 0]
    assert (client_rows["loss"] > client_rows["train_loss"]).all()  # objective = CE + KL term


def test_bad_plans_and_clients_are_rejected() -> None:
    with pytest.raises(ValueError, match="maxiter"):
        FederationPlan(rounds=1, initial_maxiter=0, max_maxiter=1)
    # an extension name that did not come through the config's validation: the registry's one line, at build
    with pytest.raises(ConfigError, match=r"federation\.selection\.kind: 'best' is not one of: all, "):
        FederationPlan(rounds=1, initial_maxiter=1, max_maxiter=1, selection="best")
    with pytest.raises(ConfigError, match=r"federation\.aggregator: 'median' is not one of: fedavg, mean"):
        FederationPlan(rounds=1, initial_maxiter=1, max_maxiter=1, aggregator="median")
    with pytest.raises(ConfigError, match=r"qfl\.termination\.tests: 'never' is not one of: "):
        FederationPlan(rounds=1, initial_maxiter=1, max_maxiter=1, termination=TerminationConfig(tests=("never",)))
    with pytest.raises(ValueError, match="teacher"):
        Client(_clients()[0], trainer=RecordingTrainer(), distill_weight=0.5, temperature=2.0)


def test_a_plan_resolves_its_extensions_once_and_the_rounds_look_up_no_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: every extension point named, one termination test an extension's
    from llmqfl import registry
    from llmqfl.federated.aggregation import Mean
    from llmqfl.federated.guidance import Adaptive
    from llmqfl.federated.selection import RandomClients

    class Never:
        def check(self, outcome) -> bool:
            return False

    monkeypatch.setitem(registry._ENTRIES["termination"], "never", Never)
    plan = _guided_plan(aggregator="mean", termination=TerminationConfig(plateau_rounds=9, tests=("never",)))
    federation = _federation(plan)
    reference = _federation(_guided_plan(aggregator="mean", termination=TerminationConfig(plateau_rounds=9))).run()
    # Execute: from here on no name resolves (any registry lookup would raise)
    monkeypatch.setattr(registry, "_ENTRIES", {kind: {} for kind in registry.KINDS})
    result = federation.run()
    # Assert: the plan holds the objects, and the rounds ran on them
    assert isinstance(plan.guidance, Adaptive) and isinstance(plan.selector, RandomClients)
    assert isinstance(plan.aggregation, Mean) and plan.selector is plan.selector
    assert [name for name, _ in plan.termination.active] == ["plateau", "never"]
    assert result.rounds_run == 3
    np.testing.assert_array_equal(result.weights, reference.weights)


def test_shot_budget_error_ends_the_run_after_the_last_complete_round(tmp_path: Path) -> None:
    # Prepare: the "backend" refuses the 5th training job (round 2, second client)
    class BudgetExceeded(Exception):
        pass

    inner = RecordingTrainer()

    def trainer(*args, **kwargs):
        if len(inner.calls) == 4:
            raise BudgetExceeded("shots")
        return inner(*args, **kwargs)

    plan = FederationPlan(rounds=3, initial_maxiter=2, max_maxiter=2)
    federation = _federation(plan, trainer=trainer, checkpoint_dir=tmp_path)
    federation.budget_errors = (BudgetExceeded,)
    started = []
    federation.on_start = lambda state: started.append(state.round)
    # Execute
    result = federation.run()
    resumed = _federation(plan, checkpoint_dir=tmp_path)
    resumed_result = resumed.run(resume=True)
    # Assert
    assert started == [0]
    assert result.rounds_run == 1 and result.stop_reason == "shot_budget"
    server = result.history[result.history["client"] == -1]
    assert server["terminated"].tolist() == [True] and server["stop_reason"].tolist() == ["shot_budget"]
    assert result.aborted["round"] == 2 and result.aborted["circuits"] > 0  # round 2's first client did train
    assert resumed_result.rounds_run == 1 and resumed_result.stop_reason == "shot_budget"  # a stopped run stays stopped
    assert resumed_result.aborted == result.aborted
