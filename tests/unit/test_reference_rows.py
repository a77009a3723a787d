"""The report's reference table: federated numbers between centralised and local-only training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmqfl.config import load_settings
from llmqfl.evaluation.evidence import Evidence
from llmqfl.evaluation.reference_rows import load_student_references, reference_rows, references_markdown


def _accounting(qfl: Path, seed: int, central: float, local: float) -> None:
    folder = qfl / "baseline" / f"seed_{seed}"
    folder.mkdir(parents=True)
    student = {"centralised": {"test_accuracy": central}, "local_only": {"test_accuracy": local}}
    (folder / "accounting.json").write_text(json.dumps({"references": {"feature_ceiling": 0.9, "student": student}}))


def test_reference_table_has_centralised_and_local_only_rows_for_student_and_teacher(tmp_path: Path) -> None:
    # Prepare: two seeds of baseline references, the federated runs, and the teacher's references
    _accounting(tmp_path, 0, 0.80, 0.70)
    _accounting(tmp_path, 1, 0.84, 0.72)
    runs = {"baseline": [{"final": {"test_accuracy": 0.75}}, {"final": {"test_accuracy": 0.77}}]}
    teacher_refs = {"centralised": {"server_test_accuracy": 0.81}, "local_only": {"server_test_accuracy": 0.66}}
    distill = [{"server_test_accuracy": 0.78, "references": teacher_refs}] * 2
    evidence = Evidence(runs=runs, config=load_settings({}), distill=distill)

    # Execute
    student = load_student_references(tmp_path, seeds=[0, 1])
    rows = reference_rows(evidence, student)
    table = references_markdown(rows)

    # Assert: means over seeds with intervals for the student, the teacher's single numbers
    assert student == {"centralised": [0.80, 0.84], "local_only": [0.70, 0.72]}
    assert rows["student"]["centralised"]["mean"] == pytest.approx(0.82) and rows["student"]["centralised"]["n"] == 2
    assert rows["student"]["federated"]["mean"] == pytest.approx(0.76)
    assert rows["teacher"] == {"federated": 0.78, "centralised": 0.81, "local_only": 0.66}
    lines = table.splitlines()
    assert lines[2].startswith("| federated") and "76%" in lines[2] and "78.0%" in lines[2]
    assert lines[3].startswith("| centralised") and "82%" in lines[3] and "81.0%" in lines[3]
    assert lines[4].startswith("| local only") and "71%" in lines[4] and "66.0%" in lines[4]


def test_no_references_no_table(tmp_path: Path) -> None:
    evidence = Evidence(runs={"baseline": [{"final": {"test_accuracy": 0.75}}]}, config=load_settings({}))
    assert reference_rows(evidence, load_student_references(tmp_path, seeds=[0])) is None
    assert references_markdown(None) == ""
