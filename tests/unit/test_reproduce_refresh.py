"""scripts/reproduce.py --refresh-only: what was run here replaces its part; what was not keeps the numbers it had."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "reproduce.py"

BEFORE = """# Reproducing

<!-- BEGIN timings -->
| experiment | wall time here | source |
|---|---|---|
| default | 4.7 min | `results/default/timing.json` |
<!-- END timings -->

<!-- BEGIN sweep -->
the old sweep table
<!-- END sweep -->

<!-- BEGIN answer -->
_Run 2026-01-01 00:00 UTC, commit aaaaaaa, x86_64, 2 cores, no GPU; from `results/default/report/answer.md`._

#### Answer: experiment `default`

old default answer

_Run 2026-01-01 00:00 UTC, commit bbbbbbb, x86_64, 2 cores, no GPU; from `results/claims-dna/report/answer.md`._

#### Answer: experiment `claims-dna`

the claims-dna answer, run elsewhere

#### Answer: experiment `claims-text`

_Not run yet: `.venv/bin/python scripts/reproduce.py --experiments claims-text`._
<!-- END answer -->

<!-- BEGIN claims:default -->
old default claims
<!-- END claims:default -->
"""


@pytest.fixture
def reproduce(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    spec = importlib.util.spec_from_file_location("reproduce", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "ROOT", tmp_path)
    return module


def test_a_refresh_replaces_what_ran_here_and_keeps_the_other_experiments_numbers(reproduce, tmp_path: Path) -> None:
    # Prepare: only the default experiment ran here (no timing.json: `make run`, not reproduce.py)
    (tmp_path / "REPRODUCTION.md").write_text(BEFORE)
    report = tmp_path / "results" / "default" / "report"
    (report / "figures").mkdir(parents=True)
    (report / "answer.md").write_text("#### Answer: experiment `default`\n\nnew default answer\n")
    (report / "claims.md").write_text("# LLM-QFL claims: experiment `default`\n\nnew default claims\n")
    (report / "figures" / "cost.png").write_bytes(b"\x89PNG")
    (tmp_path / "docs" / "figures").mkdir(parents=True)
    # Execute
    reproduce.refresh()
    # Assert
    text = (tmp_path / "REPRODUCTION.md").read_text()
    assert "new default answer" in text and "old default answer" not in text
    assert "new default claims" in text and "old default claims" not in text
    assert "the claims-dna answer, run elsewhere" in text and "commit bbbbbbb" in text
    assert "the old sweep table" in text and "| default | 4.7 min |" in text
    assert text.index("new default answer") < text.index("claims-dna answer") < text.index("claims-text`._")
    assert (tmp_path / "docs" / "figures" / "answer-default.png").read_bytes() == b"\x89PNG"
