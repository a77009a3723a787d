"""Stage CLI: the server step of one federated LoRA round, a size-weighted mean of the client adapters.

    python -m llmqfl.stages.distill_aggregate --config CFG --round r --clients DIR... --out DIR
Each client DIR holds adapter/ and metrics.json (its n_train is the weight). Writes DIR/adapter/
and DIR/aggregate.json {round, n_clients, weights, parameters, bytes_up, bytes_down}.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmqfl.errors import DataError
from llmqfl.io import atomic_path, read_json, write_json
from llmqfl.llm.fedavg import average_adapters
from llmqfl.stages._cli import run_stage, stage_parser
from llmqfl.tracking import stage_run


def build_parser() -> argparse.ArgumentParser:
    p = stage_parser("distill_aggregate", __doc__ or "")
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--clients", nargs="+", required=True, help="client round folders (adapter/, metrics.json)")
    p.add_argument("--out", required=True)
    return p


def body(args: argparse.Namespace, config: dict[str, Any]) -> None:
    folders = [Path(c) for c in args.clients]
    for folder in folders:
        if not (folder / "metrics.json").is_file():
            raise DataError(f"{folder}: metrics.json not found")
    sizes = [int(read_json(f / "metrics.json")["n_train"]) for f in folders]
    start = time.perf_counter()
    out = Path(args.out)
    with stage_run(config, "distill", name=f"distill aggregate round_{args.round}",
                   tags={"llmqfl.round": str(args.round)}) as tracker:
        with atomic_path(out / "adapter") as tmp:
            result = average_adapters([f / "adapter" for f in folders], sizes, out=tmp)
        summary = {
            "round": args.round,
            "n_clients": result.n_clients,
            "client_sizes": sizes,
            "weights": result.weights,
            "parameters": result.parameters,
            "bytes_per_client": result.bytes_per_client,
            "bytes_up": result.bytes_per_client * result.n_clients,
            "bytes_down": result.bytes_per_client * result.n_clients,
            "seconds": time.perf_counter() - start,
        }
        write_json(out / "aggregate.json", summary)
        tracker.log_metrics({k: summary[k] for k in ("bytes_up", "bytes_down", "parameters")}, step=args.round)
        tracker.log_artifact(out / "aggregate.json")


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("distill_aggregate", build_parser(), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
