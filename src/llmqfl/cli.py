"""``llmqfl``: the console entry point.

    llmqfl run [SNAKEMAKE ARGS...]             the pipeline (snakemake with these arguments)
    llmqfl predict MODEL ITEMS.csv -o OUT.csv  classify raw items with a trained model (folder or MLflow URI)
    llmqfl plan --config CFG [ARGS...]         what a config will cost on a QPU, before anything runs
    llmqfl compare EXP [EXP...] [-o FIG]       one experiment's arms, or experiments, side by side
    llmqfl stage NAME [ARGS...]                one stage CLI (what the Snakemake rules run)
    llmqfl ledger CHECKPOINT_DIR [--json]      a fake/ibm run re-analysed from its job ledger alone

Bad input ends in one line ``llmqfl: ...`` and exit status 2, with no output file left behind.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from llmqfl.errors import LlmqflError

STAGES = ("assets", "data", "partition", "distill", "distill_federated", "embed", "plan", "qfl", "rounds",
          "evaluate", "report", "where")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmqfl", description="LLM-guided quantum federated learning.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run the pipeline: snakemake with the arguments that follow",
                         add_help=False, prefix_chars="\0")
    run.add_argument("args", nargs=argparse.REMAINDER)
    predict = sub.add_parser("predict", help="classify raw items with a trained model")
    predict.add_argument("model", help="model folder (results/EXP/qfl/ARM/seed_S/model) or MLflow URI (runs:/..., "
                                       "models:/...)")
    predict.add_argument("items", help="CSV with the raw items (column --column) or the feature columns")
    predict.add_argument("-o", "--out", required=True, help="predictions CSV: the input columns, label, "
                                                            "class_index, prob_<class> (predicted_NAME where the "
                                                            "input has a column NAME)")
    predict.add_argument("--column", default=None, help="the items' column (default: item, or the only column)")
    plan = sub.add_parser("plan", help="what a config will cost on a QPU (jobs, circuits, shots, seconds)",
                          add_help=False, prefix_chars="\0")
    plan.add_argument("args", nargs=argparse.REMAINDER)
    compare = sub.add_parser("compare", help="one experiment's arms, or two or more experiments, side by side")
    compare.add_argument("experiments", nargs="+", metavar="EXP", help="names under --results, or result folders")
    compare.add_argument("--results", default="results", help="the results folder (default: results)")
    compare.add_argument("-o", "--figure", "--out", dest="figure", default=None,
                         help="write the figure here (default: RESULTS/compare/EXP1-EXP2.png)")
    compare.add_argument("--no-figure", action="store_true", help="print the table only")
    ledger = sub.add_parser("ledger", help="re-analyse a fake/ibm run from its job ledger alone")
    ledger.add_argument("path", help="the run's checkpoints/ folder (or the run folder, or the ledger file)")
    ledger.add_argument("--json", action="store_true", help="print the analysis as one JSON object")
    stage = sub.add_parser("stage", help="run one stage CLI (`llmqfl stage NAME --help` for its options)",
                           description="Run one stage CLI, as the Snakemake rules do.")
    stage.add_argument("name", choices=STAGES, metavar="NAME", help=f"one of: {', '.join(STAGES)}")
    # REMAINDER keeps everything after NAME (its own --help included) for the stage's parser
    stage.add_argument("args", nargs=argparse.REMAINDER, help="the stage's own arguments")
    return parser


def _run(args: Sequence[str]) -> int:
    """snakemake from this interpreter's environment, in the current folder (a Snakefile here or via -s)."""
    snakemake = Path(sys.executable).with_name("snakemake")
    command = [str(snakemake)] if snakemake.is_file() else [sys.executable, "-m", "snakemake"]
    argv = list(args)
    if not Path("Snakefile").is_file() and "-s" not in argv and "--snakefile" not in argv:
        raise LlmqflError("no Snakefile here: run `llmqfl run` in the project folder, or pass -s PATH/Snakefile")
    _check_configfiles(argv)
    from llmqfl.faults import check_user_cache

    check_user_cache()  # snakemake creates ~/.cache/snakemake before it reads the Snakefile
    os.execv(command[0], [*command, *argv])  # hand the terminal to snakemake
    return 0  # pragma: no cover


