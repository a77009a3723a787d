"""One backend interface for the ideal simulator, a noisy simulator, local runtime mode and IBM QPUs.

``backend.kind`` is the only switch (``docs/backends.md``):

- ``aer``: statevector :class:`~qiskit_aer.AerSimulator`; exact expectation values when
  ``shots`` is null (Aer ``EstimatorV2`` with precision 0), sampled otherwise; seeded.
- ``aer_noisy``: ``AerSimulator.from_backend(fake)`` for a fake IBM device (``backend.name``,
  default ``FakeManilaV2``); circuits are transpiled for the device, noise is the device's.
- both Aer kinds sample with :class:`~llmqfl.quantum.aer_sampler.DistributionSamplerV2` by default
  (``backend.aer_sampler: distribution``): Aer computes each binding's outcome distribution and
  the shots are drawn from it; ``native`` uses Aer's ``SamplerV2`` (one memory string per shot).
- ``fake``: qiskit-ibm-runtime local testing mode: the runtime's own ``Sampler``/``Estimator``
  in a local ``Batch``/``Session`` (or job mode), the hardware code path; circuits are transpiled
  for the fake device, whose Aer simulator is built once per run instead of once per job.
- ``ibm``: ``QiskitRuntimeService`` with the resolved account, a named device or the least busy
  one, in a ``Batch`` (default), ``Session`` or single-job mode.

The runtime primitives are the client-side ``executor_sampler.Sampler`` and
``executor_estimator.Estimator``: in qiskit-ibm-runtime 0.51 the server-side ``SamplerV2`` /
``EstimatorV2`` classes are deprecated in their favour. Every job goes through
:func:`llmqfl.quantum.jobs.run_with_retries` and is counted in :meth:`Backend.usage`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmqfl.config import derive_seed, validate_config
from llmqfl.errors import ConfigError, LlmqflError, OfflineError
from llmqfl.quantum.credentials import Credentials, install_log_redaction, redact, require_credentials
from llmqfl.quantum.jobs import JobFailedError, run_with_retries

if TYPE_CHECKING:
    from qiskit import QuantumCircuit
    from qiskit.primitives import PrimitiveResult
    from qiskit.primitives.containers.estimator_pub import EstimatorPub
    from qiskit.primitives.containers.sampler_pub import SamplerPub
    from qiskit.providers import BackendV2

logger = logging.getLogger(__name__)

KINDS = ("aer", "aer_noisy", "fake", "ibm")
MODES = ("batch", "session", "job")
AER_SAMPLERS = ("distribution", "native")  # backend.aer_sampler: how the Aer kinds draw shots
DEFAULT_SHOTS = 1024
DEFAULT_FAKE_DEVICE = "FakeManilaV2"
_DENSITY_MATRIX_MAX_QUBITS = 8
# 1/sqrt(shots) as a float can round so that ceil(1/precision**2) = shots + 1; nudge it down.
_PRECISION_NUDGE = 1.0 + 1e-9


class ShotBudgetExceeded(LlmqflError):
    """The next job would use more shots than ``backend.shot_budget`` has left; nothing was submitted."""

    def __init__(self, *, needed: int, remaining: int, budget: int, what: str) -> None:
        super().__init__(
            f"backend.shot_budget: {what} needs {needed} shots but only {remaining} of {budget} are left"
        )
        self.needed = needed
        self.remaining = remaining
        self.budget = budget


@dataclass(frozen=True)
class RuntimeApi:
    """The qiskit-ibm-runtime classes the ``fake`` and ``ibm`` kinds use; tests swap in fakes."""

    sampler: Callable[..., Any]
    estimator: Callable[..., Any]
    batch: Callable[..., Any]
    session: Callable[..., Any]

    @classmethod
    def default(cls) -> RuntimeApi:
        from qiskit_ibm_runtime import Batch, Session
        from qiskit_ibm_runtime.executor_estimator import Estimator
        from qiskit_ibm_runtime.executor_sampler import Sampler

        return cls(sampler=Sampler, estimator=Estimator, batch=Batch, session=Session)


# --------------------------------------------------------------------------- config checks


def fake_device_names() -> list[str]:
    """Class names of every fake V2 device qiskit-ibm-runtime ships (FakeManilaV2, FakeBrisbane, ...)."""
    import qiskit_ibm_runtime.fake_provider as provider
    from qiskit.providers import BackendV2

    return sorted(
        name
        for name in dir(provider)
        if name.startswith("Fake")
        and isinstance(getattr(provider, name), type)
        and issubclass(getattr(provider, name), BackendV2)
    )


def fake_device(name: str) -> BackendV2:
    """An instance of the fake device class ``name``; a :class:`ConfigError` listing valid names otherwise."""
    import qiskit_ibm_runtime.fake_provider as provider

    names = fake_device_names()
    if name not in names:
        close = [n for n in names if n.lower().startswith(name.lower()[:6])] or ["FakeManilaV2", "FakeBrisbane"]
        sample = ", ".join(dict.fromkeys([*close, "FakeManilaV2", "FakeBrisbane", "FakeSherbrooke", "FakeTorino"]))
        raise ConfigError(
            f"config error: backend.name: unknown fake device {name!r}; e.g. {sample} ({len(names)} in all)"
        )
    return getattr(provider, name)()


def check_backend_config(config: Mapping[str, Any], *, n_qubits: int | None = None) -> dict[str, Any]:
    """Check the backend settings cheaply (no network, no simulator) and return them with defaults filled.

    ``config`` is the whole config (``n_qubits`` then defaults to ``qfl.n_qubits``) or just its
    ``backend`` section. Raises a one-line :class:`ConfigError` for an unknown device, more
    qubits than the device has, ``shots < 1``, or ``kind: ibm`` without a token or saved account.
    The Snakefile calls this at parse time; :func:`make_backend` calls it again.
    """
    section, n_qubits = _backend_section(config, n_qubits)
    backend_cfg = _validated(section)
    _check_backend(backend_cfg, n_qubits)
    return backend_cfg


def _backend_section(config: Mapping[str, Any], n_qubits: int | None) -> tuple[dict[str, Any], int | None]:
    if not isinstance(config, Mapping):
        raise ConfigError(f"config error: backend: expected a mapping, got {type(config).__name__}")
    if isinstance(config.get("backend"), Mapping):
        if n_qubits is None:
            n_qubits = (config.get("qfl") or {}).get("n_qubits")
        return dict(config["backend"]), n_qubits
    return dict(config), n_qubits


def _validated(section: dict[str, Any]) -> dict[str, Any]:
    """The schema's checks and defaults for the backend section only."""
    return validate_config({"backend": section})["backend"]


