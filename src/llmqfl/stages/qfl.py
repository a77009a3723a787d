"""Stage ``qfl``: one federated quantum training run for one arm and one seed.

    python -m llmqfl.stages.qfl --config CFG --arm ARM --seed S --data-dir results/EXP/data \
        --partitions-dir results/EXP/partitions --distill-dir results/EXP/distill \
        [--embeddings results/EXP/features/embeddings.parquet] \
        [--schedule results/EXP/qfl/llm_guided/seed_S/history.parquet] \
        --out-dir results/EXP/qfl/ARM/seed_S [--resume]

Writes ``history.parquet``, ``weights.npy``, ``accounting.json`` and ``checkpoints/round_{r}.*``.
Arms: ``baseline`` (no LLM: guidance none, no distillation, fixed maxiter, all ``federation.rounds``),
``llm_guided`` (the config's guidance rule, distillation weight and termination criteria, with
every client's LLM metrics and teacher outputs), ``budget_matched`` (no LLM; replays who trained
and with which maxiter in each round of ``llm_guided``'s history for the same seed, for as many
rounds as it ran). Early termination (LLM threshold, plateau) belongs to ``llm_guided`` only; the
shot budget (``backend.shot_budget``) applies to every arm.

Seeds: every arm uses ``derive_seed(config.seed, "qfl", S)`` as its root, so the three arms of a
seed share the initial weights, the per-(client, round) optimizer seeds and the selection RNG; a
difference between arms is then the arm's doing, not the draw's. Every input is checked before the
first output (or MLflow run) is made.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmqfl import tracking
from llmqfl.config import derive_seed
from llmqfl.errors import ConfigError, DataError
from llmqfl.federated.accounting import accounting_summary, round_metrics
from llmqfl.federated.client import Client, ClientData
from llmqfl.federated.features import FeatureSets, build_features, resolve_source
from llmqfl.federated.schedule import Schedule, load_schedule
from llmqfl.federated.server import Federation, FederationPlan, FederationResult, ServerData
from llmqfl.federated.termination import TerminationConfig
from llmqfl.federated.threshold import resolve_threshold
from llmqfl.io import atomic_path, read_json, read_parquet, write_json, write_parquet
from llmqfl.provenance import QFL_CODE, code_digest
from llmqfl.stages._cli import run_stage, stage_parser

log = logging.getLogger("llmqfl.qfl")
ARMS = ("baseline", "llm_guided", "budget_matched")
SPLITS = ("train", "test", "server_val")


def parser() -> argparse.ArgumentParser:
    p = stage_parser("qfl", (__doc__ or "").splitlines()[0])
    p.add_argument("--arm", required=True, choices=ARMS)
    p.add_argument("--seed", required=True, type=int, help="the comparison seed S (one of config.seeds)")
    p.add_argument("--data-dir", required=True, type=Path)
    p.add_argument("--partitions-dir", required=True, type=Path)
    p.add_argument("--distill-dir", required=True, type=Path, help="client_{k}/metrics.json and teacher.parquet")
    p.add_argument("--embeddings", type=Path, default=None, help="base-LLM embeddings (text features)")
    p.add_argument("--schedule", type=Path, default=None, help="llm_guided history.parquet (budget_matched)")
    p.add_argument("--tau-reference", type=Path, default=None,
                   help="baseline history.parquet of the same seed: sets tau (qfl.termination.llm_threshold_quantile)")
    p.add_argument("--out-dir", required=True, type=Path)
    p.add_argument("--resume", action="store_true", help="continue from the last matching checkpoint")
    return p


@dataclass(frozen=True)
class Inputs:
    """Everything a run reads, loaded and checked."""

    meta: dict[str, Any]
    data: dict[str, pd.DataFrame]
    partitions: dict[int, pd.DataFrame]
    llm_metrics: dict[int, dict[str, Any]]
    teachers: dict[int, pd.DataFrame]
    embeddings: pd.DataFrame | None
    schedule: Schedule | None


# -- inputs --------------------------------------------------------------------------------------
def _read_parquet(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"input file not found: {path}")
    frame = read_parquet(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"input file not found: {path}")
    try:
        return read_json(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read JSON: {exc}") from exc


def _uses_llm(arm: str) -> bool:
    return arm == "llm_guided"


def load_inputs(args: argparse.Namespace, config: dict[str, Any]) -> Inputs:
    """Read and check every input file the arm needs; nothing is written."""
    qfl = config["qfl"]
    meta = _read_json(args.data_dir / "meta.json")
    data = {split: _read_parquet(args.data_dir / f"{split}.parquet", ("row", "item", "label")) for split in SPLITS}
    n_clients = config["federation"]["n_clients"]
    summary = _read_json(args.partitions_dir / "partitions.json")
    if int(summary.get("n_clients", -1)) != n_clients:
        raise DataError(
            f"{args.partitions_dir / 'partitions.json'}: n_clients {summary.get('n_clients')} != "
            f"federation.n_clients {n_clients}"
        )
    partitions = {
        k: _read_parquet(args.partitions_dir / f"client_{k}.parquet", ("row", "label", "split"))
        for k in range(n_clients)
    }
    llm_metrics: dict[int, dict[str, Any]] = {}
    teachers: dict[int, pd.DataFrame] = {}
    if _uses_llm(args.arm):
        signal = qfl["guidance"]["signal"]
        for k in range(n_clients):
            path = args.distill_dir / f"client_{k}" / "metrics.json"
            metrics = _read_json(path)
            value = metrics.get(signal)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise DataError(f"{path}: {signal} must be a positive number (qfl.guidance.signal), got {value!r}")
            llm_metrics[k] = metrics
            if qfl["distillation"]["weight"] > 0:
                teachers[k] = _read_parquet(args.distill_dir / f"client_{k}" / "teacher.parquet", ("row", "probs"))
    embeddings = None
    if args.embeddings is not None:
        embeddings = _read_parquet(args.embeddings, ("split", "row", "embedding"))
    schedule = None
    if args.arm == "budget_matched":
        if args.schedule is None:
            raise ConfigError("budget_matched needs --schedule (the llm_guided history.parquet of the same seed)")
        schedule = load_schedule(args.schedule, clients=list(range(n_clients)))
    return Inputs(meta, data, partitions, llm_metrics, teachers, embeddings, schedule)


# -- building the federation ---------------------------------------------------------------------
def _features(inputs: Inputs, config: dict[str, Any], embeddings_path: Path | None) -> FeatureSets:
    qfl, data_cfg = config["qfl"], config["data"]
    feature_columns = data_cfg.get("feature_columns") or inputs.meta.get("feature_columns") or None
    kind = inputs.meta.get("kind", "text")
    source = resolve_source(qfl["features"]["source"], kind=kind, feature_columns=feature_columns)
    if source == "embedding" and inputs.embeddings is None:
        raise ConfigError(
            "text items need the base-LLM embeddings as quantum features: pass --embeddings "
            "results/{exp}/features/embeddings.parquet"
        )
    return build_features(
        source=source,
        fit=qfl["features"]["fit"],
        n_qubits=qfl["n_qubits"],
        data=inputs.data,
        partitions=inputs.partitions,
        embeddings=inputs.embeddings,
        embeddings_path=embeddings_path or "embeddings.parquet",
        feature_columns=feature_columns,
    )


def _labels(frame: pd.DataFrame, n_classes: int, source: str) -> np.ndarray:
    labels = frame["label"].to_numpy(dtype=np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"{source}: column label must lie in 0..{n_classes - 1}")
    return labels


def _teacher_probs(teacher: pd.DataFrame, rows: np.ndarray, n_classes: int, source: str) -> np.ndarray:
    by_row = dict(zip(teacher["row"].astype(int), teacher["probs"], strict=True))
    missing = [int(r) for r in rows if int(r) not in by_row]
    if missing:
        raise DataError(f"{source}: no teacher probabilities for train row(s) {missing[:5]}")
    probs = np.stack([np.asarray(by_row[int(r)], dtype=np.float64) for r in rows])
    if probs.shape[1] != n_classes:
        raise DataError(f"{source}: probs have {probs.shape[1]} classes, the data have {n_classes}")
    if np.any(probs < 0) or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4):
        raise DataError(f"{source}: probs rows must be probability distributions")
    return probs / probs.sum(axis=1, keepdims=True)  # float32 storage: renormalise in float64


def build_client_data(
    inputs: Inputs, features: FeatureSets, config: dict[str, Any], arm: str, args: argparse.Namespace
) -> list[ClientData]:
    """Each client's features, labels (from train.parquet by row), and LLM outputs for the LLM arm."""
    n_classes = int(inputs.meta["n_classes"])
    train_labels = _labels(inputs.data["train"].sort_values("row"), n_classes, "train.parquet")
    signal = config["qfl"]["guidance"]["signal"]
    out = []
    for k, partition in sorted(inputs.partitions.items()):
        split = partition["split"].astype(str).to_numpy()
        rows = partition["row"].to_numpy(dtype=np.int64)
        train_rows, test_rows = rows[split == "train"], rows[split == "test"]
        if len(train_rows) == 0:
            raise DataError(f"{args.partitions_dir / f'client_{k}.parquet'}: client {k} has no train items")
        teacher = None
        if k in inputs.teachers:
            teacher = _teacher_probs(
                inputs.teachers[k], train_rows, n_classes, str(args.distill_dir / f"client_{k}" / "teacher.parquet")
            )
        llm_loss = float(inputs.llm_metrics[k][signal]) if _uses_llm(arm) else math.nan
        out.append(
            ClientData(
                client=k,
                train_x=features.clients[k].train,
                train_y=train_labels[train_rows],
                test_x=features.clients[k].test,
                test_y=train_labels[test_rows],
                teacher_probs=teacher,
                llm_loss=llm_loss,
            )
        )
    return out


