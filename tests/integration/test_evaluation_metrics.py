"""Per-run metrics from a hand-made history; statistics; the evaluate stage CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from synthetic_runs import accounting_for, synthetic_history

from llmqfl.errors import DataError
from llmqfl.evaluation.history import check_history, load_history
from llmqfl.evaluation.metrics import (
    circuits_after_best_loss,
    circuits_to_target,
    dyadic_rate,
    rounds_to_target,
    run_metrics,
)
from llmqfl.evaluation.stats import convergence_slope, summarise
from llmqfl.stages import evaluate

# (round, client) -> compute seconds; 2 clients, 3 rounds, everybody selected
COMPUTE = {(1, 0): 1.0, (1, 1): 3.0, (2, 0): 2.0, (2, 1): 2.5, (3, 0): 4.0, (3, 1): 1.0}
SERVER_ACCURACY = [0.5, 0.7, 0.8]
SERVER_LOSS = [0.9, 0.6, 0.5]


def hand_history() -> pd.DataFrame:
    rows = []
    for r in (1, 2, 3):
        slowest = max(COMPUTE[(r, k)] for k in (0, 1))
        for k in (0, 1):
            rows.append(_row(r, k, maxiter=10 * r, nfev=10 * r, circuits=10 * r * (5 + k), compute=COMPUTE[(r, k)],
                             idle=slowest - COMPUTE[(r, k)], loss=1.0, accuracy=0.6))
        idle = sum(slowest - COMPUTE[(r, k)] for k in (0, 1))
        rows.append(_row(r, -1, maxiter=0, nfev=0, circuits=7, compute=0.25, idle=idle, loss=SERVER_LOSS[r - 1],
                         accuracy=SERVER_ACCURACY[r - 1]))
    return check_history(pd.DataFrame(rows))


def _row(r: int, k: int, *, maxiter: int, nfev: int, circuits: int, compute: float, idle: float, loss: float,
         accuracy: float) -> dict:
    client = k >= 0
    return {"round": r, "client": k, "selected": client, "n_items": 5, "maxiter": maxiter, "nfev": nfev,
            "circuits": circuits, "shots": 0, "jobs": nfev, "loss": loss, "train_loss": loss, "llm_loss": math.nan,
            "distance": math.nan, "train_accuracy": accuracy, "test_accuracy": accuracy, "test_f1": accuracy - 0.05,
            "test_loss": loss + 0.1, "bytes_up": 128 if client else 0, "bytes_down": 128 if client else 0,
            "compute_seconds": compute, "qpu_seconds": compute / 2, "idle_seconds": idle, "terminated": False,
            "stop_reason": ""}


def hand_accounting(**override: float) -> dict:
    totals = {"nfev": 120, "circuits": 681, "shots": 0, "jobs": 120, "bytes_up": 768, "bytes_down": 768,
              "client_seconds": 13.5, "server_seconds": 0.75, "idle_seconds": 5.5, "qpu_seconds": 7.125,
              "wall_seconds": 20.0}
    totals.update(override)
    return {"arm": "baseline", "seed": 0, "rounds_run": 3, "totals": totals, "stop_reason": ""}


def test_metrics_of_a_hand_made_history_match_hand_computed_numbers() -> None:
    # Prepare
    history = hand_history()
    # Execute
    record = run_metrics(history, hand_accounting(), experiment="unit", rounds_configured=3, selection_kind="all")
    # Assert: idle = (3-1) + (2.5-2) + (4-1) = 5.5; client compute = 13.5; server = 3 x 0.25
    assert record["totals"]["idle_seconds"] == pytest.approx(5.5)
    assert record["per_round"]["idle_seconds"] == pytest.approx([2.0, 0.5, 3.0])
    assert record["totals"]["client_seconds"] == pytest.approx(13.5)
    assert record["totals"]["server_seconds"] == pytest.approx(0.75)
    assert record["totals"]["nfev"] == 2 * (10 + 20 + 30)
    assert record["totals"]["circuits"] == 5 * 60 + 6 * 60 + 3 * 7
    # client 1 runs 10r more circuits than client 0 in round r: idle work 10 + 20 + 30
    assert record["per_round"]["idle_circuits"] == pytest.approx([10, 20, 30])
    assert record["totals"]["idle_circuits"] == 60
    assert record["per_round"]["test_accuracy"] == pytest.approx(SERVER_ACCURACY)
    assert record["per_round"]["server_loss"] == pytest.approx(SERVER_LOSS)
    assert record["final"]["test_accuracy"] == pytest.approx(0.8)
    assert record["best"] == {"test_accuracy": pytest.approx(0.8), "round": 3}
    assert record["per_round"]["mean_maxiter"] == pytest.approx([10, 20, 30])
    assert record["n_params"] == 16
    assert record["selection"]["uplink_fraction"] == pytest.approx(1.0)
    assert record["wall_split"]["idle_share"] == pytest.approx(5.5 / (13.5 + 0.75 + 5.5))
    assert record["accounting_check"] == {"consistent": True, "mismatches": []}


def test_a_disagreeing_accounting_file_is_recorded_not_hidden() -> None:
    record = run_metrics(hand_history(), hand_accounting(nfev=999), experiment="unit", rounds_configured=3,
                         selection_kind="all")
    assert record["totals"]["nfev"] == 120  # the history wins
    assert record["accounting_check"]["mismatches"] == [{"key": "nfev", "history": 120.0, "accounting": 999.0}]


def test_rounds_to_target_is_the_first_round_at_or_above_it() -> None:
    assert rounds_to_target(SERVER_ACCURACY, 0.65) == 2
    assert rounds_to_target(SERVER_ACCURACY, 0.7) == 2
    assert rounds_to_target(SERVER_ACCURACY, 0.5) == 1
    assert rounds_to_target(SERVER_ACCURACY, 0.9) is None
    assert rounds_to_target([math.nan, 0.9], 0.8) == 2


def test_circuits_to_target_sum_the_rounds_up_to_the_first_that_reaches_it() -> None:
    circuits = [100, 50, 70]
    assert circuits_to_target(SERVER_ACCURACY, circuits, 0.7) == 150
    assert circuits_to_target(SERVER_ACCURACY, circuits, 0.5) == 100
    assert circuits_to_target(SERVER_ACCURACY, circuits, 0.9) is None


def test_circuits_after_the_best_loss_are_those_of_the_later_rounds() -> None:
    assert circuits_after_best_loss([0.9, 0.5, 0.6, 0.5], [10, 20, 30, 40]) == 70  # first best: round 2
    assert circuits_after_best_loss(SERVER_LOSS, [10, 20, 30]) == 0  # still improving at the end
    assert math.isnan(circuits_after_best_loss([math.nan, None], [10, 20]))


@pytest.mark.parametrize("order", [0.5, 1.0, 2.0])
def test_dyadic_rate_reads_the_order_without_the_optimum(order: float) -> None:
    # Prepare: F_T = F* + C T^-order for two optima; a floor just below the smallest loss cannot tell orders apart
    rounds = np.arange(1, 11)
    losses = 2.0 / rounds**order
    floor = losses.min() - 0.01 * (losses.max() - losses.min())
    # Execute / Assert
    assert dyadic_rate(0.3 + losses) == pytest.approx(-order)
    assert dyadic_rate(5.0 + losses) == pytest.approx(-order)
    assert convergence_slope(losses, f_star=floor).slope == pytest.approx(-1.85, abs=0.2)  # -1.7 to -2.0


def test_dyadic_rate_needs_three_doublings_and_progress_over_each() -> None:
    assert dyadic_rate([1.0, 0.5, 0.4, 0.35, 0.3]) is None  # 5 rounds: doublings from T = 1, 2 only
    assert dyadic_rate([1.0, 0.5, 0.4, 0.4, 0.4, 0.4]) is None  # no progress from round 3 to 6
    assert dyadic_rate([1.0, 0.5, math.nan, 0.3, 0.2, 0.1]) is None
    assert dyadic_rate([1.0, 0.5, 0.4, 0.3, 0.2, 0.1]) is not None


def test_slope_of_a_1_over_t_curve_is_minus_one() -> None:
    # Prepare: F_T = F* + C / T
    rounds = np.arange(1, 11)
    losses = 0.3 + 2.0 / rounds
    # Execute
    known = convergence_slope(losses, f_star=0.3)
    estimated = convergence_slope(losses)
    # Assert
    assert known.slope == pytest.approx(-1.0, abs=1e-9)
    assert estimated.slope == pytest.approx(-1.0, abs=0.05)
    assert estimated.f_star == pytest.approx(0.3, abs=0.02)
    assert estimated.r2 > 0.999


def test_slope_of_a_1_over_t_squared_curve_is_minus_two_and_flat_curves_have_none() -> None:
    rounds = np.arange(1, 16)
    assert convergence_slope(1.0 + 5.0 / rounds**2).slope == pytest.approx(-2.0, abs=0.1)
    assert convergence_slope([0.7] * 10) is None
    assert convergence_slope([0.9, 0.8]) is None


def test_the_estimated_optimum_stays_at_or_above_zero_so_a_log_shaped_curve_is_not_called_flat() -> None:
    # Prepare: F_T = 1 - 0.1 ln T is not a power law; without a bound F* runs off to -infinity, slope -> 0
    losses = 1.0 - 0.1 * np.log(np.arange(1, 11))
    # Execute
    bounded = convergence_slope(losses)
    unbounded = convergence_slope(losses, lower_bound=None)
    # Assert
    assert bounded.f_star >= 0.0
    assert bounded.slope <= -0.1
    assert unbounded.f_star < -1.0 and abs(unbounded.slope) < abs(bounded.slope)


def test_summary_uses_a_student_t_interval_and_none_for_one_seed() -> None:
    three = summarise([1.0, 2.0, 3.0])
    assert three.mean == pytest.approx(2.0)
    assert three.high - three.mean == pytest.approx(4.302652729911275 / math.sqrt(3))
    one = summarise([0.42, math.nan])
    assert one.n == 1 and not one.has_interval
    assert one.format() == "0.42 (n=1, no interval)"
    assert summarise([]) is None


def test_evaluate_cli_writes_the_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    monkeypatch.setenv("LLMQFL_TRACKING", "off")
    history = synthetic_history("llm_guided", 1)
    history.to_parquet(tmp_path / "history.parquet", index=False)
    (tmp_path / "accounting.json").write_text(json.dumps(accounting_for(history, "llm_guided", 1)))
    out = tmp_path / "eval" / "llm_guided" / "seed_1.json"
    config = json.dumps({"experiment": "synth", "federation": {"n_clients": 4, "rounds": 6}})
    # Execute
    code = evaluate.main(["--config", config, "--history", str(tmp_path / "history.parquet"),
                          "--accounting", str(tmp_path / "accounting.json"), "--out", str(out)])
    # Assert
    assert code == 0
    record = json.loads(out.read_text())
    assert (record["arm"], record["seed"], record["rounds_run"], record["stop_reason"]) == (
        "llm_guided", 1, 4, "llm_threshold")
    assert record["terminated_round"] == 4
    assert record["accounting_check"]["consistent"]
    assert record["totals"]["nfev"] == int(history["nfev"].sum())


def test_evaluate_cli_rejects_a_broken_history_before_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: a history with no server rows
    monkeypatch.setenv("LLMQFL_TRACKING", "off")
    history = synthetic_history("baseline", 0)
    history[history["client"] >= 0].to_parquet(tmp_path / "history.parquet", index=False)
    (tmp_path / "accounting.json").write_text(json.dumps(accounting_for(history, "baseline", 0)))
    out = tmp_path / "eval.json"
    # Execute
    code = evaluate.main(["--config", "{}", "--history", str(tmp_path / "history.parquet"),
                          "--accounting", str(tmp_path / "accounting.json"), "--out", str(out)])
    # Assert
    assert code == 2
    assert "server row" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(DataError, match="not found"):
        load_history(tmp_path / "missing.parquet")


def test_evaluate_logs_summary_metrics_to_mlflow_and_no_second_copy_of_the_curves(
    tmp_path: Path, mlflow_uri: str
) -> None:
    # Prepare
    import mlflow

    history = synthetic_history("baseline", 2)
    history.to_parquet(tmp_path / "history.parquet", index=False)
    (tmp_path / "accounting.json").write_text(json.dumps(accounting_for(history, "baseline", 2)))
    # Execute
    code = evaluate.main(["--config", json.dumps({"experiment": "mlf"}), "--history", str(tmp_path / "history.parquet"),
                          "--accounting", str(tmp_path / "accounting.json"), "--out", str(tmp_path / "e.json")])
    # Assert
    assert code == 0
    client = mlflow.MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("llmqfl-mlf")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.tags["llmqfl.arm"] == "baseline" and run.data.tags["llmqfl.seed"] == "2"
    # the per-round curves belong to the qfl run (logged as the rounds run), not repeated here
    assert client.get_metric_history(run.info.run_id, "test_accuracy") == []
    assert run.data.metrics["final_test_accuracy"] == history[history["client"] == -1]["test_accuracy"].iloc[-1]
    assert run.data.metrics["total_nfev"] == history["nfev"].sum()
    assert "e.json" in [a.path for a in client.list_artifacts(run.info.run_id)]
