"""Stage ``sweep``: the table of one task's sweep (guidance rule x distillation weight x selection kind).

python -m llmqfl.stages.sweep --config CFG --eval-dir results/{exp}/sweep/eval --out results/{exp}/sweep/sweep.csv

Reads ``{eval-dir}/{point}/seed_{s}.json`` for every grid point (llmqfl.evaluation.sweep_table: L, one B0 per
selection kind, one E per L point) and replicate, and writes one row per guided point: L vs the baseline
with the same selection kind (L - B0) and L vs its equal_cost point (L - E, the same total circuit
executions without the LLM), with Holm's correction over both comparisons of every row together.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from llmqfl.errors import ConfigError, DataError
from llmqfl.evaluation.sweep_table import COLUMNS, grid_points, point_rows
from llmqfl.io import atomic_path, read_json
from llmqfl.settings import Settings
from llmqfl.stages._cli import run_stage, stage_parser

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser(
        "sweep", "One task's sweep table: each grid point's L against B0 and against its equal-cost E, with intervals."
    )
    parser.add_argument("--eval-dir", required=True, type=Path, help="results/{exp}/sweep/eval")
    parser.add_argument("--out", required=True, type=Path, help="results/{exp}/sweep/sweep.csv")
    return parser


def body(args: argparse.Namespace, settings: Settings) -> None:
    grid = settings.sweep
    if not grid.selections:
        raise ConfigError("config error: sweep.selections: the sweep needs at least one selection kind")
    points = grid_points(grid)
    records: dict[str, list[dict[str, Any]]] = {}
    for point in points:
        records[point.id] = []
        for seed in sorted(settings.seeds):
            path = args.eval_dir / point.id / f"seed_{seed}.json"
            if not path.is_file():
                raise DataError(f"eval record not found: {path} (run the sweep's evaluate jobs first)")
            records[point.id].append(read_json(path))
    table = pd.DataFrame(point_rows(settings.experiment, points, records), columns=list(COLUMNS))
    with atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False)
    for row in table.itertuples(index=False):
        log.info("%s %s w=%g: L-B0 accuracy %+.3f, circuits L/B0 %.2f: %s; L-E accuracy %+.3f: %s", row.selection,
                 row.rule, row.weight, row.acc_diff, row.circuits_ratio, row.verdict, row.acc_diff_e, row.verdict_e)


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("sweep", build_parser(), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
