"""Stage ``plan``: what a config will cost on a QPU, before anything runs.

    llmqfl plan --config CFG [--data-dir results/EXP/data --partitions-dir results/EXP/partitions]
        [--arm ARM | --arms A,B] [--seed S | --seeds 0,1] [--out results/EXP/plan.json]

Prints, per arm and seed and in total, the jobs, circuits, shots and an estimate of QPU seconds
(:mod:`llmqfl.planning` says how each is counted), and writes the same as JSON with ``--out``.
Without ``--data-dir``/``--partitions-dir`` the item counts come from the data and partition
stages' own code run in memory (local data sources only). Exits with one ``llmqfl plan:`` line and
status 2 when a run's expected cost exceeds ``backend.shot_budget`` or ``backend.qpu_seconds_budget``.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llmqfl import layout
from llmqfl.contracts import ARMS
from llmqfl.errors import ConfigError, DataError
from llmqfl.io import read_json, write_json
from llmqfl.planning import (
    ArmPlan,
    Cost,
    check_budget,
    plan_config,
    sizes_from_config,
    sizes_from_files,
)
from llmqfl.settings import Settings
from llmqfl.stages._cli import run_stage, stage_parser

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = stage_parser("plan", (__doc__ or "").splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=None, help="the data stage's folder (meta.json)")
    p.add_argument("--partitions-dir", type=Path, default=None, help="the partition stage's folder")
    p.add_argument("--arm", choices=ARMS, default=None, help="one arm (default: the config's arms)")
    p.add_argument("--seed", type=int, default=None, help="one seed (default: the config's seeds)")
    p.add_argument("--arms", default=None, help="comma-separated arms (a stage config slice carries none)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds")
    p.add_argument("--out", type=Path, default=None, help="write the plan as JSON here")
    return p


def _sizes(args: argparse.Namespace, settings: Settings) -> tuple[Any, int]:
    if (args.data_dir is None) != (args.partitions_dir is None):
        raise DataError("--data-dir and --partitions-dir go together")
    if args.data_dir is None:
        return sizes_from_config(settings)
    paths = [args.data_dir / layout.META, args.partitions_dir / layout.PARTITION_SUMMARY]
    for path in paths:
        if not path.is_file():
            raise DataError(f"input file not found: {path}")
    meta, partitions = (read_json(path) for path in paths)
    return sizes_from_files(meta, partitions), int(meta["n_classes"])


def _listed(text: str | None, option: str, kind: type) -> list[Any] | None:
    if text is None:
        return None
    try:
        return [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{option}: expected a comma-separated list, got {text!r}") from None


def body(args: argparse.Namespace, settings: Settings) -> None:
    logging.getLogger("qiskit").setLevel(logging.WARNING)
    sizes, n_classes = _sizes(args, settings)
    arms = [args.arm] if args.arm else _listed(args.arms, "--arms", str)
    seeds = [args.seed] if args.seed is not None else _listed(args.seeds, "--seeds", int)
    for arm in arms or ():
        if arm not in ARMS:
            raise ConfigError(f"--arms: {arm!r} is not one of: {', '.join(ARMS)}")
    plan = plan_config(settings, sizes, n_classes, arms=arms, seeds=seeds)
    print(format_plan(plan), flush=True)
    for run in plan["runs"]:  # refuse before anything is written
        check_budget(settings, ArmPlan(run["arm"], run["seed"], run["rounds"], Cost(**run["expected"]),
                                     Cost(**run["bound"])))
    if args.out is not None:
        write_json(args.out, plan)


def format_plan(plan: Mapping[str, Any]) -> str:
    """A short human-readable table of :func:`plan_config`'s result."""
    model, backend = plan["cost_model"], plan["backend"]
    lines = [
        f"plan for {plan['experiment']}: backend {' '.join(filter(None, (backend['kind'], backend['name'])))}, "
        + (f"{backend['shots_per_circuit']} shots per circuit" if backend["shots_per_circuit"] else "exact (no jobs)"),
    ]
    if model["device"]:
        lines.append(
            f"QPU seconds are estimates: {model['job_overhead_s']:g} s per job + per shot "
            f"{model['rep_delay_s'] * 1e6:.0f} us repetition delay + {model['circuit_s'] * 1e6:.1f} us circuit "
            f"({model['device']} timings)"
        )
    lines.append(f"{'arm':<16}{'seed':>5}{'rounds':>7}{'jobs':>9}{'circuits':>12}{'shots':>14}{'QPU s':>10}"
                 f"   bound: jobs / shots / QPU s")
    for run in plan["runs"]:
        e, b = run["expected"], run["bound"]
        lines.append(
            f"{run['arm']:<16}{run['seed']:>5}{run['rounds']:>7}{e['jobs']:>9}{e['circuits']:>12}{e['shots']:>14}"
            f"{_seconds(e['qpu_seconds']):>10}   {b['jobs']} / {b['shots']} / {_seconds(b['qpu_seconds'])}"
        )
    e, b = plan["total"]["expected"], plan["total"]["bound"]
    lines.append(f"{'total':<28}{e['jobs']:>9}{e['circuits']:>12}{e['shots']:>14}{_seconds(e['qpu_seconds']):>10}"
                 f"   {b['jobs']} / {b['shots']} / {_seconds(b['qpu_seconds'])}")
    for run in plan["runs"]:
        for note in run["notes"]:
            lines.append(f"note ({run['arm']}): {note}")
    return "\n".join(dict.fromkeys(lines))


def _seconds(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.0f}"


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """The stage CLI; ``prog`` names it in usage lines (``llmqfl plan``)."""
    parser = build_parser()
    if prog is not None:
        parser.prog = prog
    return run_stage("plan", parser, body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
