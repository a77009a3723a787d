"""The cost plan counts what a run really does, and a run over its budget is refused before its first job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmqfl.config import load_settings, validate_config
from llmqfl.federated.schedule import Schedule
from llmqfl.planning import CostModel, Sizes, plan_arm, plan_config, sizes_from_files
from llmqfl.quantum.training.optimizers import fit_calls
from llmqfl.stages import data as data_stage
from llmqfl.stages import partition as partition_stage
from llmqfl.stages import plan as plan_stage
from llmqfl.stages import qfl as qfl_stage

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 3  # the hardware config's 10 rounds cut to 3: same counting, a third of the time


def _hardware_config(**backend: Any) -> dict[str, Any]:
    """config/experiments/ibm-hardware.yaml on the fake FakeManilaV2 (as shipped), fewer rounds."""
    config = yaml.safe_load((ROOT / "config/experiments/ibm-hardware.yaml").read_text())
    config["federation"]["rounds"] = ROUNDS
    config["backend"] = {"kind": "fake", "name": "FakeManilaV2", "shots": 10, **backend}
    return config


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data and partition stages' outputs for the hardware config, with LLM metrics for llm_guided."""
    base = tmp_path_factory.mktemp("hardware")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLMQFL_TRACKING", "off")
        config = validate_config(_hardware_config())
        data_stage.run(config, base / "data")
        partition_stage.run(config, base / "data", base / "partitions")
    for k in range(config["federation"]["n_clients"]):
        folder = base / "distill" / f"client_{k}"
        folder.mkdir(parents=True)
        # a far better LLM than the quantum model: the adaptive rule raises maxiter to the cap from round 2
        (folder / "metrics.json").write_text(json.dumps({"eval_loss": 0.01, "eval_accuracy": 0.99}))
    return base


