"""docs/extending.md's walk-through, as written: its rule, ansatz, backend kind and data source files,
placed in a folder on PYTHONPATH and named in the config, run through the whole tiny pipeline (real
snakemake) with no other file changed."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "extending.md"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def doc_files() -> dict[str, str]:
    """The fenced blocks of docs/extending.md that start with ``# file: NAME``."""
    blocks = re.findall(r"```[a-z]*\n# file: (\S+)\n(.*?)```", DOC.read_text(), flags=re.S)
    return {name: body for name, body in blocks}


def test_the_walk_through_has_one_file_per_extension_and_a_config() -> None:
    files = doc_files()
    assert set(files) == {"my_rules.py", "my_ansatz.py", "my_backend.py", "my_source.py", "extension.yaml"}
    config = yaml.safe_load(files["extension.yaml"])
    assert config["extensions"] == ["my_rules", "my_ansatz", "my_backend", "my_source"]


def write_fasta_folder(folder: Path) -> dict[str, int]:
    """The committed coding_vs_intergenic items as the doc's source reads them: CLASS.fasta per class."""
    frame = pd.read_csv(ROOT / "data" / "coding_vs_intergenic.csv", dtype=str)
    folder.mkdir()
    counts = {}
    for label, part in frame.groupby("label"):
        items = part["item"].tolist()
        records = [f">{label}_{i} a description\n{item[:100]}\n{item[100:]}\n" for i, item in enumerate(items)]
        (folder / f"{label}.fasta").write_text("".join(records))
        counts[str(label)] = len(records)
    return counts


@pytest.mark.slow
def test_extending_walk_through_runs_the_whole_tiny_pipeline(tmp_path: Path) -> None:
    # Prepare: the doc's files in a folder outside the repository, a scratch working directory
    files = doc_files()
    extensions = tmp_path / "my_extensions"
    extensions.mkdir()
    for name in ("my_rules.py", "my_ansatz.py", "my_backend.py", "my_source.py"):
        (extensions / name).write_text(files[name])
    workdir = tmp_path / "work"
    (workdir / "config").mkdir(parents=True)
    write_fasta_folder(workdir / yaml.safe_load(files["extension.yaml"])["data"]["path"])
    (workdir / "config" / "config.yaml").write_text((ROOT / "config" / "config.yaml").read_text())
    (workdir / "extension.yaml").write_text(files["extension.yaml"])
    (workdir / "data").symlink_to(ROOT / "data")
    (ROOT / "resources").mkdir(exist_ok=True)
    (workdir / "resources").symlink_to(ROOT / "resources")
    env = {**os.environ, "PYTHONPATH": str(extensions), "LLMQFL_TRACKING": "off"}
    # Execute
    run = subprocess.run(
        [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "--cores", "2",
         "--configfile", str(ROOT / "tests" / "configs" / "tiny.yaml"), str(workdir / "extension.yaml")],
        capture_output=True, text=True, env=env, timeout=1500,
    )  # fmt: skip
    # Assert: every arm ran and the report was written
    assert run.returncode == 0, run.stderr[-4000:]
    results = workdir / "results" / "tiny"
    for arm in ("baseline", "llm_guided", "budget_matched"):
        assert (results / "eval" / arm / "seed_0.json").is_file()
    assert (results / "report" / "claims.md").is_file()
    # Assert: the items came from the doc's FASTA source (its two files' classes, DNA)
    meta = json.loads((results / "data" / "meta.json").read_text())
    assert meta["classes"] == ["coding", "intergenic"] and meta["kind"] == "dna"
    # Assert: the circuits ran on the doc's depolarizing kind: sampled (shots and jobs counted), not exact
    history = pd.read_parquet(results / "qfl" / "llm_guided" / "seed_0" / "history.parquet")
    assert (history["shots"] > 0).any() and (history["jobs"] > 0).any()
    # Assert: the model is the doc's RY ladder (tiny.yaml: 2 qubits; reps 2 -> 3 layers of 2 weights)
    weights = np.load(results / "qfl" / "llm_guided" / "seed_0" / "weights.npy")
    assert weights.shape == (6,)
    # Assert: round 2's maxiter is the doc's sqrt rule applied to round 1's losses
    config = yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text())
    m0, cap = config["qfl"]["optimizer"]["maxiter"], config["qfl"]["optimizer"]["max_maxiter"]
    clients = history[history["client"] >= 0].set_index(["round", "client"])
    checked = 0
    for k in sorted(history.loc[history["client"] >= 0, "client"].unique()):
        first = clients.loc[(1, k)]
        if (2, k) not in clients.index or not first["selected"]:
            continue
        j, llm = float(first["train_loss"]), float(first["llm_loss"])
        expected = m0
        if j > llm > 0:
            expected = max(m0, min(m0 + min(math.ceil(m0 * (math.sqrt(j / llm) - 1.0)), 100), cap))
        assert int(clients.loc[(2, k), "maxiter"]) == expected
        checked += 1
    assert checked > 0
    assert json.loads((results / "eval" / "llm_guided" / "seed_0.json").read_text())
