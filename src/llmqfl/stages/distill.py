"""Stage CLI: one client's LLM fine-tuning and teacher outputs.

    python -m llmqfl.stages.distill --config CFG --client K --partition client_K.parquet \
        --meta meta.json --test test.parquet --out results/EXP/distill/client_K
The final teacher is also scored on the server's test set (``--test``; by default ``test.parquet``
beside ``meta.json``): ``server_test_accuracy``, ``server_test_loss``, ``server_test_n`` in metrics.json.
``llm.federated_rounds`` R > 0 runs every client in one job instead (``llmqfl.stages.distill_federated``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from llmqfl.errors import ConfigError
from llmqfl.llm.client_job import load_client, run_client
from llmqfl.llm.model_assets import DEFAULT_MODELS_ROOT
from llmqfl.llm.server_test import default_path, load_server_test
from llmqfl.settings import Settings
from llmqfl.stages._cli import run_stage, stage_parser
from llmqfl.tracking import stage_run


def build_parser() -> argparse.ArgumentParser:
    p = stage_parser("distill", __doc__ or "")
    p.add_argument("--client", type=int, required=True)
    p.add_argument("--partition", required=True, help="results/EXP/partitions/client_K.parquet")
    p.add_argument("--meta", required=True, help="results/EXP/data/meta.json")
    p.add_argument("--test", help="the server's test set (default: test.parquet beside --meta)")
    p.add_argument("--no-server-test", action="store_true",
                   help="a site that keeps its data: no server test set here, the teacher is not scored on it")
    p.add_argument("--out", required=True, help="output folder: adapter/, teacher.parquet, metrics.json")
    p.add_argument("--models-root", default=str(DEFAULT_MODELS_ROOT))
    p.add_argument("--no-progress", action="store_true")
    return p


def body(args: argparse.Namespace, settings: Settings) -> None:
    if settings.llm.federated_rounds > 0:
        raise ConfigError("config error: llm.federated_rounds > 0 runs every client in one job: "
                          "python -m llmqfl.stages.distill_federated")
    data = load_client(args.partition, args.meta, client=args.client)
    test = None if args.no_server_test else load_server_test(args.test or default_path(args.meta), data.classes)
    tags = {"llmqfl.client": str(args.client)}
    with stage_run(settings, "distill", name=f"distill client_{args.client}", tags=tags) as tracker:
        run_client(settings, data, root_seed=settings.seed, client=args.client, out=args.out,
                   models_root=args.models_root, tracker=tracker, progress=not args.no_progress, test=test)


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("distill", build_parser(), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
