"""The Slurm profiles and docs/cluster.md agree: the GPU profile is the CPU one plus a GPU per LLM job."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "workflow" / "profiles"
FINE_TUNING = {"distill", "distill_federated", "rep_distill", "rep_distill_federated", "distill_full"}


def _profile(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text())


def test_the_gpu_profile_asks_the_executor_for_one_gpu_per_fine_tuning_job_and_is_otherwise_the_slurm_one() -> None:
    # Prepare
    cpu, gpu = _profile("slurm"), _profile("slurm-gpu")
    # Assert: the plugin's own `gpu` resource on every fine-tuning rule, on the GPU partition
    for rule in FINE_TUNING:
        assert gpu["set-resources"][rule]["gpu"] == 1
        assert gpu["set-resources"][rule]["slurm_partition"] == "'$LLMQFL_GPU_PARTITION'"
    assert not {rule for rule, spec in gpu["set-resources"].items() if "gpu" in spec} - FINE_TUNING
    # Assert: without those two lines the profiles are the same (time limits, memory, executor, retries)
    stripped = {rule: {k: v for k, v in spec.items() if k not in ("gpu", "slurm_partition")}
                for rule, spec in gpu["set-resources"].items()}
    assert {**gpu, "set-resources": stripped} == cpu


def test_cluster_md_states_the_profiles_time_limits() -> None:
    # Prepare: the doc's "time" row of the table of what a job asks Slurm for
    doc = (ROOT / "docs" / "cluster.md").read_text()
    row = next(line for line in doc.splitlines() if line.startswith("| time |"))
    profile = _profile("slurm")
    # Assert: the default and every rule's own limit appear in the row, next to the rule's name
    assert f"{profile['default-resources']['runtime']} min" in row
    for rule, spec in profile["set-resources"].items():
        if "runtime" in spec:
            match = re.search(rf"(\d+) min[^|;]*`{rule}`", row)
            assert match is not None and int(match.group(1)) == spec["runtime"], (rule, row)
