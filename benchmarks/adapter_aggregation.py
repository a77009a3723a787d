"""Adapter aggregation methods side by side: teacher accuracy, bytes on the wire, seconds, per embedded task.

    .venv/bin/python benchmarks/adapter_aggregation.py    # 3 tasks x 2 methods: ~3 CPU min (5-15 min wall, shared)
    .venv/bin/python benchmarks/adapter_aggregation.py --from-json benchmarks/measured/adapter_aggregation.json
    .venv/bin/python benchmarks/adapter_aggregation.py --tasks splice --max-items 200 --no-docs --out /tmp/a.json

For each embedded task (``llmqfl.data.embedded``) and each ``llm.adapter_aggregation`` method, builds the
default config (``config/config.yaml``) with ``data.source`` replaced and smaller settings (``--max-items``
items, the default's 4 IID clients and 2 federated rounds of 1 epoch, seed 0), splits and partitions it in
memory as the data and partition stages do, and runs the federation the ``distill_federated`` job runs
(``llmqfl.llm.federation``, in-process, one torch thread). Per row: the final teacher's accuracy on the
server's test set and on the clients' own test items (mean), the bytes on the wire over all rounds (every
client's upload and download), ``product_error`` (relative distance of the global B·A from the mean of the
clients' B·A, mean over rounds) and the federation's wall and CPU seconds. Writes
``benchmarks/measured/adapter_aggregation.json`` and rewrites the table between the markers in docs/teacher.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from doc_tables import rewrite_between  # noqa: E402

OUT = ROOT / "benchmarks" / "measured" / "adapter_aggregation.json"
DOC = ROOT / "docs" / "teacher.md"
MARKERS = ("<!-- adapter-aggregation:start -->", "<!-- adapter-aggregation:end -->")
MAX_ITEMS = 600


def _clients(settings: Any) -> tuple[list[Any], Any]:
    """The clients' items and the server's test set, as the data and partition stages make them."""
    from llmqfl.data.partitioners import partition_as_configured
    from llmqfl.llm.client_job import ClientData
    from llmqfl.stages import data as data_stage

    tables, meta = data_stage.prepare(settings)
    parts, _ = partition_as_configured(tables["train"], settings, meta["n_classes"])
    clients = [ClientData(f.reset_index(drop=True), f[f["split"] == "train"], f[f["split"] == "test"], meta["kind"],
                          list(meta["classes"])) for f in parts]
    test = tables["test"][["row", "item", "label"]].astype({"label": "int64"}).reset_index(drop=True)
    return clients, test


def measure_one(task: str, method: str, *, max_items: int, config_path: Path) -> dict[str, Any]:
    from llmqfl.config import load_config
    from llmqfl.llm.federation import run_federation
    from llmqfl.settings import Settings

    settings = Settings.from_config(load_config(config_path, overrides={
        "data": {"source": task, "max_items": max_items},
        "llm": {"adapter_aggregation": method, "references": False}}))
    clients, test = _clients(settings)
    with tempfile.TemporaryDirectory(prefix="llmqfl-aggregation-") as scratch:
        wall, cpu = time.perf_counter(), time.process_time()
        results = run_federation(settings, clients, root_seed=settings.seed, out=scratch, progress=False,
                                 test=test)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    federated = results[0]["federated"]
    return {
        "task": task, "method": method, "clients": len(clients), "rounds": federated["rounds"],
        "n_train": [len(c.train) for c in clients], "n_server_test": len(test),
        "server_test_accuracy": results[0]["server_test_accuracy"],
        "client_test_accuracy": float(np.mean([r["eval_accuracy"] for r in results])),
        "bytes_total": federated["bytes_total"], "bytes_up_per_round": federated["bytes_up_per_round"],
        "product_error": float(np.mean(federated["product_error_per_round"])),
        "trainable_params": results[0]["trainable_params"], "wall_seconds": wall, "cpu_seconds": cpu,
    }


def measure(tasks: Sequence[str], methods: Sequence[str], *, max_items: int,
            config_path: Path = ROOT / "config" / "config.yaml") -> dict[str, Any]:
    began = time.perf_counter()
    rows = []
    for task in tasks:
        for method in methods:
            rows.append(measure_one(task, method, max_items=max_items, config_path=config_path))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return {"benchmark": "adapter_aggregation", "max_items": max_items, "rows": rows,
            "minutes": (time.perf_counter() - began) / 60}


def merge(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Parts of one measurement (tasks run side by side) as one result, rows in task and method order."""
    from llmqfl.data.embedded import EMBEDDED
    from llmqfl.llm.fedavg import METHODS

    sizes = {r["max_items"] for r in results}
    if len(sizes) != 1:
        raise SystemExit(f"adapter_aggregation: the parts were measured with different --max-items {sorted(sizes)}")
    rows = sorted((row for r in results for row in r["rows"]),
                  key=lambda row: (list(EMBEDDED).index(row["task"]), METHODS.index(row["method"])))
    return {"benchmark": "adapter_aggregation", "max_items": sizes.pop(), "rows": rows,
            "minutes": sum(r["minutes"] for r in results), "parts": len(results)}


def markdown(result: dict[str, Any]) -> str:
    rows = result["rows"]
    first = rows[0]
    lines = [
        f"Generated by `benchmarks/adapter_aggregation.py` ({result['max_items']} items per task, {first['clients']} "
        f"IID clients, {first['rounds']} federated rounds of 1 epoch, MiniLM-L6 LoRA r 8, seed 0, one torch thread; "
        f"{result['minutes']:.1f} min of wall time{_parts(result)} on a 2-core machine shared with other jobs, "
        "so compare CPU seconds). Teacher "
        "accuracy of the last global adapter on the server's test set and on the clients' own test items (mean); "
        "bytes on the wire: every client's upload and download over all rounds; B·A error: distance of the global "
        "B·A from the size-weighted mean of the clients' B·A, relative, mean over rounds.",
        "",
        "| task | method | server test accuracy | client test accuracy | bytes on the wire | B·A error | "
        "trainable params | wall s | CPU s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(f"| {row['task']} | `{row['method']}` | {row['server_test_accuracy']:.1%} "
                     f"(n={row['n_server_test']}) | {row['client_test_accuracy']:.1%} | "
                     f"{row['bytes_total'] / 1e6:.2f} MB | {row['product_error']:.2g} | {row['trainable_params']:,} | "
                     f"{row['wall_seconds']:.0f} | {row['cpu_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def _parts(result: dict[str, Any]) -> str:
    parts = int(result.get("parts", 1))
    return f" summed over {parts} parts run side by side" if parts > 1 else ""


def write_docs(path: Path, result: dict[str, Any]) -> None:
    rewrite_between(path, MARKERS, markdown(result), "adapter_aggregation")


def main(argv: Sequence[str] | None = None) -> int:
    from llmqfl.data.embedded import EMBEDDED
    from llmqfl.llm.fedavg import METHODS

    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=list(EMBEDDED), default=list(EMBEDDED))
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--max-items", type=int, default=MAX_ITEMS, help="data.max_items per task")
    parser.add_argument("--from-json", type=Path, nargs="+", default=None,
                        help="re-render measured results only (several: parts run side by side, merged)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args(argv)
    if args.from_json is not None:
        result = merge([json.loads(path.read_text()) for path in args.from_json])
        if len(args.from_json) > 1:
            args.out.write_text(json.dumps(result, indent=1) + "\n")
    else:
        result = measure(args.tasks, args.methods, max_items=args.max_items)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    if not args.no_docs:
        write_docs(args.doc, result)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