def _check_backend(cfg: dict[str, Any], n_qubits: int | None) -> None:
    if n_qubits is not None and (isinstance(n_qubits, bool) or not isinstance(n_qubits, int) or n_qubits < 1):
        raise ConfigError(f"config error: qfl.n_qubits: must be a positive integer, got {n_qubits!r}")
    shots = cfg["shots"]
    if shots is not None and shots < 1:
        raise ConfigError(f"config error: backend.shots: must be >= 1 or null, got {shots}")
    kind = cfg["kind"]
    if kind in ("aer_noisy", "fake"):
        device = fake_device(cfg["name"] or DEFAULT_FAKE_DEVICE)
        _check_width(device.num_qubits, n_qubits, cfg["name"] or DEFAULT_FAKE_DEVICE)
    elif kind == "ibm":
        require_credentials()


def _check_width(device_qubits: int | None, n_qubits: int | None, name: str) -> None:
    if n_qubits is not None and device_qubits is not None and n_qubits > device_qubits:
        raise ConfigError(
            f"config error: qfl.n_qubits: {n_qubits} qubits do not fit {name}, which has {device_qubits}"
        )


# --------------------------------------------------------------------------- engines


class _Engine:
    """Kind-specific parts: the device the pass manager targets, and fresh primitives per job."""

    target: BackendV2
    reports_usage = False  # True: quantum seconds come from job.usage() (hardware)
    estimator_uses_pub_precision = True

    def sampler(self, *, shots: int, seed: int) -> Any:
        raise NotImplementedError

    def estimator(self, *, shots: int | None, seed: int) -> Any:
        raise NotImplementedError

    def prepare(self, circuits: list[QuantumCircuit]) -> None:
        """Called with a job's ISA circuits before its primitive is built; most engines need nothing."""

    def close(self) -> None:
        """Nothing to close for simulators."""


