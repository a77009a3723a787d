"""Stage CLI: the per-round series of every arm as small CSV files, DVC's plot data.

    python -m llmqfl.stages.rounds --config CFG --eval-dir results/EXP/eval --out-dir results/EXP/plots

One ``{arm}.csv`` per arm (mean over the seeds of each round): ``round, test_accuracy, test_loss,
server_loss, mean_maxiter``. The files are small and kept by DVC, so ``dvc plots diff`` overlays
two experiments' curves.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from llmqfl.evaluation.collect import load_runs
from llmqfl.io import atomic_path
from llmqfl.settings import Settings
from llmqfl.stages._cli import run_stage, stage_parser

COLUMNS = ("test_accuracy", "test_loss", "server_loss", "mean_maxiter")


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("rounds", "Per-round series of every arm (mean over seeds) as CSV.")
    parser.add_argument("--eval-dir", required=True, help="results/{exp}/eval")
    parser.add_argument("--out-dir", required=True, help="results/{exp}/plots")
    return parser


def arm_series(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The mean of each round over an arm's seeds (a seed that stopped early counts up to its last round)."""
    frames = [pd.DataFrame({"round": r["per_round"]["round"], **{c: r["per_round"][c] for c in COLUMNS}})
              for r in records]
    mean = pd.concat(frames).groupby("round", sort=True)[list(COLUMNS)].mean()
    return mean.round(6).reset_index()


def body(args: argparse.Namespace, settings: Settings) -> None:
    runs = load_runs(args.eval_dir, arms=settings.arms, seeds=settings.seeds)  # checks every record first
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for arm, records in runs.items():
        with atomic_path(out / f"{arm}.csv") as tmp:
            arm_series(records).to_csv(tmp, index=False)


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("rounds", build_parser(), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
