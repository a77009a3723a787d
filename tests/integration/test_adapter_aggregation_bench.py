"""benchmarks/adapter_aggregation.py on the tiny GPT-2: both methods' rows, and the table it writes into the docs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

from llmqfl.llm.model_assets import ensure_asset

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "adapter_aggregation.py"


@pytest.fixture(scope="module")
def bench():
    ensure_asset("tiny-gpt2", ROOT / "resources" / "models", wheels=ROOT / "resources" / "wheels")
    spec = importlib.util.spec_from_file_location("adapter_aggregation", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["adapter_aggregation"] = module
    spec.loader.exec_module(module)
    return module


def test_both_methods_measured_and_the_table_rewritten_between_markers(bench, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: a tiny federation config (2 clients, 2 rounds) and a doc with the markers
    monkeypatch.setenv("LLMQFL_TRACKING", "off")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "experiment": "bench", "seed": 0, "federation": {"n_clients": 2},
        "llm": {"model": "tiny-gpt2", "epochs": 1, "batch_size": 8, "max_length": 32, "federated_rounds": 2},
    }))
    doc = tmp_path / "teacher.md"
    start, end = bench.MARKERS
    doc.write_text(f"before\n{start}\nold table\n{end}\nafter\n")

    # Execute
    result = bench.measure(["rotten_tomatoes"], ["factorwise", "ffa"], max_items=60, config_path=config)
    bench.write_docs(doc, result)

    # Assert: ffa is exact and moves fewer bytes; factor-wise is not exact; the table replaced the old one
    rows = {row["method"]: row for row in result["rows"]}
    assert rows["ffa"]["product_error"] < 1e-6 < rows["factorwise"]["product_error"]
    assert 0 < rows["ffa"]["bytes_total"] < rows["factorwise"]["bytes_total"]
    for row in rows.values():
        assert 0.0 <= row["server_test_accuracy"] <= 1.0 and row["wall_seconds"] > 0
    text = doc.read_text()
    assert "old table" not in text and text.startswith("before\n") and text.endswith(f"{end}\nafter\n")
    assert "| rotten_tomatoes | `ffa` |" in text and "| rotten_tomatoes | `factorwise` |" in text


def test_parts_run_side_by_side_merge_in_task_and_method_order(bench) -> None:
    row = {"clients": 4, "rounds": 2, "server_test_accuracy": 0.5, "n_server_test": 10, "client_test_accuracy": 0.5,
           "bytes_total": 1, "product_error": 0.0, "trainable_params": 1, "wall_seconds": 1.0, "cpu_seconds": 1.0}
    parts = [{"max_items": 600, "minutes": 2.0, "rows": [{**row, "task": "splice", "method": "ffa"}]},
             {"max_items": 600, "minutes": 3.0, "rows": [{**row, "task": "coding_vs_intergenic", "method": "ffa"},
                                                         {**row, "task": "splice", "method": "factorwise"}]}]
    merged = bench.merge(parts)
    assert [(r["task"], r["method"]) for r in merged["rows"]] == [
        ("coding_vs_intergenic", "ffa"), ("splice", "factorwise"), ("splice", "ffa")]
    assert merged["minutes"] == 5.0 and "summed over 2 parts" in bench.markdown(merged)
    with pytest.raises(SystemExit, match="different --max-items"):
        bench.merge([parts[0], {**parts[1], "max_items": 200}])
