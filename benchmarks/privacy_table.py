"""Accuracy against epsilon: client-level DP of the quantum updates on the default task (docs/privacy.md).

    .venv/bin/python benchmarks/privacy_table.py                       # the table in docs/privacy.md
    .venv/bin/python benchmarks/privacy_table.py --seeds 2 --no-docs --out /tmp/p.json

The default task (``config/config.yaml``: coding_vs_intergenic, 4 clients, the VQC) goes through the data
and partition stages into a scratch folder (``student_capacity.build_task``); then the baseline arm (B0:
no LLM, so no distill stage) runs in-process (``llmqfl.federated.run.execute``) once without DP and once per
noise multiplier with ``privacy.quantum`` on (clip norm ``--clip-norm``), for every seed (``derive_seed(seed,
"qfl", s)`` re-draws the initial point and the optimizer seeds, and the DP noise). Each row: final server
test accuracy, mean [95% Student-t interval] over seeds (``llmqfl.evaluation.stats.summarise``), the run's
epsilon at delta (Opacus's RDP accountant over the rounds run, as the run reports it), and the mean L2
norm of the clients' updates before clipping. ``--rounds`` (default: the config's) keeps the run short
on 2 cores. Prints one JSON object, writes it to ``--out`` and rewrites the table between the markers of
``--docs``.
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
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from doc_tables import rewrite_between  # noqa: E402

from llmqfl.config import deep_merge, validate_config  # noqa: E402
from llmqfl.evaluation.stats import summarise  # noqa: E402
from llmqfl.federated import run  # noqa: E402
from llmqfl.federated.inputs import RunPaths  # noqa: E402
from llmqfl.settings import Settings  # noqa: E402

DOCS = ROOT / "docs" / "privacy.md"
OUT = ROOT / "benchmarks" / "measured" / "privacy_table.json"
MARKERS = ("<!-- privacy-table:start -->", "<!-- privacy-table:end -->")
TASK = "coding_vs_intergenic"


def say(message: str) -> None:
    print(f"privacy_table: {message}", file=sys.stderr, flush=True)


def one_run(paths: RunPaths, config: dict[str, Any], seed: int, out: Path) -> dict[str, Any]:
    """The baseline arm for one seed: final server test accuracy, epsilon, the clients' update norms."""
    prepared = run.prepare(paths, Settings.from_config(config), "baseline", seed)
    result, accounting = run.execute(prepared, None, out_dir=out, resume=False, log_metrics=lambda *a, **k: None)
    summary = run.final_metrics(result, accounting)
    privacy = (accounting.get("privacy") or {}).get("quantum")
    norms = [n for r in (privacy or {}).get("rounds", []) for n in r["update_norms"]]
    return {"accuracy": summary["final_server_test_accuracy"], "rounds_run": result.rounds_run,
            "epsilon": privacy["epsilon"] if privacy else None, "update_norm": float(np.mean(norms)) if norms else None}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import student_capacity

    scratch = Path(tempfile.mkdtemp(prefix="privacy-table-"))
    task = student_capacity.build_task(TASK, scratch, None)
    folder = scratch / TASK
    paths = RunPaths(folder / "data", folder / "partitions", folder / "distill", folder / "out")
    base = dict(task.config)
    if args.rounds:
        base = deep_merge(base, {"federation": {"rounds": args.rounds}})
    levels: list[float | None] = [None, *args.noise]
    rows = []
    for noise in levels:
        quantum = {"enabled": noise is not None, "clip_norm": args.clip_norm, "delta": args.delta,
                   "noise_multiplier": noise if noise is not None else 1.0}
        config = validate_config(deep_merge(base, {"privacy": {"quantum": quantum}}))
        runs = []
        for s in range(args.seeds):
            started = time.perf_counter()
            runs.append(one_run(paths, config, s, scratch / f"run-{noise}-{s}"))
            say(f"noise {noise}, seed {s}: accuracy {runs[-1]['accuracy']:.3f}, epsilon {runs[-1]['epsilon']}, "
                f"{time.perf_counter() - started:.0f} s")
        accuracy = summarise([r["accuracy"] for r in runs])
        assert accuracy is not None
        epsilons = {r["epsilon"] for r in runs}
        rows.append({
            "noise_multiplier": noise, "clip_norm": args.clip_norm if noise is not None else None,
            "epsilon": max(epsilons) if noise is not None else None, "delta": args.delta if noise is not None else None,
            "accuracy": {"mean": accuracy.mean, "low": accuracy.low, "high": accuracy.high, "n": accuracy.n,
                         "values": list(accuracy.values)},
            "rounds_run": [r["rounds_run"] for r in runs],
            "update_norm": float(np.mean([r["update_norm"] for r in runs])) if noise is not None else None,
        })
    return {"task": TASK, "config": "config/config.yaml", "arm": "baseline", "seeds": args.seeds,
            "rounds": base["federation"]["rounds"], "clients": base["federation"]["n_clients"],
            "selection": base["federation"]["selection"], "rows": rows}


def table(result: dict[str, Any]) -> str:
    sel = result["selection"]
    lines = [
        f"Task `{result['task']}` (`{result['config']}`), arm B0 (baseline), {result['clients']} clients, "
        f"{result['rounds']} rounds, selection {sel['kind']} (fraction {sel['fraction']}), "
        f"{result['seeds']} seeds. Generated by `benchmarks/privacy_table.py`; do not edit by hand.",
        "",
        "| noise multiplier | clip norm | epsilon (delta) | final server test accuracy, mean [95% CI] (n) "
        "| mean update norm before clipping |",
        "|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        acc = row["accuracy"]
        interval = f" [{acc['low']:.1%}, {acc['high']:.1%}]" if acc["low"] is not None else ""
        if row["noise_multiplier"] is None:
            lines.append(f"| no DP | - | - | {acc['mean']:.1%}{interval} (n={acc['n']}) | - |")
        else:
            lines.append(f"| {row['noise_multiplier']:g} | {row['clip_norm']:g} | {row['epsilon']:.3g} "
                         f"({row['delta']:g}) | {acc['mean']:.1%}{interval} (n={acc['n']}) "
                         f"| {row['update_norm']:.3g} |")
    return "\n".join(lines)


def rewrite_docs(path: Path, text: str) -> None:
    rewrite_between(path, MARKERS, f"{text}\n", "privacy_table")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.3, 1.0, 3.0], help="noise multipliers")
    parser.add_argument("--clip-norm", type=float, default=1.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=None, help="federation.rounds (default: the config's)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--docs", type=Path, default=DOCS)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = measure(args)
    text = json.dumps(result, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    if not args.no_docs:
        rewrite_docs(args.docs, table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