class _AerEngine(_Engine):
    """Ideal (statevector) or noisy Aer; primitives are rebuilt per job so each job has its own seed."""

    def __init__(self, simulator: Any, target: BackendV2, *, sampler: str = "distribution") -> None:
        if sampler not in AER_SAMPLERS:
            raise ConfigError(f"config error: backend.aer_sampler: expected one of {AER_SAMPLERS}, got {sampler!r}")
        self.simulator = simulator
        self.target = target
        self.sampler_kind = sampler
        self._plans: dict[int, Any] = {}  # ISA circuit id -> (circuit, DistributionPlan | None), shared by jobs

    def sampler(self, *, shots: int, seed: int) -> Any:
        if self.sampler_kind == "distribution":
            # Aer computes each binding's outcome distribution, shots are drawn from it in numpy:
            # same distribution as Aer's measure sampling, ~10x less time (see llmqfl.quantum.aer_sampler)
            from llmqfl.quantum.aer_sampler import DistributionSamplerV2

            return DistributionSamplerV2(self.simulator, seed=seed, default_shots=shots, plans=self._plans)
        from qiskit_aer.primitives import SamplerV2

        return SamplerV2.from_backend(self.simulator, seed=seed, default_shots=shots)

    def estimator(self, *, shots: int | None, seed: int) -> Any:
        if shots is None:
            from qiskit_aer.primitives import EstimatorV2

            return EstimatorV2.from_backend(
                self.simulator, options={"default_precision": 0.0, "run_options": {"seed_simulator": seed}}
            )
        # Really samples `shots` per measurement basis (readout noise included), unlike Aer's
        # EstimatorV2, which adds Gaussian noise to the exact value.
        from qiskit.primitives import BackendEstimatorV2

        precision = _nudged_precision(shots)
        return BackendEstimatorV2(
            backend=self.simulator, options={"default_precision": precision, "seed_simulator": seed}
        )


def _nudged_precision(shots: int) -> float:
    """1/sqrt(shots), nudged so that BackendEstimatorV2 runs exactly ``shots`` (not shots + 1)."""
    return _PRECISION_NUDGE / math.sqrt(shots)


class _RuntimeEngine(_Engine):
    """qiskit-ibm-runtime primitives in job, batch or session mode (local fake device or IBM QPU)."""

    estimator_uses_pub_precision = False  # shots are set through default_shots

    def __init__(self, device: BackendV2, mode: str, api: RuntimeApi, *, local: bool) -> None:
        self.target = device
        self.api = api
        self.local = local
        self.reports_usage = not local
        self.mode_name = mode
        self.mode = self._open(device)
        self._closed = False

    def _open(self, backend: Any) -> Any:
        """The primitives' ``mode``: a Batch or Session on ``backend``, or ``backend`` itself (job mode)."""
        if self.mode_name == "batch":
            return self.api.batch(backend=backend)
        if self.mode_name == "session":
            return self.api.session(backend=backend)
        return backend

    def _options(self, shots: int, seed: int) -> dict[str, Any]:
        options: dict[str, Any] = {"default_shots": shots}
        if self.local:
            options["simulator"] = {"seed_simulator": seed}
        return options

    def sampler(self, *, shots: int, seed: int) -> Any:
        return self.api.sampler(mode=self.mode, options=self._options(shots, seed))

    def estimator(self, *, shots: int | None, seed: int) -> Any:
        # resilience 0: raw expectation values, so shots (and the bill) are exactly what we count
        options = {**self._options(shots or DEFAULT_SHOTS, seed), "resilience_level": 0}
        return self.api.estimator(mode=self.mode, options=options)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_mode()

    def _close_mode(self) -> None:
        if self.mode_name == "job" or self.mode is None:
            return
        try:
            self.mode.close()
        except Exception as exc:  # closing must not hide the run's own result or error
            logger.warning("could not close the %s: %s", self.mode_name, redact(exc))


