"""The `qfl` rule's DAG (snakemake dry run): one job per arm, running every seed, with the contract's inputs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SNAKEFILE = """
configfile: "{root}/config/config.yaml"
include: "{root}/workflow/rules/common.smk"
include: "{root}/workflow/rules/data.smk"
include: "{root}/workflow/rules/qfl.smk"
rule all:
    input: qfl_targets()
rule stand_in_distill:  # the real distill rules belong to another rule file
    input: f"{{RESULTS}}/partitions/client_{{{{k}}}}.parquet"
    output:
        f"{{RESULTS}}/distill/client_{{{{k}}}}/metrics.json",
        f"{{RESULTS}}/distill/client_{{{{k}}}}/teacher.parquet",
    shell: "touch {{output}}"
"""


def _dry_run(tmp_path: Path, extra_config: str) -> dict[str, dict[str, str]]:
    """Dry-run the DAG; return, per qfl job's out-dir, its input list and resources line."""
    (tmp_path / "src").symlink_to(ROOT / "src")  # common.smk hashes the package below the Snakefile's folder
    (tmp_path / "Snakefile").write_text(SNAKEFILE.format(root=ROOT))
    (tmp_path / "extra.yaml").write_text(extra_config)
    snakemake = Path(sys.executable).with_name("snakemake")
    completed = subprocess.run(
        [str(snakemake), "-n", "-p", "--cores", "1", "--configfile", str(ROOT / "config/config.yaml"), "extra.yaml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PATH": str(snakemake.parent) + ":/usr/bin:/bin", "LLMQFL_TRACKING": "off", "HOME": str(tmp_path),
             "QISKIT_IBM_TOKEN": "dry-run-token",
             "QISKIT_IBM_INSTANCE": "crn:v1:bluemix:public:quantum-computing:us-east:a/dry:run::"},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    jobs: dict[str, dict[str, str]] = {}
    for block in completed.stdout.split("\nrule ")[1:]:
        if not block.startswith("qfl:"):
            continue
        out_dir = re.search(r"--out-dir (\S+)", block).group(1).strip("'")
        jobs[out_dir] = {
            "input": re.search(r"\n\s+input: (.*)", block).group(1),
            "resources": re.search(r"\n\s+resources: (.*)", block).group(1),
            "shell": re.search(r"-m llmqfl\.stages\.qfl .*", block).group(0).replace("'", ""),
        }
    return jobs


@pytest.mark.slow
def test_one_job_per_arm_running_every_seed_with_the_contract_inputs(tmp_path: Path) -> None:
    # Prepare / Execute
    jobs = _dry_run(tmp_path, "seeds: [0, 1]\n")
    # Assert
    qfl = "results/default/qfl"
    arms = ("baseline", "llm_guided", "budget_matched", "equal_cost", "loss_stopping")
    assert sorted(jobs) == sorted(f"{qfl}/{arm}/seed_{{seed}}" for arm in arms)
    job = {arm: jobs[f"{qfl}/{arm}/seed_{{seed}}"] for arm in arms}
    assert all("--seed 0 --seed 1" in j["shell"] for j in job.values())
    baseline, guided, matched, even, stopping = (job[a] for a in arms)
    assert "distill" not in baseline["input"] and "--schedule" not in baseline["shell"]
    for seed in (0, 1):
        for k in range(4):  # the default config has 4 clients
            assert f"results/default/distill/client_{k}/metrics.json" in guided["input"]
            assert f"results/default/distill/client_{k}/teacher.parquet" in guided["input"]
        guided_history = f"{qfl}/llm_guided/seed_{seed}/history.parquet"
        baseline_history = f"{qfl}/baseline/seed_{seed}/history.parquet"
        assert guided_history in matched["input"] and guided_history in even["input"]
        assert baseline_history in stopping["input"] and baseline_history in guided["input"]
    assert f"--schedule {qfl}/llm_guided/seed_{{seed}}/history.parquet" in matched["shell"]
    assert f"--cost-reference {qfl}/llm_guided/seed_{{seed}}/history.parquet" in even["shell"]
    assert f"--tau-reference {qfl}/baseline/seed_{{seed}}/history.parquet" in stopping["shell"]
    assert all("distill/" not in j["input"] for j in (matched, even, stopping))
    assert all("--resume" in j["shell"] and "qpu=0" in j["resources"] for j in job.values())


@pytest.mark.slow
def test_ibm_backend_jobs_take_a_qpu_resource(tmp_path: Path) -> None:
    jobs = _dry_run(tmp_path, "seeds: [0]\nbackend: {kind: ibm}\n")
    assert len(jobs) == 5 and all("qpu=1" in job["resources"] for job in jobs.values())