def build_plan(config: dict[str, Any], arm: str, schedule: Schedule | None) -> FederationPlan:
    """The arm's plan (see the module docstring for the arm semantics)."""
    qfl, federation, backend = config["qfl"], config["federation"], config["backend"]
    optimizer, termination = qfl["optimizer"], qfl["termination"]
    llm = _uses_llm(arm)
    return FederationPlan(
        rounds=schedule.rounds if schedule is not None else federation["rounds"],
        initial_maxiter=optimizer["maxiter"],
        max_maxiter=optimizer["max_maxiter"],
        guidance_rule=qfl["guidance"]["rule"] if llm else "none",
        max_increment=qfl["guidance"]["max_increment"],
        quantum_loss_scale=1.0 / math.log(2) if qfl["guidance"]["quantum_loss_unit"] == "bits" else 1.0,
        selection=federation["selection"]["kind"],
        fraction=federation["selection"]["fraction"],
        termination=TerminationConfig(
            llm_threshold=termination["llm_threshold"] if llm else None,
            plateau_rounds=termination["plateau_rounds"] if llm else None,
            plateau_tolerance=termination["plateau_tolerance"],
            shot_budget=backend["shot_budget"],
        ),
        schedule=schedule,
    )


def _validate_budget(config: dict[str, Any]) -> None:
    optimizer, selection = config["qfl"]["optimizer"], config["federation"]["selection"]
    if optimizer["maxiter"] < 1:
        raise ConfigError(f"config error: qfl.optimizer.maxiter: must be >= 1, got {optimizer['maxiter']}")
    if not 0 < selection["fraction"] <= 1:
        raise ConfigError(
            f"config error: federation.selection.fraction: must be in (0, 1], got {selection['fraction']}"
        )