class _LocalRuntimeEngine(_RuntimeEngine):
    """Local testing mode on a fake device, with the device's Aer simulator built once, not per job.

    Given the fake device as ``mode``, local mode runs ``AerSimulator.from_backend(device)`` for
    every job. Here the runtime primitives get that simulator built once, with the device's noise
    on the qubits the circuits use (:mod:`llmqfl.quantum.device_noise`: the same counts for the same
    seed), rebuilt only if a later circuit uses other qubits. Transpilation still targets the device.
    """

    def __init__(self, device: BackendV2, mode: str, api: RuntimeApi, *, threads: int) -> None:
        self.target = device
        self.api = api
        self.local = True
        self.reports_usage = False
        self.mode_name = mode
        self.mode = None
        self.threads = threads
        self.qubits: frozenset[int] | None = frozenset()
        self._closed = False

    def prepare(self, circuits: list[QuantumCircuit]) -> None:
        from qiskit_aer import AerSimulator

        from llmqfl.quantum.device_noise import active_qubits, device_noise_model

        needed = active_qubits(circuits)
        qubits = None if needed is None or self.qubits is None else self.qubits | needed
        if self.mode is not None and qubits == self.qubits:
            return
        self._close_mode()
        noise = device_noise_model(self.target, qubits)
        simulator = AerSimulator.from_backend(self.target, noise_model=noise, max_parallel_threads=self.threads)
        self.qubits, self.mode = qubits, self._open(simulator)
        logger.info("local runtime simulator for %s: noise on qubits %s", self.target.name,
                    "all" if qubits is None else sorted(qubits))


# --------------------------------------------------------------------------- the backend


