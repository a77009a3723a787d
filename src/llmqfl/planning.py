"""What a config will cost on a QPU before anything runs: jobs, circuits, shots and QPU seconds per arm.

Why: on hardware, jobs and QPU seconds are the scarce resource. The count follows what the
federation really does (:mod:`llmqfl.federated.server`), one evaluator call after another:

* per selected client and round: the optimizer's calls (COBYLA: at most ``maxiter`` evaluations
  of one weight set each; SPSA: ``maxiter`` calls of a +/- pair, then the final point; Adam:
  ``maxiter`` calls of 2P + 1 parameter-shift sets, then the final point), each over the client's
  train items, plus one call on its train items for the accuracy and loss guidance reads;
* per round: one server call over server_val, the server's test set and every client's test items;
* jobs: with ``backend.batching: lockstep`` (the default on shot-based kinds) job j of a round holds
  the j-th call of every selected client and the server's call joins the last, so a round costs
  the LONGEST client's calls in jobs (:mod:`llmqfl.federated.lockstep`); with ``sequential``, one job per call;
* selection: ``all`` every client; ``random`` replayed with the run's own seeded generator (it
  does not depend on losses); ``closest_to_server`` every client in round 1, then
  ``max(1, floor(fraction N))`` clients whose identity depends on the losses (the expected cost
  takes their mean size, the bound the largest);
* readout mitigation (``backend.mitigation.readout``): one calibration job per run of 2**n
  (``full``) or 2 (``tensored``) circuits at the calibration's shots (:func:`calibration_cost`);
* ``maxiter``: the config's value; the LLM-guided rule can only raise it, from round 2 on, up to
  ``qfl.optimizer.max_maxiter``: the ``bound`` assumes it does in every round, ``expected`` that it
  never does. ``budget_matched`` given the ``llm_guided`` schedule is exact.

QPU seconds are an ESTIMATE (:class:`CostModel`): a fixed overhead per job plus, per shot of
each circuit, the device's repetition delay and the transpiled circuit's duration on the device.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from llmqfl.config import derive_seed
from llmqfl.contracts import EQUAL_COST, LLM_GUIDED, uses_llm
from llmqfl.errors import ConfigError
from llmqfl.registry import create, trait
from llmqfl.settings import BackendSettings, Settings

# QPU time per job beyond the shots themselves (loading, compilation on the control system, readout
# transfer). IBM's "Workload usage" guide shows ~4.1 quantum seconds for a one-circuit Sampler job;
# with its shots at the default 250 us repetition delay that leaves ~3 s of overhead. An estimate.
JOB_OVERHEAD_S = 3.0
DEFAULT_REP_DELAY_S = 250e-6  # IBM devices' backend.default_rep_delay (FakeManilaV2, FakeBrisbane: 250 us)
DEFAULT_SHOTS = 1024  # backend.shots null on a shot-based kind (llmqfl.quantum.backends.backend.DEFAULT_SHOTS)


@dataclass(frozen=True)
class Sizes:
    """Items each call covers: per client train and test items, the server's val and test sets."""

    n_train: tuple[int, ...]
    n_test: tuple[int, ...]
    server_val: int
    server_test: int


@dataclass(frozen=True)
class CostModel:
    """QPU seconds of a job = ``job_overhead_s`` + circuits x shots x (``rep_delay_s`` + ``circuit_s``)."""

    device: str | None
    job_overhead_s: float = JOB_OVERHEAD_S
    rep_delay_s: float = DEFAULT_REP_DELAY_S
    circuit_s: float = 0.0  # one shot of the transpiled circuit, measurement included

    def seconds(self, jobs: int, circuits: int, shots: int) -> float | None:
        if self.device is None:
            return None
        return jobs * self.job_overhead_s + circuits * shots * (self.rep_delay_s + self.circuit_s)


@dataclass
class Cost:
    """Totals of one run (or a sum of runs)."""

    jobs: int = 0
    circuits: int = 0
    shots: int = 0
    qpu_seconds: float | None = None

    def add_call(self, items: int, sets: int, shots: int, *, jobs: int = 1) -> None:
        """One evaluator call over ``items`` items and ``sets`` weight sets, in ``jobs`` jobs (0: it shares one)."""
        self.jobs += jobs
        self.circuits += items * sets
        self.shots += items * sets * shots

    def __add__(self, other: Cost) -> Cost:
        seconds = None
        if self.qpu_seconds is not None or other.qpu_seconds is not None:
            seconds = (self.qpu_seconds or 0.0) + (other.qpu_seconds or 0.0)
        return Cost(self.jobs + other.jobs, self.circuits + other.circuits, self.shots + other.shots, seconds)


