"""Snakemake after a run: a moved folder has nothing to do; a code edit or a backend change re-runs only its stages.

All three use the tiny experiment reproduced once in a fresh clone (tests/dvc_clone.py), each on a copy.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from dvc_clone import BIN, DVC, TINY_CONFIG, pristine_run, run

SNAKEMAKE = str(BIN / "snakemake")


@pytest.fixture
def reproduced(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    """A copy, under this test's own folder, of the tiny run right after `dvc repro` (a clone moved there)."""
    return pristine_run(tmp_path_factory, tmp_path / "elsewhere" / "project")


def _snakemake(repo: Path, *args: str) -> str:
    done = run(repo, SNAKEMAKE, "--cores", "2", "--configfile", TINY_CONFIG, *args)
    return done.stdout + done.stderr


def _planned_rules(output: str) -> set[str]:
    """Rule names in the job-stats table of a dry run."""
    table = output.split("Job stats:", 1)[1] if "Job stats:" in output else ""
    return {m[1] for m in re.finditer(r"^(\w+)\s+\d+$", table, re.M)} - {"total", "all"}


def _importers(repo: Path, path: str) -> set[str]:
    """The stages whose import closure holds ``path``, by the clone's own provenance table."""
    script = "import runpy, sys; sys.path.insert(0, 'src'); runpy.run_module('llmqfl.provenance', run_name='__main__')"
    table = json.loads(run(repo, str(BIN / "python"), "-c", script).stdout)
    return {stage for stage, row in table.items() if path in row["files"]}


def _rules_for_reason(output: str, reason: str) -> set[str]:
    """The rules the dry run's closing "Reasons:" summary lists under ``reason``."""
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if line.strip() == f"{reason}:":
            return {name.strip() for name in lines[index + 1].split(",")}
    return set()


def test_a_moved_run_folder_has_nothing_to_do(reproduced: Path) -> None:
    assert "Nothing to be done" in _snakemake(reproduced, "-n")
    assert json.loads(run(reproduced, DVC, "status", "--json").stdout) == {}


def test_an_encoder_edit_outdates_exactly_the_stages_that_import_it(reproduced: Path) -> None:
    # Prepare: the item encoders change (one function's body)
    repo = reproduced
    encoders = repo / "src" / "llmqfl" / "data" / "encoders.py"
    text = encoders.read_text()
    head, sep, rest = text.partition('def kmers(')
    body_start = rest.index('"""', rest.index('"""') + 3) + 3  # after the docstring
    encoders.write_text(head + sep + rest[:body_start] + "\n    _edited = True" + rest[body_start:])
    importers = _importers(repo, "src/llmqfl/data/encoders.py")
    # Execute
    dry = _snakemake(repo, "-n")
    status = json.loads(run(repo, DVC, "status", "--json").stdout)
    # Assert: Snakemake re-runs for changed params (the code digest is one) the importing stages only;
    # the others run later only because their inputs are rewritten
    rules = _rules_for_reason(dry, "params have changed since last execution")
    assert rules == importers & _planned_rules(dry), dry[-2000:]
    # Assert: DVC's stages whose deps list the encoders, and no other
    dvc_stages = {"data-tiny": {"data", "partition"}, "distill-tiny": {"distill", "distill_federated", "assets"},
                  "qfl-tiny": {"qfl"}, "report-tiny": {"evaluate", "report", "rounds"}}
    assert set(status) == {name for name, stages in dvc_stages.items() if stages & importers}, status
    assert "qfl-tiny" in status and "report-tiny" not in status


def test_a_backend_change_with_typed_nested_values_reruns_qfl_not_distill(reproduced: Path) -> None:
    planned = _planned_rules(_snakemake(reproduced, "-n", "--config", "backend={kind: aer, shots: 2048}"))
    assert "qfl" in planned
    assert not planned & {"data", "partition", "distill", "distill_federated"}


def test_nested_config_values_get_yaml_types() -> None:
    from llmqfl.pipeline import typed_cli_values

    # what Snakemake hands over for --config "backend={kind: fake, shots: 1024}" seeds=[0,1]
    raw = {"backend": {"kind": "fake", "shots": "1024", "name": "null"}, "seeds": ["0", "1"], "seed": 3}
    assert typed_cli_values(raw) == {"backend": {"kind": "fake", "shots": 1024, "name": None}, "seeds": [0, 1],
                                     "seed": 3}
