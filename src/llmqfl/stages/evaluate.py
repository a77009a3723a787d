"""Evaluate one QFL run: per-round and total metrics of (arm, seed) from its history and accounting.

python -m llmqfl.stages.evaluate --config JSON --history results/{exp}/qfl/{arm}/seed_{s}/history.parquet \
    --accounting results/{exp}/qfl/{arm}/seed_{s}/accounting.json --out results/{exp}/eval/{arm}/seed_{s}.json

With ``--seed S`` (repeatable) the three paths hold ``{seed}`` and every seed is evaluated in this process
(every seed's files are read and checked before the first record is written).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any

from llmqfl import tracking
from llmqfl.evaluation.history import load_accounting, load_history
from llmqfl.evaluation.metrics import run_metrics
from llmqfl.io import write_json
from llmqfl.settings import Settings
from llmqfl.stages._cli import require_seed_field, run_stage, seed_runs, stage_parser

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("evaluate", "Metrics of one (arm, seed) QFL run.")
    parser.add_argument("--history", required=True, help="the run's history.parquet")
    parser.add_argument("--accounting", required=True, help="the run's accounting.json")
    parser.add_argument("--out", required=True, help="results/{exp}/eval/{arm}/seed_{seed}.json")
    parser.add_argument("--seed", type=int, action="append", default=None,
                        help="evaluate these seeds, filling {seed} in the paths (repeatable)")
    return parser


def body(args: argparse.Namespace, settings: Settings) -> None:
    if args.seed is None:
        evaluate_one(args, settings, *_read(args))
        return
    require_seed_field(args, ["out"])
    runs = [(seed_args, _read(seed_args)) for _, seed_args in seed_runs(args, ("history", "accounting", "out"))]
    for seed_args, (history, accounting) in runs:
        evaluate_one(seed_args, settings, history, accounting)


def _read(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    return load_history(args.history), load_accounting(args.accounting)


def evaluate_one(args: argparse.Namespace, settings: Settings, history: Any, accounting: dict[str, Any]) -> None:
    """One run's eval record, written and logged."""
    record = run_metrics(
        history,
        accounting,
        experiment=settings.experiment,
        rounds_configured=settings.federation.rounds,
        selection_kind=settings.federation.selection.kind,
    )
    arm, seed = record["arm"], record["seed"]
    tags = {"llmqfl.arm": arm, "llmqfl.seed": str(seed)}
    with tracking.stage_run(settings, "evaluate", name=f"evaluate {arm} seed {seed}", tags=tags) as run:
        # per-round curves are the qfl run's (logged once, as the rounds run); this run adds the summary
        summary = {f"total_{k}": v for k, v in record["totals"].items()}
        summary.update({f"final_{k}": v for k, v in record["final"].items()})
        summary["rounds_run"] = record["rounds_run"]
        if record["convergence"]:
            summary["convergence_slope"] = record["convergence"]["slope"]
        run.log_metrics(summary, step=record["rounds_run"])
        write_json(args.out, record)
        run.log_artifact(args.out)
    log.info(
        "%s seed %s: %d rounds, final accuracy %s, %s objective evaluations, idle %.3f s -> %s",
        arm, seed, record["rounds_run"], record["final"]["test_accuracy"], record["totals"]["nfev"],
        record["totals"]["idle_seconds"], args.out,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("evaluate", build_parser(), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