@dataclass
class ArmPlan:
    """One arm and seed: the expected cost (no guidance raise, every round) and an upper bound."""

    arm: str
    seed: int
    rounds: int
    expected: Cost
    bound: Cost
    notes: list[str] = field(default_factory=list)


def shots_per_circuit(backend: BackendSettings) -> int:
    """Shots of one circuit execution; 0 on the exact path (aer with shots null: no jobs at all)."""
    if backend.shots is None and trait("backend", backend.kind, "exact_without_shots"):
        return 0
    return int(backend.shots or DEFAULT_SHOTS)


def _selections(settings: Settings, base_seed: int, rounds: int) -> list[tuple[int, ...] | int]:
    """Round by round: the selected clients where they are known, else how many are selected."""
    from llmqfl.federated.selection import n_selected, select_clients, strategy

    selection, n_clients = settings.federation.selection, settings.federation.n_clients
    kind, fraction = selection.kind, selection.fraction
    clients = list(range(n_clients))
    if kind == "all":
        return [tuple(clients)] * rounds
    picker = strategy(kind)  # resolved once, as a plan does (FederationPlan.selector)
    rng = np.random.default_rng(derive_seed(base_seed, "selection"))  # as Federation.initial_state / _select
    if kind != "random":  # closest_to_server or a registered kind: round 1 has no losses, later rounds depend on them
        first = select_clients(picker, clients=clients, fraction=fraction, rng=rng, last_losses={}, server_loss=None)
        return [first] + [n_selected(fraction, n_clients)] * (rounds - 1)
    picks = []
    for _ in range(rounds):
        picks.append(select_clients(picker, clients=clients, fraction=fraction, rng=rng, last_losses={},
                                    server_loss=None))
    return picks


def plan_arm(
    settings: Settings,
    arm: str,
    seed: int,
    sizes: Sizes,
    *,
    n_params: int,
    cost_model: CostModel,
    schedule: Any = None,
    n_readout: int = 0,
) -> ArmPlan:
    """The cost of one arm and seed; ``schedule`` (a :class:`~llmqfl.federated.schedule.Schedule`) makes
    ``budget_matched`` exact; ``n_readout`` (the model's readout bits) sizes a readout calibration."""
    from llmqfl.quantum.training.optimizers import fit_calls  # the quantum package loads qiskit: only when planning

    qfl, backend = settings.qfl, settings.backend
    optimizer = qfl.optimizer
    shots = shots_per_circuit(backend)
    rounds = schedule.rounds if schedule is not None else int(settings.federation.rounds)
    guided = uses_llm(arm) and schedule is None and qfl.guidance.rule != "none"
    cap = max(int(optimizer.maxiter), int(optimizer.max_maxiter))
    base_seed = derive_seed(settings.seed, "qfl", seed)
    lockstep = shots > 0 and backend.batching == "lockstep"  # llmqfl.federated.lockstep
    expected, bound = Cost(), Cost()
    picks = _selections(settings, base_seed, rounds) if schedule is None else \
        [schedule.selected[r] for r in range(1, rounds + 1)]
    by_size = sorted(range(len(sizes.n_train)), key=lambda k: -sizes.n_train[k])
    for r, pick in enumerate(picks, start=1):
        for cost, raise_to_cap in ((expected, False), (bound, guided)):
            if isinstance(pick, int):  # loss-dependent choice of `pick` clients
                if cost is bound:
                    chosen = [(k, sizes.n_train[k]) for k in by_size[:pick]]
                else:
                    chosen = [(None, float(np.mean(sizes.n_train)))] * pick
            else:
                chosen = [(k, sizes.n_train[k]) for k in pick]
            calls = []
            for k, items in chosen:
                maxiter = int(optimizer.maxiter)
                if schedule is not None and k is not None:
                    maxiter = int(schedule.maxiter[(r, k)])
                elif raise_to_cap and r >= 2:
                    maxiter = cap
                calls.append([*fit_calls(optimizer.name, maxiter, n_params), 1])  # the fit, then train metrics
                for sets in calls[-1]:
                    cost.add_call(items, sets, shots, jobs=0 if lockstep else 1)
            # lockstep: job j holds every client's j-th call, the server's evaluation joins the last
            cost.jobs += max(len(c) for c in calls) if lockstep else 0
            cost.add_call(sizes.server_val + sizes.server_test + sum(sizes.n_test), 1, shots, jobs=0 if lockstep else 1)
    calibration = calibration_cost(backend, n_readout) if shots else Cost()
    for cost in (expected, bound):
        cost.jobs, cost.circuits, cost.shots = (cost.jobs + calibration.jobs, cost.circuits + calibration.circuits,
                                                cost.shots + calibration.shots)
    notes = []
    if calibration.jobs:
        notes.append(f"readout calibration: {calibration.jobs} job, {calibration.circuits} circuits, "
                     f"{calibration.shots} shots")
    if guided:
        notes.append(f"guidance may raise maxiter up to {cap} from round 2: bound assumes it always does")
    if qfl.termination.llm_threshold is not None or qfl.termination.plateau_rounds:
        notes.append("early termination (llm_guided) can only lower these counts")
    for cost in (expected, bound):
        cost.circuits, cost.shots = round(cost.circuits), round(cost.shots)
        if shots == 0:
            cost.jobs = 0  # the exact evaluator runs no jobs
        cost.qpu_seconds = cost_model.seconds(cost.jobs, cost.circuits, shots) if shots else None
    if arm == EQUAL_COST:  # spends llm_guided's total (known once L ran), never more: L's bound bounds it
        guided = plan_arm(settings, LLM_GUIDED, seed, sizes, n_params=n_params, cost_model=cost_model,
                          n_readout=n_readout)
        bound = guided.bound
        notes.append("equal_cost spends llm_guided's total circuit executions: bounded by L's bound")
    return ArmPlan(arm, seed, rounds, expected, bound, notes)


