"""The real `snakemake` runs the tiny config end to end; a second call has nothing to do.

The run is the session's shared tiny run (tests/tiny_pipeline.py, conftest's ``tiny_run``): the same
snakemake call this test used to make on its own, paid once for every test that reads a run.
"""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest
from tiny_pipeline import snakemake_command


@pytest.mark.slow
def test_tiny_pipeline_end_to_end(tiny_run) -> None:
    # Assert: every stage's outputs exist
    results = tiny_run.results
    partitions = json.loads((results / "partitions" / "partitions.json").read_text())
    assert [c["client"] for c in partitions["clients"]] == [0, 1, 2]
    for k in range(3):
        assert (results / "distill" / f"client_{k}" / "teacher.parquet").is_file()
    for arm in ("baseline", "llm_guided", "budget_matched"):
        history = pd.read_parquet(tiny_run.qfl_dir(arm) / "history.parquet")
        assert set(history["round"]) == {1, 2}
        assert (results / "eval" / arm / "seed_0.json").is_file()
    assert "| claim" in (results / "report" / "claims.md").read_text().lower()
    assert json.loads((results / "metrics.json").read_text())
    # Assert: one parent MLflow run with the stage runs nested under it
    runs = tiny_run.runs()
    parents = [r for r in runs if r.data.tags.get("llmqfl.role") == "invocation"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    stages = {r.data.tags.get("llmqfl.stage") for r in children}
    assert {"data", "partition", "distill", "qfl", "evaluate", "report"} <= stages
    # Execute + Assert: nothing left to do
    again = subprocess.run(snakemake_command(tiny_run.workdir, tiny_run.experiment, "-n"), capture_output=True,
                           text=True, env=tiny_run.env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Nothing to be done" in again.stdout + again.stderr
