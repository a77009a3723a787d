"""One QFL run for one arm and one seed, as package functions the ``qfl`` stage CLI calls.

:func:`prepare` reads and checks every input and builds the typed objects (clients, server, plan,
model, initial weights, the checkpoint fingerprint) without writing anything; :func:`open_backend`
opens the quantum backend as a context manager (checked against the model's width, always closed);
:func:`execute` runs the rounds and returns the result with its accounting; :func:`write_outputs`
writes the stage's files. Arm semantics: ``docs/method.md``; file contract: ``docs/architecture.md``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from llmqfl import layout, provenance
from llmqfl.config import derive_seed, without_runtime_settings
from llmqfl.contracts import (
    EQUAL_COST,
    LOSS_STOPPING,
    SERVER,
    check_arm,
    check_qubit_fit,
    remaining_budget,
    uses_llm,
)
from llmqfl.errors import ConfigError
from llmqfl.federated.accounting import accounting_summary, round_metrics
from llmqfl.federated.client import Client, ClientData
from llmqfl.federated.cost_budget import CostBudget, total_circuits
from llmqfl.federated.features import FeatureSets
from llmqfl.federated.inputs import RunPaths, build_client_data, features_of, labels_of, load_inputs
from llmqfl.federated.lockstep import LockstepFederation, ReportFit
from llmqfl.federated.privacy import ClientLevelDP, accounting_entry
from llmqfl.federated.schedule import Schedule
from llmqfl.federated.server import Federation, FederationPlan, FederationResult, ServerData
from llmqfl.federated.termination import TerminationConfig
from llmqfl.federated.threshold import loss_delta_tau
from llmqfl.io import atomic_path, write_json, write_parquet
from llmqfl.registry import trait
from llmqfl.settings import Settings

log = logging.getLogger(__name__)
MetricsLogger = Callable[..., None]


@dataclass(frozen=True)
class Prepared:
    """Everything a run needs, built and checked before any output is made."""

    arm: str
    seed: int
    base_seed: int
    config: Settings  # the run's settings (llm_guided: llm_threshold resolved from --tau-reference)
    clients: list[ClientData]
    server: ServerData
    plan: FederationPlan
    model: Any  # llmqfl.quantum.QuantumModel
    weights: np.ndarray
    features: FeatureSets
    fingerprint: str


def build_plan(
    settings: Settings,
    arm: str,
    schedule: Schedule | None,
    *,
    cost_budget: CostBudget | None = None,
    loss_delta: float | None = None,
) -> FederationPlan:
    """The arm's plan: only ``llm_guided`` gets guidance and LLM termination; every arm the shot budget;
    ``equal_cost`` spreads ``cost_budget``, ``loss_stopping`` stops on its own loss (``loss_delta``)."""
    qfl, federation = settings.qfl, settings.federation
    optimizer, guidance, termination = qfl.optimizer, qfl.guidance, qfl.termination
    llm = uses_llm(arm)
    return FederationPlan(
        rounds=schedule.rounds if schedule is not None else federation.rounds,
        initial_maxiter=optimizer.maxiter,
        max_maxiter=optimizer.max_maxiter,
        guidance_rule=guidance.rule if llm else "none",
        max_increment=guidance.max_increment,
        quantum_loss_scale=1.0 / math.log(2) if guidance.quantum_loss_unit == "bits" else 1.0,
        selection=federation.selection.kind,
        fraction=federation.selection.fraction,
        aggregator=federation.aggregator,
        termination=TerminationConfig(
            llm_threshold=termination.llm_threshold if llm else None,
            loss_delta=loss_delta,
            plateau_rounds=termination.plateau_rounds if llm else None,
            plateau_tolerance=termination.plateau_tolerance,
            shot_budget=settings.backend.shot_budget,
            tests=termination.tests if llm else (),
        ),
        schedule=schedule,
        cost_budget=cost_budget,
        privacy=ClientLevelDP.from_config(settings),
    )


def build_model(settings: Settings, n_classes: int) -> Any:
    """The configured quantum model (``qfl.model``, ``qfl.feature_map``, ``qfl.ansatz``)."""
    from llmqfl.quantum import configured_model

    return configured_model(settings.qfl, n_classes)


def initial_weights(settings: Settings, n_params: int, base_seed: int) -> np.ndarray:
    """``qfl.initial_point`` as a constant (the paper: 0.5), else uniform on [-pi, pi) from the seed."""
    constant = settings.qfl.initial_point
    if constant is not None:
        return np.full(n_params, float(constant))
    return np.random.default_rng(derive_seed(base_seed, "init")).uniform(-np.pi, np.pi, n_params)


def fingerprint(
    settings: Settings,
    arm: str,
    seed: int,
    clients: list[ClientData],
    server: ServerData,
    plan: FederationPlan,
    weights: np.ndarray,
) -> str:
    """Digest of every input of the run: a checkpoint is reused only for the same digest."""
    digest = hashlib.sha256()
    config = without_runtime_settings(settings.as_config())  # thread counts change no number: a resume stays one
    digest.update(json.dumps({"config": config, "arm": arm, "seed": seed}, sort_keys=True, default=str).encode())
    digest.update(provenance.stage_digest("qfl").encode())  # rounds computed by other code are not resumed
    for module in settings.extensions:  # nor rounds of an older version of an extension
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin and Path(spec.origin).is_file():
            digest.update(Path(spec.origin).read_bytes())
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


def prepare(paths: RunPaths, settings: Settings, arm: str, seed: int) -> Prepared:
    """Load and check everything; build the federation's parts. No output is written.

    ``settings`` were validated (maxiter, the selection fraction and the extension names included).
    """
    check_arm(arm)
    if seed < 0:
        raise ConfigError(f"--seed: must be >= 0, got {seed}")
    inputs = load_inputs(paths, settings, arm)
    n_classes = int(inputs.meta["n_classes"])
    features = features_of(inputs, settings, paths.embeddings)
    clients = build_client_data(inputs, features, settings, arm, paths)
    sizes = np.array([c.n_train for c in clients], dtype=np.float64)
    llm_losses = np.array([c.llm_loss for c in clients])
    server_llm = float(np.dot(sizes, llm_losses) / sizes.sum()) if uses_llm(arm) else math.nan
    server = ServerData(
        val_x=features.server_val,
        val_y=labels_of(inputs.data["server_val"].sort_values("row"), n_classes, "server_val.parquet"),
        test_x=features.server_test,
        test_y=labels_of(inputs.data["test"].sort_values("row"), n_classes, "test.parquet"),
        llm_loss=server_llm,
    )
    if uses_llm(arm):  # tau from the data (llmqfl.federated.threshold); replaces llm_threshold
        from llmqfl.federated.threshold import resolve_threshold

        settings, tau = resolve_threshold(settings, paths.tau_reference, server_llm)
        if tau is not None:
            log.info("termination threshold tau = %.4g nats (from %s)", tau, paths.tau_reference)
    model = build_model(settings, n_classes)
    plan = build_plan(settings, arm, inputs.schedule, **_control_settings(paths, settings, arm, model.n_params))
    if plan.privacy is not None:  # a noise level the accountant cannot bound stops the run before round 1
        log.info("privacy.quantum: epsilon %.4g at delta %g if all %d rounds run",
                 plan.privacy.epsilon(plan.rounds), plan.privacy.delta, plan.rounds)
    base_seed = derive_seed(settings.seed, "qfl", seed)
    weights = initial_weights(settings, model.n_params, base_seed)
    digest = fingerprint(settings, arm, seed, clients, server, plan, weights)
    return Prepared(arm, seed, base_seed, settings, clients, server, plan, model, weights, features, digest)


def _control_settings(paths: RunPaths, settings: Settings, arm: str, n_params: int) -> dict[str, Any]:
    """The no-LLM controls' inputs: equal_cost's budget (L's total circuits), loss_stopping's tau."""
    if arm == EQUAL_COST:
        if paths.cost_reference is None:
            raise ConfigError("the equal_cost arm needs --cost-reference (the llm_guided history of the same seed)")
        total = total_circuits(paths.cost_reference)
        log.info("equal_cost: %d circuit executions to spread (from %s)", total, paths.cost_reference)
        return {"cost_budget": CostBudget(total, settings.qfl.optimizer.name, n_params=n_params)}
    if arm == LOSS_STOPPING:
        tau = loss_delta_tau(settings, paths.tau_reference)
        log.info("loss_stopping: tau_delta = %.4g nats (from %s)", tau, paths.tau_reference)
        return {"loss_delta": tau}
    return {}


@contextmanager
def open_backend(prepared: Prepared) -> Iterator[Any]:
    """The run's backend (None for the exact simulator), checked to fit the model, closed on exit."""
    backend_settings = prepared.config.backend
    if backend_settings.shots is None and trait("backend", backend_settings.kind, "exact_without_shots"):
        yield None
        return
    from llmqfl.quantum.backends.backend import make_backend

    n_qubits = prepared.model.n_qubits
    backend = make_backend(backend_settings, seed=derive_seed(prepared.base_seed, "backend"), n_qubits=n_qubits)
    try:
        device = f"backend {backend_settings.kind} {backend_settings.name or ''}".rstrip()
        check_qubit_fit(n_qubits, getattr(backend, "num_qubits", None), device)
        yield backend
    finally:
        backend.close()


def _on_start(state: Any, *, log_metrics: MetricsLogger, backend: Any) -> None:
    """A resumed run: log the restored rounds, and charge their shots to the backend's budget."""
    for round_index in range(1, state.round + 1):
        log_metrics(round_metrics([r for r in state.rows if r["round"] == round_index]), step=round_index)
    budget = getattr(backend, "shot_budget", None)
    if budget is not None and state.shots_used:
        backend.shot_budget = remaining_budget(budget, state.shots_used)


def _budget_errors(backend: Any) -> tuple[type[BaseException], ...]:
    """The backend's "shot budget would be overrun" error: it ends the run after the last full round."""
    if backend is None:
        return ()
    from llmqfl.quantum.backends.backend import ShotBudgetExceeded

    return (ShotBudgetExceeded,)


def federation_class(settings: Settings, backend: Any) -> type[Federation]:
    """:class:`LockstepFederation` for a shot-based backend with ``backend.batching: lockstep`` (the default),
    else the one-after-another :class:`Federation` (the exact path has no jobs to batch)."""
    if backend is not None and settings.backend.batching == "lockstep":
        return LockstepFederation
    return Federation


def execute(
    prepared: Prepared, backend: Any, *, out_dir: Path, resume: bool, log_metrics: MetricsLogger
) -> tuple[FederationResult, dict[str, Any]]:
    """Run the rounds (resuming from a matching checkpoint when asked); the result and its accounting."""
    from llmqfl.quantum import make_evaluator, train_local

    settings, llm = prepared.config, uses_llm(prepared.arm)
    optimizer, distill = settings.qfl.optimizer, settings.qfl.distillation
    # ReportFit: a lockstep round hears each fit's end, so the server's evaluation joins the last job
    trainer = ReportFit(partial(train_local, optimizer=optimizer.name, learning_rate=optimizer.learning_rate))
    clients = [
        Client(d, trainer=trainer, distill_weight=distill.weight if llm else 0.0, temperature=distill.temperature)
        for d in prepared.clients
    ]
    evaluator = make_evaluator(prepared.model, backend=backend, seed=derive_seed(prepared.base_seed, "evaluator"))
    federation = federation_class(settings, backend)(
        clients=clients,
        server=prepared.server,
        evaluator=evaluator,
        plan=prepared.plan,
        seed=prepared.base_seed,
        initial_weights=prepared.weights,
        checkpoint_dir=out_dir / "checkpoints",
        fingerprint=prepared.fingerprint,
        on_round=lambda r, rows: log_metrics(round_metrics(rows), step=r),
        on_start=partial(_on_start, log_metrics=log_metrics, backend=backend),
        budget_errors=_budget_errors(backend),
    )
    result = federation.run(resume=resume)
    accounting = accounting_summary(
        result.history, arm=prepared.arm, seed=prepared.seed, stop_reason=result.stop_reason
    )
    if result.aborted:  # work of the round the shot budget cut short: spent, but in no history row
        accounting["aborted_round"] = result.aborted
    if prepared.plan.privacy is not None:
        accounting["privacy"] = accounting_entry(prepared.plan.privacy, result.rounds_run, federation.privacy_rounds)
    return result, accounting


def final_metrics(result: FederationResult, accounting: dict[str, Any]) -> dict[str, float]:
    """The run's summary metrics: the last round's server measurements and the totals."""
    final = result.history[result.history["client"] == SERVER].iloc[-1]
    return {
        "rounds_run": result.rounds_run,
        "final_server_test_accuracy": float(final["test_accuracy"]),
        "final_server_test_f1": float(final["test_f1"]),
        "final_server_val_loss": float(final["loss"]),
        **{f"total_{k}": float(v) for k, v in accounting["totals"].items()},
        **privacy_metrics(accounting),
    }


def privacy_metrics(accounting: dict[str, Any]) -> dict[str, float]:
    """The run's (epsilon, delta) per private mechanism, as flat metrics (none when privacy is off)."""
    privacy = accounting.get("privacy") or {}
    return {f"privacy_{part}_{key}": float(entry[key]) for part, entry in sorted(privacy.items())
            for key in ("epsilon", "delta")}


def feature_ceiling(prepared: Prepared) -> float:
    """What the student's own features allow: a logistic regression on the pooled client train features,
    scored on the server's test set (the quantum student sees exactly these features)."""
    from sklearn.linear_model import LogisticRegression

    features = np.vstack([c.train_x for c in prepared.clients])
    labels = np.concatenate([c.train_y for c in prepared.clients])
    if len(np.unique(labels)) < 2:
        return math.nan
    model = LogisticRegression(max_iter=2000).fit(features, labels)
    return float(model.score(prepared.server.test_x, prepared.server.test_y))


def write_outputs(out_dir: Path, result: FederationResult, accounting: dict[str, Any]) -> list[Path]:
    """history.parquet, weights.npy and accounting.json, each written atomically; their paths."""
    write_parquet(out_dir / layout.HISTORY, result.history)
    with atomic_path(out_dir / layout.WEIGHTS) as tmp, tmp.open("wb") as handle:
        np.save(handle, result.weights)
    write_json(out_dir / layout.ACCOUNTING, accounting)
    return [out_dir / name for name in layout.RUN_OUTPUTS]