def calibration_cost(backend: BackendSettings, n_readout: int) -> Cost:
    """A run's readout calibration job (``backend.mitigation.readout``; :mod:`llmqfl.quantum.backends.mitigation`)."""
    readout = backend.mitigation.readout
    if not readout.enable or n_readout < 1:
        return Cost()
    from llmqfl.quantum.backends.mitigation import prepared_states

    circuits = len(prepared_states(readout.method, n_readout))
    cost = Cost()
    cost.add_call(circuits, 1, int(readout.shots or shots_per_circuit(backend)))
    return cost


# --------------------------------------------------------------------------- inputs


def cost_model(settings: Settings, n_classes: int) -> CostModel:
    """Timing of the device the kind names (its fake twin for ``ibm``; the kind's ``timing_device``); no QPU
    seconds for a kind without one (the ideal ``aer``)."""
    backend = settings.backend
    name = create("backend", backend.kind).timing_device(backend)  # llmqfl.quantum.backends.backend_kinds
    if name is None:
        return CostModel(device=None)
    from llmqfl.quantum.backends.backend_config import fake_device

    device = fake_device(name)
    return CostModel(device=name, rep_delay_s=_rep_delay(device),
                     circuit_s=_circuit_seconds(settings, device, n_classes))


def _rep_delay(device: Any) -> float:
    delay = getattr(device, "default_rep_delay", None)
    if delay is None:
        try:
            delay = device.configuration().default_rep_delay
        except Exception:  # a device without a configuration: IBM's usual default
            delay = None
    return float(delay) if delay else DEFAULT_REP_DELAY_S


def _circuit_seconds(settings: Settings, device: Any, n_classes: int) -> float:
    """Duration of one shot of the model's transpiled, measured circuit on ``device`` (longest path)."""
    from qiskit.transpiler import generate_preset_pass_manager

    from llmqfl.quantum.training.primitive import measured_circuit

    model = _model(settings, n_classes)
    manager = generate_preset_pass_manager(optimization_level=settings.backend.optimization_level,
                                           backend=device, seed_transpiler=0)
    isa = manager.run(measured_circuit(model))
    try:
        return float(isa.estimate_duration(device.target, unit="s"))
    except Exception:  # a device without durations: count no circuit time
        return 0.0


def _model(settings: Settings, n_classes: int) -> Any:
    """The model the qfl stage builds (its feature map and ansatz by name and reps included)."""
    from llmqfl.quantum import configured_model

    return configured_model(settings.qfl, n_classes)


def sizes_from_files(meta: Mapping[str, Any], partitions: Mapping[str, Any]) -> Sizes:
    """Sizes from the data stage's meta.json and the partition stage's partitions.json."""
    clients = sorted(partitions["clients"], key=lambda c: c["client"])
    counts = meta["counts"]
    return Sizes(
        n_train=tuple(int(c["n_train"]) for c in clients),
        n_test=tuple(int(c["n_test"]) for c in clients),
        server_val=int(counts["server_val"]["total"]),
        server_test=int(counts["test"]["total"]),
    )


