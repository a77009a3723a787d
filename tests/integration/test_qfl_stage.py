"""The ``qfl`` stage CLI end to end on a tiny DNA federation (3 clients x 12 items, 2 rounds)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from qfl_stage_inputs import N_CLIENTS, ROOT, _argv, _config, _history

from llmqfl.federated.accounting import HISTORY_COLUMNS, TIMING_COLUMNS
from llmqfl.stages import qfl as stage


def test_three_arms_write_the_contract_files_and_budget_matched_replays_llm_guided(results: Path) -> None:
    # Prepare
    config = _config()
    guided_dir = results / "qfl" / "llm_guided" / "seed_0"
    # Execute
    codes = [
        stage.main(_argv(results, "baseline", config)),
        stage.main(_argv(results, "llm_guided", config)),
        stage.main(_argv(results, "budget_matched", config, "--schedule", str(guided_dir / "history.parquet"))),
    ]
    # Assert
    assert codes == [0, 0, 0]
    frames = {}
    for arm in ("baseline", "llm_guided", "budget_matched"):
        out = results / "qfl" / arm / "seed_0"
        for name in ("history.parquet", "weights.npy", "accounting.json", "checkpoints/round_2.npz"):
            assert (out / name).is_file(), f"{arm}: {name}"
        frames[arm] = pd.read_parquet(out / "history.parquet")
        accounting = json.loads((out / "accounting.json").read_text())
        assert accounting["arm"] == arm and accounting["rounds_run"] == 2 and accounting["seed"] == 0
        assert accounting["totals"]["nfev"] == frames[arm]["nfev"].sum() > 0
        assert np.load(out / "weights.npy").shape == (6,)  # RealAmplitudes(3, reps=1)
    baseline, guided, matched = frames["baseline"], frames["llm_guided"], frames["budget_matched"]
    assert list(guided.columns[: len(HISTORY_COLUMNS)]) == list(HISTORY_COLUMNS)
    assert len(guided) == 2 * (N_CLIENTS + 1)
    clients = guided[guided["client"] >= 0]
    assert clients["llm_loss"].tolist() == pytest.approx([0.25, 0.30, 0.35] * 2)
    assert guided.loc[guided["client"] == -1, "llm_loss"].tolist() == pytest.approx([0.30, 0.30])  # size-weighted
    assert baseline["llm_loss"].isna().all() and (baseline.loc[baseline["client"] >= 0, "maxiter"] == 2).all()
    assert (clients.loc[clients["round"] == 2, "maxiter"] > 2).all()  # guidance raised the budget
    matched_clients = matched[matched["client"] >= 0]
    assert matched_clients["maxiter"].tolist() == clients["maxiter"].tolist()
    assert matched_clients["selected"].tolist() == clients["selected"].tolist()
    assert matched_clients["nfev"].sum() == clients["nfev"].sum()
    # round 1 is identical without an LLM (same maxiter, all clients): the arms share the seed root
    untimed = {arm: frame.drop(columns=list(TIMING_COLUMNS)) for arm, frame in frames.items()}
    pd.testing.assert_frame_equal(
        untimed["baseline"].query("round == 1"), untimed["budget_matched"].query("round == 1")
    )
    round_one = [np.load(results / "qfl" / arm / "seed_0" / "checkpoints" / "round_1.npz")["weights"] for arm in frames]
    np.testing.assert_array_equal(round_one[0], round_one[2])
    trained = clients[clients["selected"]]
    assert (trained["loss"] > trained["train_loss"]).all()  # llm_guided's objective carries the KL term
    assert (baseline.loc[baseline["selected"], "loss"] == baseline.loc[baseline["selected"], "train_loss"]).all()


def test_same_seed_same_history_and_weights(results: Path) -> None:
    # Prepare
    config = _config()
    first, second = results / "run_a", results / "run_b"
    # Execute
    stage.main(_argv(results, "llm_guided", config, out=str(first)))
    stage.main(_argv(results, "llm_guided", config, out=str(second)))
    # Assert
    pd.testing.assert_frame_equal(_history(first / "history.parquet"), _history(second / "history.parquet"))
    np.testing.assert_array_equal(np.load(first / "weights.npy"), np.load(second / "weights.npy"))


def test_killed_run_resumes_to_the_uninterrupted_result(results: Path) -> None:
    # Prepare: an uninterrupted 8-round reference, then the same run killed after its first checkpoint
    config = _config()
    config["federation"]["rounds"] = 8
    config["qfl"]["optimizer"] = {"maxiter": 20, "max_maxiter": 40}
    reference, killed = results / "reference", results / "killed"
    assert stage.main(_argv(results, "llm_guided", config, out=str(reference))) == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen(
        [sys.executable, "-m", "llmqfl.stages.qfl", *_argv(results, "llm_guided", config, out=str(killed))],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (killed / "checkpoints" / "round_1.json").exists() and process.poll() is None:
        assert time.monotonic() < deadline, "the run never wrote its first checkpoint"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished_before_kill = (killed / "history.parquet").exists()
    # Execute
    code = stage.main(_argv(results, "llm_guided", config, "--resume", out=str(killed)))
    # Assert
    assert code == 0 and not finished_before_kill  # it really was interrupted
    pd.testing.assert_frame_equal(_history(killed / "history.parquet"), _history(reference / "history.parquet"))
    np.testing.assert_array_equal(np.load(killed / "weights.npy"), np.load(reference / "weights.npy"))


@pytest.mark.parametrize(
    ("arm", "change", "message"),
    [
        ("baseline", {"qfl": {"optimizer": {"maxiter": 0}}}, "qfl.optimizer.maxiter"),
        ("baseline", {"federation": {"selection": {"kind": "random", "fraction": 1.5}}}, "selection.fraction"),
        ("baseline", {"federation": {"selection": {"kind": "random", "fraction": 0}}}, "selection.fraction"),
        ("baseline", {"qfl": {"n_qubits": 30}}, "qfl.n_qubits"),
        ("llm_guided", {"remove": "distill/client_1/metrics.json"}, "client_1/metrics.json"),
        ("llm_guided", {"remove": "distill/client_2/teacher.parquet"}, "client_2/teacher.parquet"),
        # the teachers' probabilities are checked once, where teacher.parquet is read (not again on the way to
        # the distillation loss): a row that is no distribution stops the run there, naming the file
        ("llm_guided", {"teacher_row": [0.7, 0.7]}, "client_1/teacher.parquet: column probs: rows must be"),
        ("budget_matched", {}, "--schedule"),
        ("baseline", {"meta_kind": "text"}, "--embeddings"),
        ("baseline", {"remove": "partitions/client_0.parquet"}, "client_0.parquet"),
    ],
)
def test_bad_inputs_fail_with_one_line_before_any_output(
    results: Path, capsys: pytest.CaptureFixture[str], arm: str, change: dict[str, Any], message: str
) -> None:
    # Prepare
    config = _config()
    for section in ("qfl", "federation"):
        for key, value in change.get(section, {}).items():
            current = config[section].get(key)
            config[section][key] = {**current, **value} if isinstance(current, dict) else value
    if "remove" in change:
        (results / change["remove"]).unlink()
    if "teacher_row" in change:
        path = results / "distill" / "client_1" / "teacher.parquet"
        teacher = pd.read_parquet(path)
        teacher.at[0, "probs"] = np.array(change["teacher_row"])
        teacher.to_parquet(path, index=False)
    if "meta_kind" in change:
        meta = json.loads((results / "data" / "meta.json").read_text())
        (results / "data" / "meta.json").write_text(json.dumps({**meta, "kind": change["meta_kind"]}))
    out = results / "qfl" / arm / "seed_0"
    # Execute
    code = stage.main(_argv(results, arm, config))
    # Assert
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_backend_with_too_few_qubits_is_rejected_before_training(
    results: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a 2-qubit device double in place of llmqfl.quantum.backends.backend
    closed = []

    class TwoQubitDevice:
        kind, shots, num_qubits = "fake", 100, 2

        def close(self) -> None:
            closed.append(True)

    module = type(sys)("llmqfl.quantum.backends.backend")
    module.make_backend = lambda cfg, *, seed, n_qubits: TwoQubitDevice()
    monkeypatch.setitem(sys.modules, "llmqfl.quantum.backends.backend", module)
    config = {**_config(), "backend": {"kind": "fake", "shots": 100}}
    # Execute
    code = stage.main(_argv(results, "baseline", config))
    # Assert
    assert code == 2 and "3 qubits do not fit" in capsys.readouterr().err and closed == [True]
    assert not (results / "qfl").exists()


def test_mlflow_gets_per_round_metrics_and_artifacts(results: Path, mlflow_uri: str) -> None:
    # Prepare
    import mlflow

    config = _config()
    # Execute
    code = stage.main(_argv(results, "baseline", config))
    # Assert
    client = mlflow.MlflowClient(mlflow_uri)
    runs = client.search_runs(client.get_experiment_by_name("llmqfl-tiny").experiment_id)
    assert code == 0 and [r.info.run_name for r in runs] == ["qfl baseline seed 0"]
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "server_test_accuracy")]
    assert steps == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"history.parquet", "weights.npy", "accounting.json"} <= artifacts


def test_text_items_use_the_base_llm_embeddings(results: Path) -> None:
    # Prepare: the same items declared as text, with embeddings that carry the label
    meta = json.loads((results / "data" / "meta.json").read_text())
    (results / "data" / "meta.json").write_text(json.dumps({**meta, "kind": "text"}))
    rng = np.random.default_rng(4)
    rows = []
    for split in ("train", "test", "server_val"):
        frame = pd.read_parquet(results / "data" / f"{split}.parquet")
        for row, label in zip(frame["row"], frame["label"], strict=True):
            rows.append((split, int(row), list(rng.normal(size=5) + 2.0 * label)))
    embeddings = results / "features" / "embeddings.parquet"
    embeddings.parent.mkdir()
    pd.DataFrame(rows, columns=["split", "row", "embedding"]).to_parquet(embeddings, index=False)
    # Execute
    config = _config(optimizer={"maxiter": 40, "max_maxiter": 40})
    code = stage.main(_argv(results, "baseline", config, "--embeddings", str(embeddings)))
    # Assert: the label is visible in the features, so the global model beats chance on the server test set
    history = pd.read_parquet(results / "qfl" / "baseline" / "seed_0" / "history.parquet")
    assert code == 0
    assert history.loc[history["client"] == -1, "test_accuracy"].iloc[-1] > 0.5