def _quantum(config: dict[str, Any], n_classes: int, base_seed: int) -> tuple[Any, Any, Any]:
    """Model, backend (None for the exact simulator) and evaluator; checks the backend's qubit count."""
    from llmqfl.quantum import build_model, make_evaluator

    qfl, backend_cfg = config["qfl"], config["backend"]
    model_kwargs = {"readout": qfl["readout"]} if "readout" in qfl else {}
    model = build_model(
        kind=qfl["model"],
        n_qubits=qfl["n_qubits"],
        n_classes=n_classes,
        feature_map_reps=qfl["feature_map_reps"],
        ansatz_reps=qfl["ansatz_reps"],
        **model_kwargs,
    )
    backend = None
    if not (backend_cfg["kind"] == "aer" and backend_cfg["shots"] is None):
        from llmqfl.quantum.backends import make_backend

        backend = make_backend(backend_cfg, seed=derive_seed(base_seed, "backend"), n_qubits=model.n_qubits)
        available = getattr(backend, "num_qubits", None)
        if available is not None and model.n_qubits > int(available):
            backend.close()
            raise ConfigError(
                f"config error: qfl.n_qubits: the model needs {model.n_qubits} qubits, "
                f"backend {backend_cfg['kind']} {backend_cfg['name'] or ''} has {available}".replace("  ", " ")
            )
    return model, backend, make_evaluator(model, backend=backend, seed=derive_seed(base_seed, "evaluator"))


