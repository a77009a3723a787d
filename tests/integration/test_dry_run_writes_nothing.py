"""A dry run (``snakemake -n``) writes nothing: no stage config file, no results or logs folder."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tiny_pipeline import make_project, snakemake_command


def _tree(work: Path) -> dict[str, int]:
    """Every path under the project but Snakemake's own records, with its mtime."""
    return {p.relative_to(work).as_posix(): p.lstat().st_mtime_ns for p in sorted(work.rglob("*"))
            if ".snakemake" not in p.relative_to(work).parts}


def _dry_run(work: Path, env: dict[str, str], *config: str) -> str:
    done = subprocess.run(snakemake_command(work, "dry", "-n", config=config), env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done.stdout + done.stderr


def test_a_dry_run_writes_no_file_and_no_folder(tmp_path: Path) -> None:
    # Prepare: a project, then an earlier run's results (a stage config file, a data file) under the experiment
    work, env = make_project(tmp_path)
    env = {**env, "LLMQFL_TRACKING": "off"}
    before_any = _tree(work)
    log = _dry_run(work, env)
    assert "qfl" in log and "This was a dry-run" in log
    assert _tree(work) == before_any  # no results/, no logs/, no config file
    assert not (work / "results").exists() and not (work / "logs").exists()
    earlier = work / "results" / "dry"
    (earlier / "config").mkdir(parents=True)
    (earlier / "config" / "qfl-0123456789abcdef.json").write_text("{}\n")
    (earlier / "data").mkdir()
    (earlier / "data" / "meta.json").write_text("{}\n")
    os.utime(earlier / "config", ns=(1, 1))
    before = _tree(work)
    # Execute: dry runs with the same config and with another one
    _dry_run(work, env)
    _dry_run(work, env, "qfl={optimizer: {maxiter: 2, max_maxiter: 8}}", "seeds=[0,1]")
    # Assert
    assert _tree(work) == before
