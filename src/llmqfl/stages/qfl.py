"""Stage ``qfl``: federated quantum training runs of one arm, one per seed.

    python -m llmqfl.stages.qfl --config CFG --arm ARM --seed S [--seed S2 ...] --data-dir results/EXP/data \
        --partitions-dir results/EXP/partitions --distill-dir results/EXP/distill \
        [--embeddings results/EXP/features/embeddings.parquet] \
        [--schedule results/EXP/qfl/llm_guided/seed_S/history.parquet] \
        [--tau-reference results/EXP/qfl/baseline/seed_S/history.parquet] \
        [--cost-reference results/EXP/qfl/llm_guided/seed_S/history.parquet] \
        --out-dir results/EXP/qfl/ARM/seed_S [--resume]

With several ``--seed``, every path option may hold ``{seed}`` (the output folder must): the seeds run one
after another in this process, each with its own MLflow run, after every seed's inputs were checked.
Writes ``history.parquet``, ``weights.npy``, ``accounting.json`` and ``checkpoints/round_{r}.*`` (and,
on ``fake`` and ``ibm``, the job ledger ``checkpoints/jobs.ledger.jsonl``: :mod:`llmqfl.quantum.jobs.job_ledger`).
With ``federation.transport: flower`` the rounds run over Flower's deployment engine on this machine
(:mod:`llmqfl.federated.flower.launch`) and the outputs are the same files.
The arms (``llmqfl.contracts.ARMS``) and their semantics are in ``docs/method.md``; the run itself
is :mod:`llmqfl.federated.run`. Every input is checked before the first output (or MLflow run).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from llmqfl import tracking
from llmqfl.contracts import ARMS, BASELINE
from llmqfl.federated import run
from llmqfl.federated.inputs import RunPaths
from llmqfl.federated.run import build_plan, fingerprint  # noqa: F401  (the stage's public helpers)
from llmqfl.settings import Settings
from llmqfl.stages._cli import require_seed_field, run_stage, seed_runs, stage_parser

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = stage_parser("qfl", (__doc__ or "").splitlines()[0])
    p.add_argument("--arm", required=True, choices=ARMS)
    p.add_argument("--seed", required=True, type=int, action="append",
                   help="a comparison seed S (one of config.seeds); repeat it to run several in this process")
    p.add_argument("--data-dir", required=True, type=Path)
    p.add_argument("--partitions-dir", required=True, type=Path)
    p.add_argument("--distill-dir", required=True, type=Path, help="client_{k}/metrics.json and teacher.parquet")
    p.add_argument("--embeddings", type=Path, default=None, help="base-LLM embeddings (text features)")
    p.add_argument("--schedule", type=Path, default=None, help="llm_guided history.parquet (budget_matched)")
    p.add_argument("--tau-reference", type=Path, default=None,
                   help="baseline history.parquet of the same seed: sets tau (qfl.termination.llm_threshold_quantile)")
    p.add_argument("--cost-reference", type=Path, default=None,
                   help="llm_guided history.parquet of the same seed: equal_cost spends its total circuit executions")
    p.add_argument("--out-dir", required=True, type=Path)
    p.add_argument("--resume", action="store_true", help="continue from the last matching checkpoint")
    return p


PATH_OPTIONS = ("data_dir", "partitions_dir", "distill_dir", "embeddings", "schedule", "tau_reference",
                "cost_reference", "out_dir")


def paths_of(args: argparse.Namespace) -> RunPaths:
    return RunPaths(
        data_dir=args.data_dir,
        partitions_dir=args.partitions_dir,
        distill_dir=args.distill_dir,
        out_dir=args.out_dir,
        embeddings=args.embeddings,
        schedule=args.schedule,
        tau_reference=args.tau_reference,
        cost_reference=args.cost_reference,
    )


def body(args: argparse.Namespace, settings: Settings) -> None:
    require_seed_field(args, ["out_dir"])
    logging.getLogger("qiskit").setLevel(logging.WARNING)  # the transpiler logs every pass at INFO
    from llmqfl.planning import refuse_over_budget  # over backend.shot_budget / qpu_seconds_budget: stop here

    runs = []
    for seed, seed_args in seed_runs(args, PATH_OPTIONS):  # every seed's inputs checked before any output
        prepared = run.prepare(paths_of(seed_args), settings, args.arm, seed)
        refuse_over_budget(settings, arm=args.arm, seed=seed, clients=prepared.clients, server=prepared.server,
                           n_classes=prepared.model.n_classes, schedule=prepared.plan.schedule)
        runs.append((seed_args, prepared))
    for seed_args, prepared in runs:
        run_seed(seed_args, settings, prepared)


def run_seed(args: argparse.Namespace, settings: Settings, prepared: run.Prepared) -> None:
    """One seed's run: train, write the outputs, log the run and its model to MLflow."""
    tags = {"llmqfl.arm": args.arm, "llmqfl.seed": str(args.seed)}
    start = time.perf_counter()
    with (
        run.open_backend(prepared) as backend,
        tracking.stage_run(settings, "qfl", name=f"qfl {args.arm} seed {args.seed}", tags=tags) as run_log,
    ):
        from llmqfl.quantum.jobs.job_ledger import attach_ledger  # fake, ibm: every job on disk; a resume replays them

        ledger = attach_ledger(backend, args.out_dir / "checkpoints", fingerprint=prepared.fingerprint,
                               resume=args.resume, meta={"arm": args.arm, "seed": args.seed})
        run_log.log_params(
            {
                "qfl.arm": args.arm,
                "qfl.seed": args.seed,
                "qfl.derived_seed": prepared.base_seed,
                "qfl.n_params": prepared.model.n_params,
                "qfl.features.resolved_source": prepared.features.source,
                "qfl.rounds_planned": prepared.plan.rounds,
            }
        )
        if settings.federation.transport == "flower":  # the same run over Flower
            from llmqfl.federated.flower.launch import execute_flower

            result, accounting = execute_flower(
                prepared, out_dir=args.out_dir, resume=args.resume, log_metrics=run_log.log_metrics
            )
        else:
            result, accounting = run.execute(
                prepared, backend, out_dir=args.out_dir, resume=args.resume, log_metrics=run_log.log_metrics
            )
        accounting["references"] = {"feature_ceiling": run.feature_ceiling(prepared)}
        if settings.qfl.references and args.arm == BASELINE:  # once per seed: the run's own bounds
            from llmqfl.federated.student_references import student_references

            accounting["references"]["student"] = student_references(prepared, backend)
        if ledger is not None:  # jobs this process submitted vs answered from the ledger
            accounting["job_ledger"] = ledger.summary()
        from llmqfl.quantum.backends.mitigation import accounting_entry  # runtime options; readout calibration's cost

        mitigation = accounting_entry(backend)
        if mitigation is not None:
            accounting["mitigation"] = mitigation
        for path in run.write_outputs(args.out_dir, result, accounting):
            run_log.log_artifact(path)
        summary = run.final_metrics(result, accounting)
        run_log.log_metrics(summary)
        run_log.set_tags({"llmqfl.stop_reason": result.stop_reason or "none"})
        from llmqfl.serving.record import record_qfl_model  # out_dir/model/ and the MLflow logged model

        record_qfl_model(
            run_log, config=settings, data_dir=args.data_dir, out_dir=args.out_dir, model=prepared.model,
            weights=result.weights, features=prepared.features,
            info={"arm": args.arm, "seed": args.seed, "backend": settings.backend.kind,
                  "rounds_run": result.rounds_run,
                  "final_server_test_accuracy": summary["final_server_test_accuracy"]},
        )  # fmt: skip
    log.info(
        "%s seed %d: %d rounds%s, final server test accuracy %.3f, %.1f s",
        args.arm,
        args.seed,
        result.rounds_run,
        f" (stopped: {result.stop_reason})" if result.stop_reason else "",
        summary["final_server_test_accuracy"],
        time.perf_counter() - start,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("qfl", build_parser(), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
