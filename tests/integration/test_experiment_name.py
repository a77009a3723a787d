"""An experiment name can never point outside results/, and no stage deletes a folder it did not write.

`experiment: ".."` used to match the schema; the data stage then replaced the project's `data/`
(results/../data) as a whole. The real `snakemake` must refuse such names at parse time, and
`llmqfl.io.atomic_path` must refuse to replace a non-empty folder that lacks its output marker.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmqfl.errors import DataError
from llmqfl.io import OUTPUT_MARKER, atomic_path

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def _tree_digest(folder: Path) -> str:
    """SHA-256 over every file's relative path and bytes: equal digests mean a byte-identical tree."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@pytest.mark.parametrize("name", ["..", "../x", "/tmp/x", "", "a/b", "."])
def test_experiment_outside_results_is_refused_at_parse_time_and_data_is_untouched(name: str, tmp_path: Path) -> None:
    # Prepare: a working directory that looks like the project (config/ and the committed data/)
    workdir = tmp_path / "work"
    workdir.mkdir()
    shutil.copytree(ROOT / "config", workdir / "config")
    shutil.copytree(ROOT / "data", workdir / "data")
    before, project_before = _tree_digest(workdir / "data"), _tree_digest(ROOT / "data")
    configfile = tmp_path / "bad.yaml"
    configfile.write_text(yaml.safe_dump({"experiment": name}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("QISKIT_IBM_")}
    # Execute: the real command a user runs (no dry run, so a regression would reach the data stage)
    proc = subprocess.run(
        [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "--cores", "1",
         "--configfile", str(configfile)],
        capture_output=True, text=True, timeout=300,
        env={**env, "LLMQFL_TRACKING": "off", "HOME": str(tmp_path)},
    )
    # Assert
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("llmqfl:")]
    assert len(lines) == 1, proc.stderr
    assert "experiment" in lines[0]
    assert "Traceback" not in proc.stderr
    assert _tree_digest(workdir / "data") == before
    assert _tree_digest(ROOT / "data") == project_before
    assert not (workdir / "results").exists()
    assert not (workdir / "logs").exists()


def test_atomic_path_refuses_to_replace_a_folder_no_stage_wrote(tmp_path: Path) -> None:
    # Prepare: a folder with user files in it (no output marker)
    foreign = tmp_path / "data"
    foreign.mkdir()
    (foreign / "mine.csv").write_text("a,b\n1,2\n")
    # Execute / Assert
    with pytest.raises(DataError, match="refusing to replace"), atomic_path(foreign) as tmp:
        tmp.mkdir()
        (tmp / "train.parquet").write_text("x")
    assert sorted(p.name for p in foreign.iterdir()) == ["mine.csv"]
    assert (foreign / "mine.csv").read_text() == "a,b\n1,2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no temporary folder left behind


def test_atomic_path_replaces_a_folder_it_wrote_and_marks_it(tmp_path: Path) -> None:
    # Prepare: a first write creates the folder (with the marker)
    target = tmp_path / "out"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "a.txt").write_text("first")
    assert (target / OUTPUT_MARKER).is_file()
    # Execute: a second write replaces it whole
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "b.txt").write_text("second")
    # Assert
    assert sorted(p.name for p in target.iterdir()) == sorted([OUTPUT_MARKER, "b.txt"])
