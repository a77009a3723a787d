"""Stage CLI: one client's LLM fine-tuning and teacher outputs.

    python -m llmqfl.stages.distill --config CFG --client K --partition client_K.parquet \
        --meta meta.json --out results/EXP/distill/client_K
Federated adapters (``llm.federated_rounds`` R > 0): ``--round r`` jobs train from the previous
round's global adapter (``--init-adapter``) and write only adapter/ and metrics.json; the final
job evaluates the last global adapter (``--evaluate-only``) and records the rounds' traffic
(``--aggregates`` = the rounds' aggregate.json files).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmqfl.io import read_json, write_json
from llmqfl.llm.assets import DEFAULT_MODELS_ROOT
from llmqfl.llm.client import load_client, run_client
from llmqfl.stages._cli import run_stage, stage_parser
from llmqfl.tracking import stage_run


def build_parser() -> argparse.ArgumentParser:
    p = stage_parser("distill", __doc__ or "")
    p.add_argument("--client", type=int, required=True)
    p.add_argument("--partition", required=True, help="results/EXP/partitions/client_K.parquet")
    p.add_argument("--meta", required=True, help="results/EXP/data/meta.json")
    p.add_argument("--out", required=True, help="output folder: adapter/, teacher.parquet, metrics.json")
    p.add_argument("--models-root", default=str(DEFAULT_MODELS_ROOT))
    p.add_argument("--round", type=int, default=None, help="federated round (1-based): no teacher outputs")
    p.add_argument("--init-adapter", default=None, help="start from this adapter (the previous global one)")
    p.add_argument("--evaluate-only", action="store_true", help="no training: outputs of --init-adapter")
    p.add_argument("--aggregates", nargs="*", default=[], help="aggregate.json of every federated round")
    p.add_argument("--no-progress", action="store_true")
    return p


def body(args: argparse.Namespace, config: dict[str, Any]) -> None:
    data = load_client(args.partition, args.meta, client=args.client)
    if args.init_adapter is not None:  # a missing or damaged adapter folder: one line, before the model loads
        read_json(Path(args.init_adapter) / "adapter_config.json")
    name = f"client_{args.client}" if args.round is None else f"client_{args.client}_round_{args.round}"
    tags = {"llmqfl.client": str(args.client), "llmqfl.round": str(args.round or 0)}
    with stage_run(config, "distill", name=f"distill {name}", tags=tags) as tracker:
        metrics = run_client(
            config["llm"], data, root_seed=config["seed"], client=args.client, out=args.out,
            round_index=args.round, init_adapter=args.init_adapter, train=not args.evaluate_only,
            teacher=args.round is None, models_root=args.models_root, tracker=tracker,
            progress=not args.no_progress,
        )
        if args.aggregates:
            metrics["federated"] = _federated_summary(args.aggregates)
            metrics.update(_training_cost(args.aggregates, args.client, metrics))
            write_json(f"{args.out}/metrics.json", metrics)
            tracker.log_artifact(f"{args.out}/metrics.json")


def _federated_summary(paths: Sequence[str]) -> dict[str, Any]:
    rounds = sorted((read_json(p) for p in paths), key=lambda r: r["round"])
    return {
        "rounds": len(rounds),
        "bytes_up_per_round": [r["bytes_up"] for r in rounds],
        "bytes_down_per_round": [r["bytes_down"] for r in rounds],
        "bytes_total": sum(r["bytes_up"] + r["bytes_down"] for r in rounds),
    }


def _training_cost(aggregates: Sequence[str], client: int, metrics: dict[str, Any]) -> dict[str, Any]:
    """This client's fine-tuning cost over its round jobs (each round folder beside the aggregate's).

    The evaluating job alone trains nothing; C6 compares what the client spent fine-tuning with a full
    fine-tuning of the same data, so ``seconds`` sums the round jobs and this one, and
    ``peak_memory_mb`` is the largest of them (``evaluation_seconds``: this job alone).
    """
    rounds = [read_json(Path(a).parent.parent / f"client_{client}" / "metrics.json") for a in aggregates]
    peaks = [m["peak_memory_mb"] for m in (*rounds, metrics) if m.get("peak_memory_mb") is not None]
    return {
        "evaluation_seconds": metrics["seconds"],
        "seconds": metrics["seconds"] + sum(float(m["seconds"]) for m in rounds),
        "peak_memory_mb": max(peaks) if peaks else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("distill", build_parser(), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
