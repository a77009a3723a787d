"""Stage CLI: federated LoRA rounds (``llm.federated_rounds`` R > 0) of every client, in one job.

    python -m llmqfl.stages.distill_federated --config CFG --meta meta.json --test test.parquet \
        --out results/EXP/distill --partitions client_0.parquet client_1.parquet ...
Client k is the k-th partition. Writes ``out/client_k/{adapter, teacher.parquet, metrics.json}`` as the
single-client ``distill`` stage does (the adapter is the last global one) and ``out/rounds/`` (each
round's client adapters, the averaged one and its ``aggregate.json``); ``llmqfl.llm.federation`` says
why the rounds run in one process. The last global adapter is also scored on the server's test set
(``--test``; by default ``test.parquet`` beside ``meta.json``): ``server_test_*`` in every client's
metrics.json, equal across clients since they share that adapter.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from llmqfl.llm.client_job import load_client
from llmqfl.llm.federation import run_federation
from llmqfl.llm.model_assets import DEFAULT_MODELS_ROOT
from llmqfl.llm.server_test import default_path, load_server_test
from llmqfl.settings import Settings
from llmqfl.stages._cli import run_stage, stage_parser
from llmqfl.tracking import stage_run


def build_parser() -> argparse.ArgumentParser:
    p = stage_parser("distill_federated", __doc__ or "")
    p.add_argument("--partitions", nargs="+", required=True, help="client_K.parquet of every client, K = 0, 1, ...")
    p.add_argument("--meta", required=True, help="results/EXP/data/meta.json")
    p.add_argument("--test", help="the server's test set (default: test.parquet beside --meta)")
    p.add_argument("--out", required=True, help="the distill folder: client_K/ and rounds/")
    p.add_argument("--models-root", default=str(DEFAULT_MODELS_ROOT))
    p.add_argument("--no-progress", action="store_true")
    return p


def body(args: argparse.Namespace, settings: Settings) -> None:
    clients = [load_client(path, args.meta, client=k) for k, path in enumerate(args.partitions)]
    test = load_server_test(args.test or default_path(args.meta), clients[0].classes)

    def client_run(k: int) -> Any:
        return stage_run(settings, "distill", name=f"distill client_{k}", tags={"llmqfl.client": str(k)})

    rounds = str(settings.llm.federated_rounds)
    with stage_run(settings, "distill", name="distill federated rounds", tags={"llmqfl.round": rounds}) as tracker:
        run_federation(settings, clients, root_seed=settings.seed, out=args.out, models_root=args.models_root,
                       client_run=client_run, tracker=tracker, progress=not args.no_progress, test=test)


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("distill_federated", build_parser(), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