@dataclass(eq=False)
class Backend:
    """A configured target for circuits: transpile once, run V2 primitive jobs, count what they cost.

    Built by :func:`make_backend`. ``shots`` is None only for the ideal ``aer`` kind (exact
    expectation values); the sampler then draws :data:`DEFAULT_SHOTS`.
    """

    kind: str
    name: str | None
    num_qubits: int | None
    shots: int | None
    seed: int
    mode: str = "batch"
    optimization_level: int = 1
    retries: int = 3
    timeout_s: float | None = None
    backoff_s: float = 1.0
    shot_budget: int | None = None
    credentials: Credentials | None = field(default=None, repr=False)
    _engine: _Engine | None = field(default=None, repr=False)
    _sleep: Callable[[float], None] | None = field(default=None, repr=False)
    _pass_manager: Any = field(default=None, init=False, repr=False)
    _isa: dict[int, tuple[QuantumCircuit, QuantumCircuit]] = field(default_factory=dict, init=False, repr=False)
    _isa_ids: dict[int, QuantumCircuit] = field(default_factory=dict, init=False, repr=False)
    _usage: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _closed: bool = field(default=False, init=False, repr=False)
    _submitted: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._usage = {
            "jobs": 0,
            "shots": 0,
            "circuits": 0,
            "quantum_seconds": 0.0,
            "wall_seconds": 0.0,
            "failures": 0,
            "retries": 0,
        }

    # ---- transpilation

    def transpile(self, circuit: QuantumCircuit) -> QuantumCircuit:
        """The ISA circuit for this backend (preset pass manager at ``optimization_level``), cached."""
        from qiskit import QuantumCircuit

        if not isinstance(circuit, QuantumCircuit):
            raise TypeError(f"transpile expects a QuantumCircuit, got {type(circuit).__name__}")
        if id(circuit) in self._isa_ids:  # already an ISA circuit of this backend
            return circuit
        cached = self._isa.get(id(circuit))
        if cached is not None and cached[0] is circuit:
            return cached[1]
        if self.num_qubits is not None and circuit.num_qubits > self.num_qubits:
            raise ConfigError(
                f"config error: qfl.n_qubits: a {circuit.num_qubits}-qubit circuit does not fit {self.name}, "
                f"which has {self.num_qubits} qubits"
            )
        isa = self._transpile(circuit)
        # keep the logical circuit alive so its id() cannot be reused by another object
        self._isa[id(circuit)] = (circuit, isa)
        self._isa_ids[id(isa)] = isa
        return isa

    def _transpile(self, circuit: QuantumCircuit) -> QuantumCircuit:
        if self._pass_manager is None:
            from qiskit.transpiler import generate_preset_pass_manager

            self._pass_manager = generate_preset_pass_manager(
                optimization_level=self.optimization_level,
                backend=self._engine_or_raise().target,
                seed_transpiler=derive_seed(self.seed, "transpile"),
            )
        isa = self._pass_manager.run(circuit)
        if set(isa.parameters) != set(circuit.parameters):
            raise ValueError(
                "transpilation changed the circuit's parameters; use optimization_level <= 2 for this circuit"
            )
        return isa

    # ---- primitives

    def run_sampler(self, pubs: Iterable[Any]) -> PrimitiveResult:
        """Run sampler pubs (logical or ISA circuits with measurements) as one job; shots = backend shots."""
        prepared = self._sampler_pubs(pubs)
        shots = sum(pub.shots * pub.parameter_values.size for pub in prepared)
        circuits = sum(pub.parameter_values.size for pub in prepared)
        engine, job_shots = self._engine_or_raise(), self.shots or DEFAULT_SHOTS
        return self._run("sampler", prepared, shots, circuits, lambda seed: engine.sampler(shots=job_shots, seed=seed))

    def run_estimator(self, pubs: Iterable[Any]) -> PrimitiveResult:
        """Run estimator pubs as one job; observables are logical and get the ISA layout applied here."""
        prepared = self._estimator_pubs(pubs)
        shots, circuits = 0, 0
        for pub in prepared:
            size = pub.parameter_values.size
            per_circuit = self._estimator_shots(pub)
            if per_circuit:
                executed = _measurement_circuits(pub)
                shots += executed * per_circuit
                circuits += executed
            else:
                circuits += max(size, 1)
        engine, job_shots = self._engine_or_raise(), self.shots
        return self._run(
            "estimator", prepared, shots, circuits, lambda seed: engine.estimator(shots=job_shots, seed=seed)
        )

    def _estimator_shots(self, pub: EstimatorPub) -> int:
        if pub.precision:
            return math.ceil(1.0 / pub.precision**2)
        return self.shots or 0

    def _sampler_pubs(self, pubs: Iterable[Any]) -> list[SamplerPub]:
        from qiskit.primitives.containers.sampler_pub import SamplerPub

        out = []
        for pub in _as_list(pubs, "sampler"):
            if isinstance(pub, SamplerPub):
                circuit, rest = pub.circuit, (pub.parameter_values, pub.shots)
            elif isinstance(pub, tuple):
                circuit, rest = pub[0], pub[1:]
            else:
                circuit, rest = pub, ()
            if not any(inst.operation.name == "measure" for inst in circuit.data):
                raise ValueError("sampler pub: the circuit has no measurements (add measure_all())")
            out.append(SamplerPub.coerce((self.transpile(circuit), *rest), self.shots or DEFAULT_SHOTS))
        return out

    def _estimator_pubs(self, pubs: Iterable[Any]) -> list[EstimatorPub]:
        from qiskit.primitives.containers.estimator_pub import EstimatorPub
        from qiskit.primitives.containers.observables_array import ObservablesArray

        out = []
        for pub in _as_list(pubs, "estimator"):
            if isinstance(pub, EstimatorPub):
                circuit, observables, rest = pub.circuit, pub.observables, (pub.parameter_values, pub.precision)
            elif isinstance(pub, tuple) and len(pub) >= 2:
                circuit, observables, rest = pub[0], pub[1], pub[2:]
            else:
                raise ValueError("estimator pub: expected (circuit, observables[, parameter_values[, precision]])")
            isa = self.transpile(circuit)
            observables = ObservablesArray.coerce(observables)
            if isa.layout is not None:
                observables = observables.apply_layout(isa.layout, isa.num_qubits)
            out.append(EstimatorPub.coerce((isa, observables, *rest), self._estimator_precision()))
        return out

    def _estimator_precision(self) -> float | None:
        """Default pub precision: None (exact, or runtime kinds, which take shots via default_shots)."""
        if self.shots is None or not self._engine_or_raise().estimator_uses_pub_precision:
            return None
        return _nudged_precision(self.shots)

    def _run(self, what: str, pubs: list, shots: int, circuits: int, primitive: Callable[[int], Any]) -> Any:
        """Check the budget, submit one job (with retries), and add what it cost to :meth:`usage`."""
        if self._closed:
            raise RuntimeError(f"backend {self.kind}:{self.name} is closed")
        label = f"{what} job on {self.kind}:{self.name or 'statevector'}"
        self._reserve(shots, label)
        # one seed per logical job: deterministic, yet independent shot noise from job to job
        seed = derive_seed(self.seed, what, self._submitted)
        self._submitted += 1
        self._engine_or_raise().prepare([pub.circuit for pub in pubs])
        engine_primitive = primitive(seed)
        try:
            outcome = run_with_retries(
                lambda: engine_primitive.run(pubs),
                retries=self.retries,
                timeout_s=self.timeout_s,
                what=label,
                backoff_s=self.backoff_s,
                **({"sleep": self._sleep} if self._sleep else {}),
            )
        except JobFailedError as exc:
            self._usage["failures"] += exc.attempts
            self._usage["retries"] += exc.attempts - 1
            logger.error("%s", exc)
            raise
        self._usage["jobs"] += 1
        self._usage["shots"] += shots
        self._usage["circuits"] += circuits
        self._usage["failures"] += outcome.failures
        self._usage["retries"] += outcome.attempts - 1
        self._usage["wall_seconds"] += outcome.wall_seconds
        self._usage["quantum_seconds"] += self._quantum_seconds(outcome)
        logger.debug("%s %s: %d shots, %d circuits, %.3f s", label, outcome.job_id, shots, circuits,
                     outcome.wall_seconds)
        return outcome.result

    def _quantum_seconds(self, outcome: Any) -> float:
        if not self._engine_or_raise().reports_usage:
            return outcome.wall_seconds
        try:
            reported = outcome.job.usage()
        except Exception as exc:  # usage is bookkeeping; a failed lookup must not fail the run
            logger.warning("no usage for job %s: %s", outcome.job_id, redact(exc))
            return 0.0
        return float(reported or 0.0)

    def _reserve(self, shots: int, what: str) -> None:
        remaining = self.remaining_shots()
        if remaining is not None and shots > remaining:
            raise ShotBudgetExceeded(needed=shots, remaining=remaining, budget=int(self.shot_budget or 0), what=what)

    def _engine_or_raise(self) -> _Engine:
        if self._engine is None:
            raise RuntimeError("Backend has no engine: build it with make_backend()")
        return self._engine

    # ---- accounting and lifetime

    def remaining_shots(self) -> int | None:
        """Shots left in ``backend.shot_budget`` (None = no budget)."""
        if self.shot_budget is None:
            return None
        return max(0, int(self.shot_budget - self._usage["shots"]))

    def usage(self) -> dict[str, float]:
        """Totals so far: jobs, shots, circuits, quantum_seconds, wall_seconds, failures, retries."""
        totals = dict(self._usage)
        for key in ("jobs", "shots", "circuits", "failures", "retries"):
            totals[key] = int(totals[key])
        return totals

    def rng_state(self) -> dict[str, int]:
        """What decides the next jobs' shots: the per-job seed counter (the seeds derive from it).

        A checkpoint stores it so that a resumed run submits its next job with the seed an
        uninterrupted run would have used.
        """
        return {"submitted": int(self._submitted)}

    def restore_rng_state(self, state: Mapping[str, Any]) -> None:
        """Continue the per-job seed sequence from a :meth:`rng_state` taken earlier (possibly by another process)."""
        submitted = state.get("submitted")
        if isinstance(submitted, bool) or not isinstance(submitted, int) or submitted < 0:
            raise ValueError(f"backend state: 'submitted' must be a non-negative integer, got {submitted!r}")
        self._submitted = submitted

    def describe(self) -> dict[str, Any]:
        """What may be logged as MLflow params: the settings, never the token."""
        info = {
            "kind": self.kind,
            "name": self.name,
            "num_qubits": self.num_qubits,
            "shots": self.shots,
            "mode": self.mode,
            "optimization_level": self.optimization_level,
            "shot_budget": self.shot_budget,
        }
        if self.credentials is not None:
            info.update({f"account_{k}": v for k, v in self.credentials.describe().items()})
        return info

    def close(self) -> None:
        """Close the Batch/Session (queued jobs still finish); idempotent."""
        if not self._closed and self._engine is not None:
            self._engine.close()
        self._closed = True

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _as_list(pubs: Iterable[Any], what: str) -> list[Any]:
    items = list(pubs)
    if not items:
        raise ValueError(f"{what}: no pubs given")
    return items