def initial_weights(config: dict[str, Any], n_params: int, base_seed: int) -> np.ndarray:
    """``qfl.initial_point`` as a constant (the paper: 0.5), else uniform on [-pi, pi) from the seed."""
    constant = config["qfl"]["initial_point"]
    if constant is not None:
        return np.full(n_params, float(constant))
    return np.random.default_rng(derive_seed(base_seed, "init")).uniform(-np.pi, np.pi, n_params)


def fingerprint(
    config: dict[str, Any],
    arm: str,
    seed: int,
    clients: list[ClientData],
    server: ServerData,
    plan: FederationPlan,
    weights: np.ndarray,
) -> str:
    """Digest of every input of the run: a checkpoint is reused only for the same digest."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"config": config, "arm": arm, "seed": seed}, sort_keys=True, default=str).encode())
    digest.update(code_digest(*QFL_CODE).encode())  # rounds computed by other code are not resumed
    arrays = [weights, server.val_x, server.val_y, server.test_x, server.test_y, np.array([server.llm_loss])]
    for c in clients:
        arrays += [c.train_x, c.train_y, c.test_x, c.test_y, np.array([c.llm_loss])]
        arrays += [c.teacher_probs] if c.teacher_probs is not None else []
    for array in arrays:
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    if plan.schedule is not None:
        digest.update(json.dumps(sorted((list(k), v) for k, v in plan.schedule.maxiter.items())).encode())
        digest.update(json.dumps(sorted(plan.schedule.selected.items())).encode())
    return digest.hexdigest()


# -- the stage -----------------------------------------------------------------------------------
def prepare(args: argparse.Namespace, config: dict[str, Any]) -> dict[str, Any]:
    """Load and check everything; build the federation. No output is written."""
    if args.arm not in ARMS:
        raise ConfigError(f"--arm: {args.arm!r} is not one of: {', '.join(ARMS)}")
    if args.seed < 0:
        raise ConfigError(f"--seed: must be >= 0, got {args.seed}")
    _validate_budget(config)
    inputs = load_inputs(args, config)
    n_classes = int(inputs.meta["n_classes"])
    features = _features(inputs, config, args.embeddings)
    clients_data = build_client_data(inputs, features, config, args.arm, args)
    sizes = np.array([c.n_train for c in clients_data], dtype=np.float64)
    llm_losses = np.array([c.llm_loss for c in clients_data])
    server_llm = float(np.dot(sizes, llm_losses) / sizes.sum()) if _uses_llm(args.arm) else math.nan
    server = ServerData(
        val_x=features.server_val,
        val_y=_labels(inputs.data["server_val"].sort_values("row"), n_classes, "server_val.parquet"),
        test_x=features.server_test,
        test_y=_labels(inputs.data["test"].sort_values("row"), n_classes, "test.parquet"),
        llm_loss=server_llm,
    )
    if _uses_llm(args.arm):  # tau from the data (llmqfl.federated.threshold); replaces llm_threshold
        config, tau = resolve_threshold(config, args.tau_reference, server_llm)
        if tau is not None:
            log.info("termination threshold tau = %.4g nats (from %s)", tau, args.tau_reference)
    plan = build_plan(config, args.arm, inputs.schedule)
    if _uses_llm(args.arm) and config["qfl"]["distillation"]["weight"] > 0:
        missing = [c.client for c in clients_data if c.teacher_probs is None]
        if missing:
            raise DataError(f"distillation needs teacher.parquet for clients {missing}")
    base_seed = derive_seed(config["seed"], "qfl", args.seed)
    model, backend, evaluator = _quantum(config, n_classes, base_seed)
    weights = initial_weights(config, model.n_params, base_seed)
    return {
        "clients_data": clients_data,
        "server": server,
        "plan": plan,
        "model": model,
        "backend": backend,
        "evaluator": evaluator,
        "weights": weights,
        "base_seed": base_seed,
        "features": features,
        "fingerprint": fingerprint(config, args.arm, args.seed, clients_data, server, plan, weights),
    }


def _trainer(config: dict[str, Any]) -> Any:
    from llmqfl.quantum import train_local

    optimizer = config["qfl"]["optimizer"]
    return partial(train_local, optimizer=optimizer["name"], learning_rate=optimizer["learning_rate"])


def _on_start(state: Any, *, run_log: tracking.StageRun, backend: Any) -> None:
    """A resumed run: log the restored rounds to MLflow, and charge their shots to the backend's budget."""
    for round_index in range(1, state.round + 1):
        run_log.log_metrics(round_metrics([r for r in state.rows if r["round"] == round_index]), step=round_index)
    budget = getattr(backend, "shot_budget", None)
    if budget is not None and state.shots_used:
        backend.shot_budget = max(0, int(budget) - int(state.shots_used))


