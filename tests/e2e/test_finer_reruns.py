"""A job re-runs only when a key it reads changes: dry runs on a copy of the shared tiny run."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tiny_pipeline import snakemake_command


def _dry_run(tiny_run, work: Path, *targets: str, config: tuple[str, ...] = ()) -> str:
    command = snakemake_command(work, tiny_run.experiment, "-n", *targets, config=config)
    done = subprocess.run(command, env={**tiny_run.env, "LLMQFL_TRACKING": "off"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done.stdout + done.stderr


def _job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:", 1)[1] if "Job stats:" in output else ""
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_a_guidance_rule_change_reruns_the_llm_arm_and_what_reads_it_never_the_baseline(tiny_run, tmp_path) -> None:
    # Prepare: a copy of the shared run (mtimes kept), which has nothing to do
    work = tmp_path / "work"
    subprocess.run(["cp", "-a", str(tiny_run.workdir), str(work)], check=True)
    assert "Nothing to be done" in _dry_run(tiny_run, work)
    other_rule = ("qfl={guidance: {rule: incremental}}",)  # the default is adaptive
    baseline_eval = f"results/{tiny_run.experiment}/eval/baseline/seed_0.json"
    # Execute
    counts = _job_counts(_dry_run(tiny_run, work, config=other_rule))
    baseline = _dry_run(tiny_run, work, baseline_eval, config=other_rule)
    # Assert: llm_guided and budget_matched (which replays L's history) re-run, the baseline does not
    assert counts.get("qfl") == 2 and counts.get("evaluate") == 2, counts
    assert not {"data", "partition", "distill", "distill_federated", "embed"} & set(counts), counts
    assert "Nothing to be done" in baseline, baseline[-2000:]
