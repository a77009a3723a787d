"""benchmarks/student_capacity.py on a tiny slice: one DNA task, 2 seeds, small budgets, 200 items."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "student_capacity.py"


@pytest.fixture(scope="module")
def capacity():
    spec = importlib.util.spec_from_file_location("student_capacity", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["student_capacity"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def result(capacity, tmp_path_factory):
    settings = [capacity.Setting("paper", "cobyla", 10), capacity.Setting("default", "adam", 3)]
    return capacity.measure(["coding_vs_intergenic"], n_seeds=2, settings=settings, learning_rates=(0.1, 0.3),
                            max_items=200, scratch=tmp_path_factory.mktemp("student"))


def test_every_row_is_there_with_accuracies_in_range(result) -> None:
    task = result["tasks"]["coding_vs_intergenic"]
    keys = [row["key"] for row in task["rows"]]
    assert keys == ["majority", "feature_ceiling", "raw_classical", "local_only", "centralised",
                    "quantum:paper:cobyla:10", "quantum:default:adam:3"]
    for row in task["rows"]:
        assert "skipped" not in row, row
        for split in ("val", "test"):
            summary = row[split]
            assert all(0.0 <= v <= 1.0 for v in summary["values"]), (row["key"], summary)
            assert 0.0 <= summary["mean"] <= 1.0
        quantum = row["kind"] != "classical"
        assert row["test"]["n"] == (2 if quantum else 1)
        assert (row["circuits"] is not None and row["circuits"] > 0) == quantum
    rows = {row["key"]: row for row in task["rows"]}
    assert rows["feature_ceiling"]["test"]["mean"] >= rows["majority"]["test"]["mean"]
    assert rows["quantum:paper:cobyla:10"]["circuits"] == 10 * task["n_train_pooled"]  # COBYLA: items x evaluations
    # Adam: (2P + 1) weight sets per step plus the final point, over every pooled item
    adam = rows["quantum:default:adam:3"]
    assert adam["circuits"] == (3 * (2 * adam["n_params"] + 1) + 1) * task["n_train_pooled"]
    assert rows["centralised"]["setting"] == task["chosen_setting"] == rows["local_only"]["setting"]
    json.dumps(result)  # the whole result is plain JSON


def test_the_docs_table_is_rewritten_between_its_markers(capacity, result, tmp_path: Path) -> None:
    doc = tmp_path / "student.md"
    start, end = capacity.MARKERS
    doc.write_text(f"# head\n\n{start}\nold table\n{end}\n\ntail\n")
    capacity.write_docs(doc, result)
    text = doc.read_text()
    assert "old table" not in text and text.startswith("# head") and text.endswith("tail\n")
    assert "| majority class |" in text and "quantum" not in text.split(end)[1]