def sizes_from_config(settings: Settings) -> tuple[Sizes, int]:
    """Sizes and class count computed in memory by the data and partition stages' own code (local sources)."""
    from llmqfl.data.partitioners import partition_as_configured
    from llmqfl.data.prepared import prepare

    if trait("data_source", settings.data.source, "online"):
        raise ConfigError(
            f"config error: data.source {settings.data.source} is downloaded by the data stage: run the data and "
            "partition stages first and pass --data-dir and --partitions-dir"
        )
    tables, meta = prepare(settings)
    _, summary = partition_as_configured(tables["train"], settings, meta["n_classes"])
    return sizes_from_files(meta, summary), int(meta["n_classes"])


# --------------------------------------------------------------------------- the plan and the budget


def plan_config(
    settings: Settings,
    sizes: Sizes,
    n_classes: int,
    *,
    arms: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The plan of every arm and seed of ``settings`` as a JSON-ready dict."""
    model = cost_model(settings, n_classes)
    quantum = _model(settings, n_classes)
    backend = settings.backend
    arms = list(arms or settings.arms)
    seeds = list(seeds if seeds is not None else settings.seeds)
    runs = [plan_arm(settings, arm, seed, sizes, n_params=quantum.n_params, cost_model=model,
                     n_readout=len(quantum.readout_qubits)) for arm in arms for seed in seeds]
    total_expected = sum((run.expected for run in runs), Cost())
    total_bound = sum((run.bound for run in runs), Cost())
    return {
        "experiment": settings.experiment,
        "backend": {"kind": backend.kind, "name": backend.name, "shots_per_circuit": shots_per_circuit(backend)},
        "cost_model": asdict(model),
        "sizes": asdict(sizes),
        "runs": [_run_dict(run) for run in runs],
        "total": {"expected": asdict(total_expected), "bound": asdict(total_bound)},
        "budgets": {"shot_budget": backend.shot_budget, "qpu_seconds_budget": backend.qpu_seconds_budget},
    }


def _run_dict(run: ArmPlan) -> dict[str, Any]:
    return {"arm": run.arm, "seed": run.seed, "rounds": run.rounds, "expected": asdict(run.expected),
            "bound": asdict(run.bound), "notes": run.notes}


def check_budget(settings: Settings, run: ArmPlan) -> None:
    """A one-line :class:`ConfigError` when the run's expected cost exceeds ``backend.shot_budget`` or
    ``backend.qpu_seconds_budget``; nothing has been submitted yet. (The shot budget still stops a
    run cleanly if guidance later raises its cost past the budget.)"""
    backend = settings.backend
    hint = "raise it, or lower federation.rounds, qfl.optimizer.maxiter or backend.shots (python -m llmqfl.stages.plan)"
    budget = backend.shot_budget
    if budget is not None and run.expected.shots > budget:
        raise ConfigError(
            f"config error: backend.shot_budget: the {run.arm} run (seed {run.seed}) is planned at "
            f"{run.expected.shots} shots in {run.expected.jobs} jobs, over the budget of {budget}; {hint}"
        )
    seconds_budget = backend.qpu_seconds_budget
    seconds = run.expected.qpu_seconds
    if seconds_budget is not None and seconds is not None and seconds > seconds_budget:
        raise ConfigError(
            f"config error: backend.qpu_seconds_budget: the {run.arm} run (seed {run.seed}) is estimated at "
            f"{seconds:.0f} QPU seconds in {run.expected.jobs} jobs, over the budget of {seconds_budget:g}; {hint}"
        )


def refuse_over_budget(
    settings: Settings, *, arm: str, seed: int, clients: Sequence[Any], server: Any, n_classes: int,
    schedule: Any = None,
) -> ArmPlan | None:
    """The qfl stage's check before its first job: plan this run from its real data, refuse it over budget.

    ``clients`` are :class:`~llmqfl.federated.client.ClientData`, ``server`` the
    :class:`~llmqfl.federated.server.ServerData`. Returns the plan (None when there is no budget).
    """
    backend = settings.backend
    if backend.shot_budget is None and backend.qpu_seconds_budget is None:
        return None
    sizes = Sizes(
        n_train=tuple(c.n_train for c in clients),
        n_test=tuple(len(c.test_y) for c in clients),
        server_val=len(server.val_y),
        server_test=len(server.test_y),
    )
    needs_seconds = backend.qpu_seconds_budget is not None
    model = cost_model(settings, n_classes) if needs_seconds else CostModel(device=None)
    quantum = _model(settings, n_classes)
    run = plan_arm(settings, arm, seed, sizes, n_params=quantum.n_params, cost_model=model, schedule=schedule,
                   n_readout=len(quantum.readout_qubits))
    check_budget(settings, run)
    return run
