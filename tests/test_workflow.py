"""The real `snakemake` runs the tiny config end to end; a second call has nothing to do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def _snakemake(workdir: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(SNAKEMAKE),
            "-s",
            str(ROOT / "Snakefile"),
            "-d",
            str(workdir),
            "--configfile",
            str(ROOT / "tests" / "configs" / "tiny.yaml"),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1500,
    )


@pytest.mark.slow
def test_tiny_pipeline_end_to_end(tmp_path: Path) -> None:
    # Prepare: a scratch working directory that shares the embedded data and the asset cache
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "config").mkdir()
    (workdir / "config" / "config.yaml").write_text((ROOT / "config" / "config.yaml").read_text())
    (workdir / "data").symlink_to(ROOT / "data")
    (ROOT / "resources").mkdir(exist_ok=True)
    (workdir / "resources").symlink_to(ROOT / "resources")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "LLMQFL_TRACKING": "on"}
    env.pop("LLMQFL_MLFLOW_PARENT_RUN_ID", None)
    # Execute
    run = _snakemake(workdir, "--cores", "2", env=env)
    # Assert: every stage's outputs exist
    assert run.returncode == 0, run.stderr[-4000:]
    results = workdir / "results" / "tiny"
    partitions = json.loads((results / "partitions" / "partitions.json").read_text())
    assert [c["client"] for c in partitions["clients"]] == [0, 1, 2]
    for k in range(3):
        assert (results / "distill" / f"client_{k}" / "teacher.parquet").is_file()
    for arm in ("baseline", "llm_guided", "budget_matched"):
        history = pd.read_parquet(results / "qfl" / arm / "seed_0" / "history.parquet")
        assert set(history["round"]) == {1, 2}
        assert (results / "eval" / arm / "seed_0.json").is_file()
    assert "| claim" in (results / "report" / "claims.md").read_text().lower()
    assert json.loads((results.parent.parent / "results" / "tiny" / "metrics.json").read_text())
    # Assert: one parent MLflow run with the stage runs nested under it
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("llmqfl-tiny")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("llmqfl.role") == "invocation"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    stages = {r.data.tags.get("llmqfl.stage") for r in children}
    assert {"data", "partition", "distill", "qfl", "evaluate", "report"} <= stages
    # Execute + Assert: nothing left to do
    again = _snakemake(workdir, "-n", "--cores", "2", env=env)
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr
