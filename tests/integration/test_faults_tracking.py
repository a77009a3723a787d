"""kill -9 leaves no MLflow run RUNNING for good: the next invocation marks the dead process's runs KILLED."""

from __future__ import annotations

import multiprocessing
import os
import signal

import pytest

from llmqfl import tracking
from llmqfl.config import load_settings

CONFIG = {"experiment": "stale", "seed": 0}  # the Snakefile's dict (mark_stale_runs, start_parent_run)


def _killed_stage() -> None:
    """A stage process that opens its run and is then killed with SIGKILL mid-work."""
    with tracking.stage_run(load_settings(CONFIG), "qfl", name="qfl killed"):
        os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.usefixtures("mlflow_uri")
def test_runs_of_a_killed_process_are_marked_killed_and_live_ones_are_left_alone() -> None:
    import mlflow

    # Prepare: a run whose process was SIGKILLed, and a live parent run of this process
    child = multiprocessing.get_context("fork").Process(target=_killed_stage)
    child.start()
    child.join(timeout=120)
    assert child.exitcode == -signal.SIGKILL
    live = tracking.start_parent_run(CONFIG, run_name="live invocation")
    client = mlflow.MlflowClient(tracking.tracking_uri())
    experiment = client.get_experiment_by_name(tracking.experiment_name(CONFIG))
    killed = client.search_runs([experiment.experiment_id], "attributes.run_name = 'qfl killed'")[0]
    assert killed.info.status == "RUNNING"
    # Execute: what the next invocation's onstart does
    marked = tracking.mark_stale_runs(CONFIG)
    # Assert
    assert marked == [killed.info.run_id]
    after = client.get_run(killed.info.run_id)
    assert after.info.status == "KILLED"
    assert str(child.pid) in after.data.tags[tracking.STALE_TAG]
    assert client.get_run(live).info.status == "RUNNING"
    tracking.end_parent_run("FINISHED")
    assert tracking.mark_stale_runs(CONFIG) == []


def test_a_recycled_pid_does_not_keep_a_dead_run_alive() -> None:
    # Prepare: this process's pid, but another start time than the one recorded
    tags = tracking.process_tags()
    pid, start = int(tags[tracking.PID_TAG]), int(tags[tracking.PID_START_TAG])
    # Assert
    assert tracking._alive(pid, start)
    if start >= 0:  # Linux: /proc gives the start time
        assert not tracking._alive(pid, start + 1)
