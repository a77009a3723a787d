"""The distill DAG (snakemake dry runs): one job per client, or per client and round plus one aggregation per round."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def _dry_run(tmp: Path, llm: dict) -> dict[str, int]:
    """Job counts per rule of a dry run of the real Snakefile for every client's distill outputs and the embeddings."""
    (tmp / "config").mkdir()
    (tmp / "config" / "config.yaml").write_text((ROOT / "config" / "config.yaml").read_text())
    if llm.get("model") == LOCAL_FOLDER:  # a local HF folder: no asset rule, checked to exist at parse time
        (tmp / "local-model").mkdir()
        (tmp / "local-model" / "config.json").write_text("{}")
        llm = {**llm, "model": str(tmp / "local-model")}
    config = {"experiment": "t", "data": {"source": "rotten_tomatoes"}, "federation": {"n_clients": 3}, "llm": llm,
              "qfl": {"features": {"source": "auto"}}}  # the default's k-mer features are for DNA
    (tmp / "override.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "LLMQFL_TRACKING": "off"}
    command = [str(SNAKEMAKE), "distill_all", "results/t/features/embeddings.parquet", "-n", "--cores", "8",
               "-s", str(ROOT / "Snakefile"), "-d", str(tmp), "--configfile", str(tmp / "override.yaml")]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False, cwd=tmp)
    assert result.returncode == 0, (result.stdout + result.stderr)[-2000:]
    table = result.stdout[result.stdout.index("Job stats:"):]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


LOCAL_FOLDER = "<a local folder>"


@pytest.mark.parametrize(
    ("llm", "expected"),
    [
        ({"model": "tiny-gpt2", "federated_rounds": 0}, {"asset": 1, "distill": 3, "embed": 1}),
        ({"model": "tiny-gpt2", "federated_rounds": 2},
         {"asset": 1, "distill_federated": 1, "embed": 1}),
        pytest.param({"model": LOCAL_FOLDER, "federated_rounds": 0}, {"distill": 3, "embed": 1},
                     marks=pytest.mark.slow),
    ],
    ids=["one job per client", "two federated rounds", "no asset for a local folder"],
)
def test_distill_dag(tmp_path: Path, llm: dict, expected: dict[str, int]) -> None:
    # Execute
    counts = _dry_run(tmp_path, llm)

    # Assert
    for rule, count in expected.items():
        assert counts.get(rule) == count, counts
    assert "asset" in counts or "asset" not in expected
    if "distill_federated" in expected:  # one job runs every client's rounds: no per-client distill jobs
        assert "distill" not in counts
    else:
        assert "distill_federated" not in counts