def _measurement_circuits(pub: EstimatorPub) -> int:
    """Circuits a sampling estimator runs for ``pub``: per parameter set, one per qubit-wise commuting group."""
    import numpy as np
    from qiskit.quantum_info import PauliList

    shape = pub.parameter_values.shape
    param_index = np.fromiter(np.ndindex(shape), dtype=object).reshape(shape)
    bc_index, bc_obs = np.broadcast_arrays(param_index, pub.observables)
    needed: dict[tuple[int, ...], set[str]] = {}
    for index in np.ndindex(*bc_index.shape):
        needed.setdefault(bc_index[index], set()).update(bc_obs[index])
    groups: dict[frozenset[str], int] = {}
    total = 0
    for paulis in needed.values():
        key = frozenset(paulis)
        if key not in groups:
            groups[key] = len(PauliList(sorted(key)).group_qubit_wise_commuting())
        total += groups[key]
    return total


# --------------------------------------------------------------------------- construction


def make_backend(
    backend_cfg: Mapping[str, Any],
    *,
    seed: int,
    n_qubits: int,
    service: Any | None = None,
    runtime: RuntimeApi | None = None,
    sleep: Callable[[float], None] | None = None,
) -> Backend:
    """Check the settings (as :func:`check_backend_config`), then build the backend.

    ``seed`` should come from :func:`llmqfl.config.derive_seed`; transpiler and simulator seeds
    derive from it. ``service`` (a ``QiskitRuntimeService``-like object) and ``runtime`` (the
    primitive/Batch/Session classes) replace the real runtime for ``kind: ibm``, and ``sleep`` the
    retry back-off wait: the offline tests use them; the pipeline never passes them.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"config error: seed: must be a non-negative integer, got {seed!r}")
    cfg = check_backend_config(backend_cfg, n_qubits=n_qubits)
    if n_qubits is None:
        raise ConfigError("config error: qfl.n_qubits: needed to build a backend")
    return _make_backend(cfg, seed, n_qubits, service, runtime, sleep)


def _make_backend(
    cfg: dict[str, Any],
    seed: int,
    n_qubits: int,
    service: Any | None,
    runtime: RuntimeApi | None,
    sleep: Callable[[float], None] | None,
) -> Backend:
    kind = cfg["kind"]
    sampler = cfg.get("aer_sampler", "distribution")
    shots = cfg["shots"] if kind == "aer" else (cfg["shots"] or DEFAULT_SHOTS)
    credentials = None
    if kind == "aer":
        if cfg["name"]:
            logger.info("backend.name %r is ignored for kind aer (ideal statevector)", cfg["name"])
        engine, name, width = _aer_engine(seed, n_qubits, cfg["threads"], sampler), None, None
    elif kind == "aer_noisy":
        name = cfg["name"] or DEFAULT_FAKE_DEVICE
        engine = _noisy_engine(name, seed, cfg["threads"], n_qubits, sampler)
        width = engine.target.num_qubits
    elif kind == "fake":
        name = cfg["name"] or DEFAULT_FAKE_DEVICE
        device = fake_device(name)
        engine = _LocalRuntimeEngine(device, cfg["mode"], runtime or RuntimeApi.default(), threads=cfg["threads"])
        width = device.num_qubits
    else:
        install_log_redaction()
        credentials = require_credentials()
        service = service if service is not None else _connect(credentials)
        device = _ibm_device(service, cfg["name"], n_qubits)
        name, width = device.name, device.num_qubits
        engine = _RuntimeEngine(device, cfg["mode"], runtime or RuntimeApi.default(), local=False)
    backend = Backend(
        kind=kind,
        name=name,
        num_qubits=width,
        shots=shots,
        seed=seed,
        mode=cfg["mode"],
        optimization_level=cfg["optimization_level"],
        retries=cfg["retries"],
        timeout_s=cfg["timeout_s"],
        backoff_s=cfg["backoff_s"],
        shot_budget=cfg["shot_budget"],
        credentials=credentials,
        _engine=engine,
        _sleep=sleep,
    )
    logger.info("backend: %s", backend.describe())
    return backend


def _aer_engine(seed: int, n_qubits: int, threads: int, sampler: str = "distribution") -> _AerEngine:
    from qiskit_aer import AerSimulator

    # threads=1 by default: Aer's OpenMP default (all cores) made a 300-circuit job ~15x slower
    # on a 2-core machine already running other jobs
    simulator = AerSimulator(
        method="statevector", seed_simulator=derive_seed(seed, "simulator"), max_parallel_threads=threads
    )
    limit = simulator.num_qubits
    if n_qubits > limit:
        raise ConfigError(
            f"config error: qfl.n_qubits: {n_qubits} qubits exceed the statevector simulator's {limit} "
            "on this machine's memory; use fewer qubits"
        )
    return _AerEngine(simulator, simulator, sampler=sampler)


def _noisy_engine(name: str, seed: int, threads: int, n_qubits: int, sampler: str = "distribution") -> _AerEngine:
    from qiskit_aer import AerSimulator

    device = fake_device(name)
    # Few qubits, few shots per circuit: one density-matrix run per circuit beats one noisy
    # statevector trajectory per shot (300 circuits x 10 shots on FakeManilaV2: 0.6 s vs 3.2 s).
    # Idle device qubits are truncated away, so this holds on 127-qubit devices too.
    method = "density_matrix" if n_qubits <= _DENSITY_MATRIX_MAX_QUBITS else "automatic"
    simulator = AerSimulator.from_backend(
        device, method=method, seed_simulator=derive_seed(seed, "simulator"), max_parallel_threads=threads
    )
    return _AerEngine(simulator, device, sampler=sampler)


def _connect(credentials: Credentials) -> Any:
    """A live ``QiskitRuntimeService``; any failure becomes an :class:`OfflineError` with the token masked."""
    from qiskit_ibm_runtime import QiskitRuntimeService

    try:
        if credentials.source == "env":
            return QiskitRuntimeService(
                channel=credentials.channel, token=credentials.token, instance=credentials.instance
            )
        return QiskitRuntimeService(name=credentials.account_name)
    except Exception as exc:
        raise OfflineError(
            redact(f"cannot connect to IBM Quantum ({credentials.channel}, account from {credentials.source}): "
                   f"{type(exc).__name__}: {exc}")
        ) from None


def _ibm_device(service: Any, name: str | None, n_qubits: int) -> Any:
    """``service.backend(name)`` or the least busy operational QPU with enough qubits."""
    if name:
        try:
            device = service.backend(name)
        except Exception as exc:
            try:
                available = ", ".join(sorted(b.name for b in service.backends())[:8]) or "none"
            except Exception:
                available = "unknown"
            raise ConfigError(
                redact(f"config error: backend.name: IBM device {name!r} is not available to this account "
                       f"({type(exc).__name__}); available: {available}")
            ) from None
        _check_width(device.num_qubits, n_qubits, device.name)
        return device
    try:
        return service.least_busy(operational=True, simulator=False, min_num_qubits=n_qubits)
    except Exception as exc:
        raise ConfigError(
            redact(f"config error: backend.name: no operational IBM device with >= {n_qubits} qubits "
                   f"({type(exc).__name__}: {exc})")
        ) from None