def _config_file(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run_qfl(upstream: Path, config_file: Path, arm: str, out_dir: Path) -> int:
    return qfl_stage.main([
        "--config", str(config_file), "--arm", arm, "--seed", "0", "--data-dir", str(upstream / "data"),
        "--partitions-dir", str(upstream / "partitions"), "--distill-dir", str(upstream / "distill"),
        "--out-dir", str(out_dir),
    ])


def test_plan_is_within_ten_percent_of_what_a_fake_hardware_run_records(
    upstream: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    monkeypatch.setenv("LLMQFL_TRACKING", "off")
    config = _hardware_config()
    meta = json.loads((upstream / "data/meta.json").read_text())
    sizes = sizes_from_files(meta, json.loads((upstream / "partitions/partitions.json").read_text()))
    plan = plan_config(load_settings(config), sizes, int(meta["n_classes"]), arms=["baseline", "llm_guided"],
                       seeds=[0])
    planned = {run["arm"]: run for run in plan["runs"]}
    config_file = _config_file(tmp_path, config)
    # Act: the fake (local runtime) runs of both arms
    recorded = {}
    for arm in ("baseline", "llm_guided"):
        assert _run_qfl(upstream, config_file, arm, tmp_path / arm) == 0
        recorded[arm] = json.loads((tmp_path / arm / "accounting.json").read_text())["totals"]
    # Assert: baseline as expected; llm_guided, whose guidance raises maxiter to the cap, at the bound
    for arm, which in (("baseline", "expected"), ("llm_guided", "bound")):
        for key in ("jobs", "shots", "circuits"):
            assert recorded[arm][key] == pytest.approx(planned[arm][which][key], rel=0.10), (arm, key)
    assert planned["llm_guided"]["bound"]["jobs"] > planned["llm_guided"]["expected"]["jobs"]
    assert planned["baseline"]["expected"]["qpu_seconds"] > 0  # an estimate on FakeManilaV2's timings


def test_qfl_refuses_a_run_over_its_shot_budget_before_any_job(
    upstream: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a budget below the planned 34-job baseline (10 rounds' worth would be far more)
    monkeypatch.setenv("LLMQFL_TRACKING", "off")
    config_file = _config_file(tmp_path, _hardware_config(shot_budget=1000))
    # Act
    status = _run_qfl(upstream, config_file, "baseline", tmp_path / "out")
    # Assert: one line naming the budget, nothing written
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and err[0].startswith("llmqfl qfl: config error: backend.shot_budget: the baseline run")
    assert not (tmp_path / "out").exists()


def test_plan_cli_prints_writes_json_and_refuses_over_the_qpu_seconds_budget(
    upstream: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    args = ["--data-dir", str(upstream / "data"), "--partitions-dir", str(upstream / "partitions"), "--arm",
            "baseline", "--seed", "0"]
    ok_file = _config_file(tmp_path, _hardware_config())
    over = tmp_path / "over"
    over.mkdir()
    over_file = _config_file(over, _hardware_config(qpu_seconds_budget=5))
    # Act
    ok = plan_stage.main(["--config", str(ok_file), *args, "--out", str(tmp_path / "plan.json")])
    printed = capsys.readouterr().out
    refused = plan_stage.main(["--config", str(over_file), *args, "--out", str(over / "plan.json")])
    err = capsys.readouterr().err.strip().splitlines()
    # Assert
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert ok == 0 and "baseline" in printed and "QPU seconds are estimates" in printed
    # lockstep batching: each round costs its longest client's calls (fit 1 + train metrics 1), server included
    assert plan["runs"][0]["expected"]["jobs"] == ROUNDS * 2
    assert refused == 2 and len(err) == 1 and "backend.qpu_seconds_budget" in err[0]
    assert not (over / "plan.json").exists()


def test_optimizer_calls_and_a_replayed_schedule_are_counted_exactly() -> None:
    # Prepare: 2 clients, a budget_matched schedule with client 1 dropped in round 2
    config = load_settings({
        "federation": {"n_clients": 2, "rounds": 2, "selection": {"kind": "all"}},
        "qfl": {"optimizer": {"name": "spsa", "maxiter": 3, "max_maxiter": 9}},
        "backend": {"kind": "aer", "shots": 100},
    })
    sizes = Sizes(n_train=(10, 20), n_test=(2, 3), server_val=4, server_test=6)
    schedule = Schedule(maxiter={(1, 0): 3, (1, 1): 3, (2, 0): 5, (2, 1): 3}, selected={1: (0, 1), 2: (0,)})
    # Act
    run = plan_arm(config, "budget_matched", 0, sizes, n_params=8, cost_model=CostModel(device=None),
                   schedule=schedule)
    # Assert: SPSA = maxiter pair calls + the final point; each fit + one train-metrics call; one server call
    assert fit_calls("spsa", 3, 8) == [2, 2, 2, 1] and fit_calls("adam", 2, 8) == [17, 17, 1]
    server = 4 + 6 + 2 + 3
    round1 = (4 + 1) * 2 + 1
    round2 = (5 + 1 + 1) + 1
    assert run.expected.jobs == run.bound.jobs == 5 + 7  # lockstep (default): the longest client's calls per round
    sequential = config.with_values({"backend.batching": "sequential"})
    unbatched = plan_arm(sequential, "budget_matched", 0, sizes, n_params=8, cost_model=CostModel(device=None),
                         schedule=schedule)
    assert unbatched.expected.jobs == round1 + round2  # sequential: one job per call
    assert (unbatched.expected.circuits, unbatched.expected.shots) == (run.expected.circuits, run.expected.shots)
    circuits = (7 + 1) * 10 + (7 + 1) * 20 + server + (11 + 1) * 10 + server
    assert run.expected.circuits == circuits and run.expected.shots == circuits * 100


def test_the_plan_costs_the_model_the_run_builds() -> None:
    # Prepare: a named ansatz and feature map with their own reps (Adam's calls grow with the parameter count)
    from llmqfl.federated.run import build_model

    settings = load_settings({
        "federation": {"n_clients": 2, "rounds": 1, "selection": {"kind": "all"}},
        "qfl": {"n_qubits": 2, "ansatz": {"name": "efficient_su2", "reps": 2}, "feature_map": {"name": "pauli"},
                "optimizer": {"name": "adam", "maxiter": 2, "max_maxiter": 2}},
        "backend": {"kind": "aer", "shots": 10},
    })
    sizes = Sizes(n_train=(5, 7), n_test=(2, 2), server_val=3, server_test=3)
    n_params = build_model(settings, 2).n_params
    # Act
    planned = plan_config(settings, sizes, 2, arms=["baseline"], seeds=[0])["runs"][0]["expected"]
    direct = plan_arm(settings, "baseline", 0, sizes, n_params=n_params, cost_model=CostModel(device=None))
    # Assert
    assert n_params == 12 and planned["circuits"] == direct.expected.circuits
