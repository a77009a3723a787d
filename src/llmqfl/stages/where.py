"""Say where an experiment's report, metrics and tracking live (``make run`` ends with this).

python -m llmqfl.stages.where --config config/config.yaml [--configfile config/experiments/X.yaml ...]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from llmqfl import layout, tracking
from llmqfl.config import load_config, load_settings
from llmqfl.errors import DataError
from llmqfl.evaluation.collect import load_runs
from llmqfl.evaluation.summary import arms_table
from llmqfl.io import read_json
from llmqfl.settings import Settings
from llmqfl.stages._cli import run_stage, stage_parser


def build_parser() -> argparse.ArgumentParser:
    parser = stage_parser("where", "Print where the configured experiment's outputs are.")
    parser.add_argument("--configfile", nargs="*", default=[], help="overlays, as given to snakemake --configfile")
    return parser


def locations(settings: Settings) -> dict[str, Path]:
    """The user-facing outputs of an experiment."""
    results = f"results/{settings.experiment}"
    return {
        "claims table": Path(layout.report_file(results, layout.CLAIMS)),
        "figures": Path(layout.report_file(results, layout.FIGURES)),
        "DVC metrics": Path(layout.metrics_file(results)),
        "per-run metrics": Path(results) / layout.EVAL,
    }


def describe(settings: Settings) -> str:
    """Paths with their state, the claims' verdicts when the report exists, and how to browse the rest."""
    lines = [f"llmqfl experiment {settings.experiment!r}:"]
    for label, path in locations(settings).items():
        state = "" if path.exists() else f"  (missing: run `make run` or `{tool('snakemake')} --cores 8`)"
        lines.append(f"  {label:<16} {path}{state}")
    claims = locations(settings)["claims table"].with_name(layout.CLAIMS_JSON)
    if claims.is_file():
        for row in read_json(claims):
            flags = "".join(f" ({flag})" for flag in row.get("flags", []))
            lines.append(f"    {row['id']} {row['claim']}: {row['verdict']}{flags}")
    table = _arms(settings)
    if table:
        lines += ["", "Arms side by side:", *(f"  {line}" for line in table.splitlines()), ""]
    lines.append(f"  HTML report      {tool('snakemake')} --report report.html")
    lines.append(f"  MLflow           {tool('mlflow')} ui --backend-store-uri {tracking.tracking_uri()}")
    lines.append(f"  compare arms     {tool('llmqfl')} compare {settings.experiment}")
    return "\n".join(lines)


def tool(name: str) -> str:
    """A console script of this interpreter's environment as the user types it (``.venv/bin/snakemake``).

    The hints must run as printed: `make run` does not activate the venv, so a bare ``snakemake`` is
    not on the user's PATH. Inside the current folder the path is relative, else absolute.
    """
    script = Path(sys.executable).with_name(name)
    try:
        return script.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(script)


def _arms(settings: Settings) -> str | None:
    """The side-by-side table of the arms, when every configured run has been evaluated."""
    eval_dir = locations(settings)["per-run metrics"]
    try:
        runs = load_runs(eval_dir, arms=settings.arms, seeds=settings.seeds)
    except DataError:
        return None
    return arms_table(runs, scope=settings.replicates.scope)


def body(args: argparse.Namespace, settings: Settings) -> None:
    if args.configfile:
        settings = load_settings(load_config([args.config, *args.configfile]))
    print(describe(settings))


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("where", build_parser(), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