def _budget_errors(backend: Any) -> tuple[type[BaseException], ...]:
    """The backend's "shot budget would be overrun" error: it ends the run after the last full round."""
    if backend is None:
        return ()
    from llmqfl.quantum.backends import ShotBudgetExceeded

    return (ShotBudgetExceeded,)


def write_outputs(out_dir: Path, result: FederationResult, accounting: dict[str, Any]) -> None:
    """history.parquet, weights.npy and accounting.json, each written atomically."""
    write_parquet(out_dir / "history.parquet", result.history)
    with atomic_path(out_dir / "weights.npy") as tmp, tmp.open("wb") as handle:
        np.save(handle, result.weights)
    write_json(out_dir / "accounting.json", accounting)


def body(args: argparse.Namespace, config: dict[str, Any]) -> None:
    logging.getLogger("qiskit").setLevel(logging.WARNING)  # the transpiler logs every pass at INFO
    built = prepare(args, config)
    distill = config["qfl"]["distillation"]
    llm = _uses_llm(args.arm)
    clients = [
        Client(
            data,
            trainer=_trainer(config),
            distill_weight=distill["weight"] if llm else 0.0,
            temperature=distill["temperature"],
        )
        for data in built["clients_data"]
    ]
    tags = {"llmqfl.arm": args.arm, "llmqfl.seed": str(args.seed)}
    start = time.perf_counter()
    try:
        with tracking.stage_run(config, "qfl", name=f"qfl {args.arm} seed {args.seed}", tags=tags) as run_log:
            run_log.log_params(
                {
                    "qfl.arm": args.arm,
                    "qfl.seed": args.seed,
                    "qfl.derived_seed": built["base_seed"],
                    "qfl.n_params": built["model"].n_params,
                    "qfl.features.resolved_source": built["features"].source,
                    "qfl.rounds_planned": built["plan"].rounds,
                }
            )
            federation = Federation(
                clients=clients,
                server=built["server"],
                evaluator=built["evaluator"],
                plan=built["plan"],
                seed=built["base_seed"],
                initial_weights=built["weights"],
                checkpoint_dir=args.out_dir / "checkpoints",
                fingerprint=built["fingerprint"],
                on_round=lambda r, rows: run_log.log_metrics(round_metrics(rows), step=r),
                on_start=partial(_on_start, run_log=run_log, backend=built["backend"]),
                budget_errors=_budget_errors(built["backend"]),
            )
            result = federation.run(resume=args.resume)
            accounting = accounting_summary(
                result.history, arm=args.arm, seed=args.seed, stop_reason=result.stop_reason
            )
            if result.aborted:  # work of the round the shot budget cut short: spent, but in no history row
                accounting["aborted_round"] = result.aborted
            write_outputs(args.out_dir, result, accounting)
            final = result.history[result.history["client"] == -1].iloc[-1]
            run_log.log_metrics(
                {
                    "rounds_run": result.rounds_run,
                    "final_server_test_accuracy": float(final["test_accuracy"]),
                    "final_server_test_f1": float(final["test_f1"]),
                    "final_server_val_loss": float(final["loss"]),
                    **{f"total_{k}": float(v) for k, v in accounting["totals"].items()},
                }
            )
            run_log.set_tags({"llmqfl.stop_reason": result.stop_reason or "none"})
            for name in ("history.parquet", "weights.npy", "accounting.json"):
                run_log.log_artifact(args.out_dir / name)
    finally:
        if built["backend"] is not None:
            built["backend"].close()
    log.info(
        "%s seed %d: %d rounds%s, final server test accuracy %.3f, %.1f s",
        args.arm,
        args.seed,
        result.rounds_run,
        f" (stopped: {result.stop_reason})" if result.stop_reason else "",
        float(final["test_accuracy"]),
        time.perf_counter() - start,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("qfl", parser(), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
