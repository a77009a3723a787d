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


def test_claims_have_centralised_and_local_only_reference_rows(tiny_run) -> None:
    # Assert: the pipeline's report places the federated student between its two references (qfl.references)
    claims = (tiny_run.results / "report" / "claims.md").read_text()
    table = claims.split("## Reference rows", 1)[1]
    rows = {line.split("|")[1].strip().split(":")[0].split(" (")[0]: line for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| training")}
    assert set(rows) == {"federated", "centralised", "local only"}
    assert all("%" in rows[name].split("|")[2] for name in rows)  # a student accuracy in every row
    answer = json.loads((tiny_run.results / "report" / "answer.json").read_text())
    accounting = json.loads((tiny_run.qfl_dir("baseline") / "accounting.json").read_text())
    student = accounting["references"]["student"]
    assert answer["references"]["student"]["centralised"]["mean"] == pytest.approx(
        student["centralised"]["test_accuracy"])
    assert answer["references"]["student"]["local_only"]["mean"] == pytest.approx(
        student["local_only"]["test_accuracy"])