def _check_configfiles(argv: Sequence[str]) -> None:
    """The config files snakemake would read, checked for size and alias bombs first.

    snakemake merges ``--configfile`` files itself, before the Snakefile (and its checks) runs, and
    its merge walks every alias copy: a 500-byte alias bomb would hang it. Here it is one line.
    """
    from llmqfl.config import parse_yaml, read_config_text

    files, taking = [], False
    for arg in argv:
        if arg in ("--configfile", "--configfiles"):
            taking = True
        elif arg.startswith(("--configfile=", "--configfiles=")):
            files.append(arg.split("=", 1)[1])
        elif taking and not arg.startswith("-"):
            files.append(arg)
        else:
            taking = False
    for path in files:
        parse_yaml(read_config_text(path), path)


def _predict(args: argparse.Namespace) -> int:
    import pandas as pd

    from llmqfl.errors import DataError
    from llmqfl.io import atomic_path
    from llmqfl.serving import load_model
    from llmqfl.serving.item_checks import distinct_columns

    items_path = Path(args.items)
    if not items_path.is_file():
        raise DataError(f"items file not found: {items_path}")
    try:
        frame = pd.read_csv(items_path, dtype=str, keep_default_na=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{items_path}: cannot read CSV: {str(exc).splitlines()[0]}") from exc
    if frame.empty:
        raise DataError(f"{items_path}: no items")
    inputs = frame
    if args.column is not None:
        if args.column not in frame.columns:
            raise DataError(f"{items_path}: no column {args.column!r} (columns: {', '.join(frame.columns)})")
        inputs = frame[[args.column]].rename(columns={args.column: "item"})
    model = load_model(args.model)
    if model.features_meta["source"] == "columns":
        inputs = frame.apply(pd.to_numeric, errors="coerce")
    predictions = model.predict(inputs)
    renames = distinct_columns(list(predictions.columns), list(frame.columns))  # the input's columns stay as they are
    out = pd.concat([frame.reset_index(drop=True), predictions.rename(columns=renames).reset_index(drop=True)], axis=1)
    with atomic_path(Path(args.out)) as tmp:
        out.to_csv(tmp, index=False)
    renamed = ", ".join(f"{old} as {new}" for old, new in renames.items())
    print(f"{len(out)} predictions -> {args.out}" + (f" (beside the input's columns: {renamed})" if renames else ""))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from llmqfl.evaluation.compare import compare_experiments, default_figure, draw, render_table

    summary = compare_experiments(args.experiments, results=args.results)
    sys.stdout.write(render_table(summary))
    if not args.no_figure:
        figure = args.figure or default_figure(args.experiments, args.results)
        draw(summary["loaded"], summary, figure)
        print(f"figure -> {figure}")
    return 0


def _ledger(args: argparse.Namespace) -> int:
    import json

    from llmqfl.quantum.jobs.ledger_report import analyse, render

    summary = analyse(args.path)
    sys.stdout.write(json.dumps(summary, indent=2) + "\n" if args.json else render(summary))
    return 0


def _stage(name: str, args: Sequence[str], prog: str | None = None) -> int:
    module = importlib.import_module(f"llmqfl.stages.{name}")
    if prog is not None:  # `llmqfl plan` is the plan stage under a shorter name
        return int(module.main(list(args), prog=prog) or 0)
    return int(module.main(list(args)) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args.args)
        if args.command == "predict":
            return _predict(args)
        if args.command == "compare":
            return _compare(args)
        if args.command == "ledger":
            return _ledger(args)
        if args.command == "plan":
            return _stage("plan", args.args, prog="llmqfl plan")
        return _stage(args.name, args.args)
    except LlmqflError as exc:
        print(f"llmqfl: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
