"""The `llmqfl` console script: predict with a trained model, compare experiments, run stages and snakemake."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmqfl import cli

ROOT = Path(__file__).resolve().parents[2]
LLMQFL = Path(sys.executable).with_name("llmqfl")


def _llmqfl(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(LLMQFL), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=900)


def _final_server_accuracy(history_path: Path) -> float:
    history = pd.read_parquet(history_path)
    return float(history[history["client"] == -1].sort_values("round")["test_accuracy"].iloc[-1])


def test_the_console_script_is_installed_and_stage_usage_lines_name_it() -> None:
    # Execute
    done = _llmqfl("stage", "evaluate", "--help")
    # Assert: usage names a command that exists (not a missing llmqfl-evaluate script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: llmqfl stage evaluate")


def test_compare_of_an_experiment_never_run_says_so_in_one_line(tmp_path: Path, capsys) -> None:
    # Execute
    code = cli.main(["compare", "only-one", "--results", str(tmp_path)])
    # Assert
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"llmqfl: experiment 'only-one': no eval records under {tmp_path}/only-one/eval "
                   "(run it first: llmqfl run)"]


def test_predict_refuses_a_csv_without_the_item_column_and_writes_nothing(tmp_path: Path, capsys) -> None:
    # Prepare: the CSV is checked before the model is loaded
    items = tmp_path / "items.csv"
    items.write_text("text\nACGT\n")
    out = tmp_path / "out.csv"
    # Execute
    code = cli.main(["predict", str(tmp_path / "no-model"), str(items), "-o", str(out), "--column", "seq"])
    # Assert
    assert code == 2
    assert capsys.readouterr().err.strip() == f"llmqfl: {items}: no column 'seq' (columns: text)"
    assert not out.exists()


@pytest.mark.slow
def test_predict_with_the_runs_model_folder_and_its_mlflow_uri_reproduces_the_test_accuracy(tiny_run) -> None:
    # Prepare: the test split's raw items as a user's CSV (a custom column name)
    test = pd.read_parquet(tiny_run.results / "data" / "test.parquet").sort_values("row")
    items = tiny_run.workdir / "new-items.csv"
    test[["item"]].rename(columns={"item": "sequence"}).to_csv(items, index=False)
    qfl = next(r for r in tiny_run.runs() if r.data.tags.get("llmqfl.arm") == "llm_guided"
               and r.data.tags.get("llmqfl.stage") == "qfl")
    expected = _final_server_accuracy(tiny_run.qfl_dir("llm_guided") / "history.parquet")
    outputs = []
    for source in (tiny_run.qfl_dir("llm_guided") / "model", qfl.data.tags["llmqfl.model_uri"]):
        out = tiny_run.workdir / f"predictions-{len(outputs)}.csv"
        # Execute
        done = _llmqfl("predict", str(source), str(items), "-o", str(out), "--column", "sequence", env=tiny_run.env)
        # Assert: the input columns plus label, class index and one probability per class
        assert done.returncode == 0, done.stderr[-3000:]
        predictions = pd.read_csv(out)
        assert list(predictions.columns) == ["sequence", "label", "class_index", "prob_coding", "prob_intergenic"]
        assert float(np.mean(predictions["class_index"].to_numpy() == test["label"].to_numpy())) == expected
        outputs.append(predictions)
    pd.testing.assert_frame_equal(outputs[0], outputs[1])


@pytest.mark.slow
def test_predict_with_a_missing_model_fails_in_one_line_and_leaves_no_file(tiny_run) -> None:
    # Prepare
    items = tiny_run.workdir / "one-item.csv"
    items.write_text("item\nACGTACGT\n")
    out = tiny_run.workdir / "never.csv"
    # Execute
    done = _llmqfl("predict", "runs:/0123456789abcdef/quantum-classifier", str(items), "-o", str(out),
                   env=tiny_run.env)
    # Assert
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmqfl: cannot load model runs:/0123456789abcdef")
    assert not out.exists()


@pytest.mark.slow
def test_compare_prints_two_experiments_side_by_side_and_writes_a_figure(tiny_run, tmp_path: Path) -> None:
    # Prepare: a second experiment: the run's results with one arm's final accuracy changed
    results = tmp_path / "results"
    shutil.copytree(tiny_run.results, results / "base", ignore=shutil.ignore_patterns("qfl", "distill", "data"))
    shutil.copytree(results / "base", results / "variant")
    record_path = results / "variant" / "eval" / "baseline" / "seed_0.json"
    record = json.loads(record_path.read_text())
    record["final"]["test_accuracy"] = 0.875
    record_path.write_text(json.dumps(record))
    base = json.loads((results / "base" / "eval" / "baseline" / "seed_0.json").read_text())
    figure = tmp_path / "cmp.png"
    # Execute
    done = _llmqfl("compare", "base", "variant", "--results", str(results), "--figure", str(figure))
    # Assert: a header with both experiments; the accuracy row shows each one's number; the other rows agree
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["metric", "arm", "base", "variant"]
    accuracy = next(line for line in lines if line.startswith("test accuracy") and " baseline " in line)
    assert accuracy.split()[-2:] == [f"{base['final']['test_accuracy']:.3f}", "0.875"]
    for label in ("rounds", "circuit evaluations", "uplink bytes"):
        row = next(line for line in lines if line.startswith(label) and " llm_guided " in line)
        assert row.split()[-1] == row.split()[-2]
    assert figure.stat().st_size > 10_000


@pytest.mark.slow
def test_llmqfl_run_passes_its_arguments_to_snakemake(tiny_run) -> None:
    # Execute: a dry run of the finished pipeline, through the console script
    done = _llmqfl("run", "-s", str(ROOT / "Snakefile"), "-n", "--configfile", str(ROOT / "tests/configs/tiny.yaml"),
                   "--config", f"experiment={tiny_run.experiment}", "--cores", "1", cwd=tiny_run.workdir,
                   env=tiny_run.env)
    # Assert: snakemake ran with those arguments (a dry run of this experiment's DAG)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert "Nothing to be done" in output or "This was a dry-run" in output
    assert "results/tiny/" not in output  # --config reached snakemake: the run's experiment, not tiny.yaml's
