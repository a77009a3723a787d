"""Concurrent first use of one fresh sqlite MLflow store: every process and every snakemake call succeeds."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from llmqfl import tracking
from llmqfl.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
N_PROCESSES = 8


def _first_touch(uri: str, index: int, barrier, results) -> None:
    """One stage process: open the fresh store, create the experiment and a run, log to it."""
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["LLMQFL_TRACKING"] = "on"
    os.environ.pop(tracking.PARENT_ENV, None)
    try:
        barrier.wait(timeout=120)
        settings = load_settings({"experiment": "race", "seed": 0})
        with tracking.stage_run(settings, "data", name=f"process {index}") as run:
            run.log_metrics({"index": index})
        results.put((index, "ok"))
    except BaseException:  # the test reports what went wrong in the child
        results.put((index, traceback.format_exc(limit=3)))


def test_eight_processes_initialising_one_fresh_sqlite_store_at_once_all_succeed(tmp_path: Path) -> None:
    # Prepare: mlflow imported once, then forked, so the eight first touches start together
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(N_PROCESSES), context.Queue()
    processes = [context.Process(target=_first_touch, args=(uri, i, barrier, results)) for i in range(N_PROCESSES)]
    # Execute
    for process in processes:
        process.start()
    outcomes = dict(results.get(timeout=300) for _ in processes)
    for process in processes:
        process.join(timeout=60)
    # Assert: every process succeeded and every run is recorded, FINISHED
    failures = {i: text for i, text in outcomes.items() if text != "ok"}
    assert not failures, "\n".join(f"process {i}: {text}" for i, text in failures.items())
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("llmqfl-race")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.metrics["index"] for r in runs) == list(range(N_PROCESSES))
    assert {r.info.status for r in runs} == {"FINISHED"}


def _project_copy(root: Path) -> Path:
    """A fresh copy of the project as a clone sees it: sources and config, no results, no mlflow.db."""
    work = root / "project"
    work.mkdir()
    for name in ("Snakefile", "workflow", "config", "src"):
        source = ROOT / name
        target = work / name
        if source.is_dir():
            subprocess.run(["cp", "-r", str(source), str(target)], check=True)
        else:
            target.write_text(source.read_text())
    (work / "data").symlink_to(ROOT / "data")
    return work


@pytest.mark.slow
def test_two_experiments_started_together_on_a_fresh_project_both_succeed(tmp_path: Path) -> None:
    # Prepare: two experiments' data + partition stages (the cheap part that still opens every run)
    work = _project_copy(tmp_path)
    env = {**os.environ, "LLMQFL_TRACKING": "on"}
    for key in ("MLFLOW_TRACKING_URI", tracking.PARENT_ENV):
        env.pop(key, None)
    commands = []
    for experiment in ("first", "second"):
        target = f"results/{experiment}/partitions/partitions.json"
        commands.append(
            [str(SNAKEMAKE), target, "--cores", "1", "--configfile", str(ROOT / "tests" / "configs" / "tiny.yaml"),
             "--config", f"experiment={experiment}"]
        )
    # Execute: both at the same moment on the same fresh mlflow.db
    running = [subprocess.Popen(c, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for c in commands]
    outputs = [p.communicate(timeout=900)[0] for p in running]
    # Assert: both succeeded, and each experiment holds its parent run and its two stage runs, all FINISHED
    for process, output in zip(running, outputs, strict=True):
        assert process.returncode == 0, output[-3000:]
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    for experiment in ("first", "second"):
        found = client.get_experiment_by_name(f"llmqfl-{experiment}")
        runs = client.search_runs([found.experiment_id])
        stages = sorted(r.data.tags.get("llmqfl.stage", "invocation") for r in runs)
        assert stages == ["data", "invocation", "partition"], stages
        assert {r.info.status for r in runs} == {"FINISHED"}
