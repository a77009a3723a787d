"""The report's reference rows: federated training between centralised and local-only training.

The quantum student's references come from the baseline arm's runs (``accounting.json``
``references.student``, one per seed: ``qfl.references``), the teacher's from the federation's job
(every client's ``metrics.json`` ``references``: ``llm.references``). Both are scored on the server's
test set, the set the arms are compared on; the student rows are means over seeds with t-intervals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llmqfl import layout
from llmqfl.contracts import BASELINE
from llmqfl.evaluation.evidence import Evidence, _final_accuracy, _finite
from llmqfl.evaluation.stats import Summary, summarise
from llmqfl.io import read_json

KINDS = ("centralised", "local_only")
LABELS = {
    "federated": "federated (this run: the baseline arm B0; the federated teacher)",
    "centralised": "centralised: one model on the pooled client train items",
    "local_only": "local only: each client alone on its own items (mean over clients)",
}


def load_student_references(qfl_dir: str | Path | None, *, seeds: Sequence[int]) -> dict[str, list[float]]:
    """Each seed's centralised and local-only server-test accuracy of the quantum student."""
    found: dict[str, list[float]] = {kind: [] for kind in KINDS}
    if qfl_dir is None:
        return found
    for seed in sorted(seeds):
        path = Path(qfl_dir) / BASELINE / layout.seed_dir(seed) / layout.ACCOUNTING
        student = read_json(path).get("references", {}).get("student") if path.is_file() else None
        if isinstance(student, Mapping):
            for kind in KINDS:
                found[kind].append(float(student[kind]["test_accuracy"]))
    return found


def reference_rows(evidence: Evidence, student: Mapping[str, Sequence[float]]) -> dict[str, Any] | None:
    """``{"student": {row: summary}, "teacher": {row: accuracy}}``; None when no reference was computed."""
    teacher_refs = next((m["references"] for m in evidence.distill if isinstance(m.get("references"), Mapping)), None)
    if not any(student.get(kind) for kind in KINDS) and teacher_refs is None:
        return None
    baseline = [_finite(_final_accuracy(r)) for r in evidence.runs.get(BASELINE, [])]
    student_rows = {"federated": summarise(baseline), **{kind: summarise(student.get(kind, [])) for kind in KINDS}}
    federated_teacher = [_finite(m.get("server_test_accuracy")) for m in evidence.distill]
    teacher_rows: dict[str, float | None] = {"federated": _first(federated_teacher)}
    for kind in KINDS:
        teacher_rows[kind] = None if teacher_refs is None else float(teacher_refs[kind]["server_test_accuracy"])
    return {"student": {k: _payload(v) for k, v in student_rows.items()}, "teacher": teacher_rows}


def references_markdown(references: Mapping[str, Any] | None) -> str:
    """The reference table (server-test accuracy), or nothing when no reference was computed."""
    if not references:
        return ""
    lines = ["| training | quantum student (server test) | teacher (server test) |", "|---|---|---|"]
    for row, label in LABELS.items():
        student, teacher = references["student"].get(row), references["teacher"].get(row)
        cells = [label, "n/a" if student is None else _format(student),
                 "n/a" if teacher is None else f"{teacher:.1%}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _first(values: Sequence[float]) -> float | None:
    finite = [v for v in values if v == v]
    return finite[0] if finite else None  # one federated teacher: every client's final model is the same


def _payload(summary: Summary | None) -> dict[str, Any] | None:
    if summary is None:
        return None
    return {"mean": summary.mean, "low": summary.low, "high": summary.high, "n": summary.n,
            "values": list(summary.values)}


def _format(row: Mapping[str, Any]) -> str:
    summary = Summary(row["mean"], row["low"], row["high"], row["n"], tuple(row["values"]))
    return summary.format(3, percent=True)
