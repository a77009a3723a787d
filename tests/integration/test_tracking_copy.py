"""MLflow as users expect it: runs named for what started them, a Source, and a project that can be copied."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llmqfl import tracking
from llmqfl.config import load_settings, validate_config

ROOT = Path(__file__).resolve().parents[2]
# One invocation as the Snakefile makes it, in the working folder's default store (sqlite:///mlflow.db):
# a parent run and a stage run that logs one artifact; prints the stage run's id.
INVOCATION = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from llmqfl import tracking
    from llmqfl.config import load_settings, validate_config
    config = validate_config({"experiment": "copy"})
    tracking.start_parent_run(config)
    Path("note.txt").write_text(sys.argv[1])
    with tracking.stage_run(load_settings(config), "qfl") as run:
        run.log_artifact("note.txt")
    tracking.end_parent_run()
    print(run.run_id)
    """
)


def _invocation(folder: Path, text: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", tracking.PARENT_ENV)}
    env.update({"PYTHONPATH": str(ROOT / "src"), "LLMQFL_TRACKING": "on"})
    done = subprocess.run([sys.executable, "-c", INVOCATION, text], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()[-1]


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_a_copied_project_writes_into_its_own_store_and_reads_its_old_artifacts(tmp_path: Path) -> None:
    # Prepare: a project with one tracked invocation, then a copy of the whole folder
    original, copy = tmp_path / "original", tmp_path / "copy"
    original.mkdir()
    first = _invocation(original, "first")
    shutil.copytree(original, copy)
    before = _files(original / "mlruns")
    # Execute: the next invocation runs in the copy
    second = _invocation(copy, "second")
    # Assert: nothing new in the original's folder; the copy's runs (old and new) live under the copy
    assert _files(original / "mlruns") == before
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{copy / 'mlflow.db'}")
    for run_id in (first, second):
        assert client.get_run(run_id).info.artifact_uri.startswith(str(copy) + "/")
    shutil.rmtree(original)  # the copy does not need the original to read its first run's artifact
    local = mlflow.artifacts.download_artifacts(run_id=first, artifact_path="note.txt", dst_path=str(tmp_path / "dl"),
                                                tracking_uri=f"sqlite:///{copy / 'mlflow.db'}")
    assert Path(local).read_text() == "first"
    experiment = client.get_experiment_by_name("llmqfl-copy")
    assert experiment.artifact_location.startswith(str(copy) + "/")


def test_a_dvc_exp_run_names_its_parent_run_after_the_experiment_and_runs_show_a_source(
    mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the environment DVC gives a stage command under `dvc exp run -n hybrid`
    monkeypatch.setenv("DVC_STAGE", "report@default")
    monkeypatch.setenv("DVC_EXP_NAME", "hybrid")
    config = validate_config({"experiment": "unit"})
    # Execute
    parent = tracking.start_parent_run(config)
    with tracking.stage_run(load_settings(config), "qfl") as run:
        pass
    tracking.end_parent_run()
    # Assert: the parent run carries the DVC experiment's name; both runs fill the UI's Source column
    import mlflow

    client = mlflow.MlflowClient(mlflow_uri)
    parent_run, stage_run = client.get_run(parent), client.get_run(run.run_id)
    assert parent_run.info.run_name == "dvc exp hybrid"
    assert parent_run.data.tags["mlflow.source.name"] == "dvc exp run"
    assert stage_run.data.tags["mlflow.source.name"] == "llmqfl.stages.qfl"


def test_a_plain_snakemake_parent_run_is_named_after_the_command_and_experiment(
    mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DVC_STAGE", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        monkeypatch.delenv(name, raising=False)
    parent = tracking.start_parent_run(validate_config({"experiment": "unit"}))
    tracking.end_parent_run()
    import mlflow

    run = mlflow.MlflowClient(mlflow_uri).get_run(parent)
    assert run.info.run_name == "snakemake unit" and run.data.tags["mlflow.source.name"] == "snakemake"
