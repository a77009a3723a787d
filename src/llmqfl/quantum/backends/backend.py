"""One backend interface for the ideal simulator, a noisy simulator, local runtime mode and IBM QPUs.

``backend.kind`` is the only switch (``docs/backends.md``):

- ``aer``: statevector :class:`~qiskit_aer.AerSimulator`, sampled and seeded (with ``shots`` null
  the pipeline needs no backend: :mod:`llmqfl.quantum.simulators.exact` computes the probabilities).
- ``aer_noisy``: ``AerSimulator.from_backend(fake)`` for a fake IBM device (``backend.name``,
  default ``FakeManilaV2``); circuits are transpiled for the device, noise is the device's.
- both Aer kinds sample with :class:`~llmqfl.quantum.simulators.aer_sampler.DistributionSamplerV2` by default
  (``backend.aer_sampler: distribution``): Aer computes each binding's outcome distribution and
  the shots are drawn from it; ``native`` uses Aer's ``SamplerV2`` (one memory string per shot).
- ``fake``: qiskit-ibm-runtime local testing mode: the runtime's own ``Sampler``
  in a local ``Batch``/``Session`` (or job mode), the hardware code path; circuits are transpiled
  for the fake device, whose Aer simulator is built once per run instead of once per job.
- ``ibm``: ``QiskitRuntimeService`` with the resolved account, a named device or the least busy
  one, in a ``Batch`` (default), ``Session`` or single-job mode.

Every job goes through :func:`llmqfl.quantum.jobs.retries.run_with_retries` and is counted in
:meth:`Backend.usage`. The parts live by job: settings checks in :mod:`llmqfl.quantum.backends.backend_config`,
the kinds' engines in :mod:`llmqfl.quantum.backends.engines`, the IBM connection in
:mod:`llmqfl.quantum.backends.ibm_connection`, the jobs' totals and the shot budget in
:mod:`llmqfl.quantum.jobs.job_usage`; this module holds the Backend and :func:`make_backend`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from llmqfl.config import derive_seed
from llmqfl.contracts import check_qubit_fit
from llmqfl.errors import ConfigError
from llmqfl.quantum.backends.backend_config import (
    AER_SAMPLERS,
    DEFAULT_FAKE_DEVICE,
    DEFAULT_SHOTS,
    MODES,
    ResolvedKind,
    check_backend_config,
    check_resolved,
    fake_device,
    fake_device_names,
    resolve_kind,
)
from llmqfl.quantum.backends.credentials import Credentials, redact
from llmqfl.quantum.backends.engines import (
    AerEngine,
    Engine,
    RuntimeApi,
    RuntimeEngine,
)
from llmqfl.quantum.backends.sampler_pubs import isa_sampler_pubs
from llmqfl.quantum.jobs.job_usage import JobUsage, ShotBudgetExceeded
from llmqfl.quantum.jobs.retries import JobFailedError, run_with_retries
from llmqfl.quantum.simulators.pub_seeds import PerPubSeedSampler
from llmqfl.registry import traits
from llmqfl.settings import BackendSettings

if TYPE_CHECKING:
    from qiskit import QuantumCircuit
    from qiskit.primitives import PrimitiveResult

__all__ = [
    "AER_SAMPLERS", "DEFAULT_FAKE_DEVICE", "DEFAULT_SHOTS", "MODES", "Backend",
    "RuntimeApi", "ShotBudgetExceeded", "check_backend_config", "fake_device", "fake_device_names", "make_backend",
]

logger = logging.getLogger(__name__)


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
    service: Any = field(default=None, repr=False)  # ibm: the runtime service (the job ledger fetches jobs by id)
    # the kind's traits (llmqfl.registry.traits), looked up once when the backend is built (make_backend passes
    # them): what the evaluators and the job ledger may do with this backend, without asking the registry again
    traits: Mapping[str, Any] = field(default_factory=dict, repr=False)
    _engine: Engine | None = field(default=None, repr=False)
    _sleep: Callable[[float], None] | None = field(default=None, repr=False)
    _pass_manager: Any = field(default=None, init=False, repr=False)
    _isa: dict[int, tuple[QuantumCircuit, QuantumCircuit]] = field(default_factory=dict, init=False, repr=False)
    _isa_ids: dict[int, QuantumCircuit] = field(default_factory=dict, init=False, repr=False)
    _usage: JobUsage = field(default_factory=JobUsage, init=False, repr=False)
    _closed: bool = field(default=False, init=False, repr=False)
    # jobs.job_ledger.JobLedger (fake, ibm): records each job before its result is used, replays on resume
    ledger: Any = field(default=None, init=False, repr=False)
    _submitted: int = field(default=0, init=False, repr=False)
    # llmqfl.quantum.backends.mitigation.ReadoutMitigation (backend.mitigation.readout): the sampler path applies it
    mitigation: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.traits:  # built directly, not by make_backend
            self.traits = traits("backend", self.kind)

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
        check_qubit_fit(circuit.num_qubits, self.num_qubits, self.name)
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

    def run_sampler(self, pubs: Iterable[Any], *, seeds: Sequence[int] | None = None) -> PrimitiveResult:
        """Run sampler pubs (logical or ISA circuits with measurements) as one job; shots = backend shots.

        ``seeds`` (one per pub) make each pub's draws depend on its own seed, not on the job it is in
        (lockstep batching); the Aer kinds honour them per pub (:mod:`llmqfl.quantum.simulators.pub_seeds`), the
        runtime kinds take one job seed derived from them. Without: one seed per job, from the job counter.
        """
        prepared = isa_sampler_pubs(pubs, self.transpile, self.shots or DEFAULT_SHOTS)
        if seeds is not None and len(seeds) != len(prepared):
            raise ValueError(f"run_sampler: {len(seeds)} seeds for {len(prepared)} pubs")
        shots = sum(pub.shots * pub.parameter_values.size for pub in prepared)
        circuits = sum(pub.parameter_values.size for pub in prepared)
        engine, job_shots = self._engine_or_raise(), self.shots or DEFAULT_SHOTS

        def primitive(seed: int) -> Any:
            if seeds is not None and isinstance(engine, AerEngine):
                return PerPubSeedSampler(lambda pub_seed: engine.sampler(shots=job_shots, seed=pub_seed), seeds)
            return engine.sampler(shots=job_shots, seed=seed)

        return self._run("sampler", prepared, shots, circuits, primitive, seeds=seeds)

    def run_calibration(self, circuits: Sequence[QuantumCircuit], *, shots: int, seed: int) -> PrimitiveResult:
        """Readout-calibration circuits, built on physical qubits (ISA as they are), as one job.

        The job seed is the caller's, not the job counter's: a calibration does not move the seeds
        of the training jobs, and a resumed run asks for the very job the ledger holds.
        """
        from qiskit.primitives.containers.sampler_pub import SamplerPub

        engine = self._engine_or_raise()
        for circuit in circuits:
            self._isa_ids[id(circuit)] = circuit
        pubs = [SamplerPub.coerce((circuit,), shots) for circuit in circuits]
        return self._run("calibration", pubs, shots * len(pubs), len(pubs),
                         lambda job_seed: engine.sampler(shots=shots, seed=job_seed), job_seed=seed)

    @property
    def device_target(self) -> Any:
        """The device's :class:`~qiskit.transpiler.Target` (which gates its qubits take)."""
        return self._engine_or_raise().target.target

    def _run(
        self,
        what: str,
        pubs: list,
        shots: int,
        circuits: int,
        primitive: Callable[[int], Any],
        *,
        seeds: Sequence[int] | None = None,
        job_seed: int | None = None,
    ) -> Any:
        """Check the budget, submit one job (with retries), and add what it cost to :meth:`usage`."""
        if self._closed:
            raise RuntimeError(f"backend {self.kind}:{self.name} is closed")
        label = f"{what} job on {self.kind}:{self.name or 'statevector'}"
        self._usage.reserve(shots, label, self.shot_budget)
        # the job seed: from its pubs' own seeds (keyed evaluations: independent of batching and of
        # the jobs before), else one per logical job from the counter; deterministic either way
        if job_seed is None:
            seed = derive_seed(self.seed, what, *(seeds if seeds is not None else [self._submitted]))
            self._submitted += 1
        else:
            seed = job_seed
        self._engine_or_raise().prepare([pub.circuit for pub in pubs])
        engine_primitive = primitive(seed)
        submit = partial(
            run_with_retries,
            lambda: engine_primitive.run(pubs),
            retries=self.retries,
            timeout_s=self.timeout_s,
            what=label,
            backoff_s=self.backoff_s,
            **({"sleep": self._sleep} if self._sleep else {}),
        )
        try:
            if self.ledger is None:
                outcome = submit()
            else:  # on disk before the optimizer sees it; a resumed run replays it (llmqfl.quantum.jobs.job_ledger)
                outcome = self.ledger.run(what, pubs, seed=seed, shots=shots, circuits=circuits, submit=submit,
                                          usage=self._quantum_seconds)
        except JobFailedError as exc:
            self._usage.failed(exc.attempts)
            logger.error("%s", exc)
            raise
        self._usage.add(shots=shots, circuits=circuits, attempts=outcome.attempts, failures=outcome.failures,
                        wall_seconds=outcome.wall_seconds, quantum_seconds=self._quantum_seconds(outcome))
        logger.debug("%s %s: %d shots, %d circuits, %.3f s", label, outcome.job_id, shots, circuits,
                     outcome.wall_seconds)
        return outcome.result

    def _quantum_seconds(self, outcome: Any) -> float:
        if outcome.quantum_seconds is not None:  # from the job ledger (a replayed job: what it cost when it ran)
            return outcome.quantum_seconds
        if not self._engine_or_raise().reports_usage:
            return outcome.wall_seconds
        try:
            reported = outcome.job.usage()
        except Exception as exc:  # usage is bookkeeping; a failed lookup must not fail the run
            logger.warning("no usage for job %s: %s", outcome.job_id, redact(exc))
            return 0.0
        return float(reported or 0.0)

    def _engine_or_raise(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("Backend has no engine: build it with make_backend()")
        return self._engine

    # ---- accounting and lifetime

    def remaining_shots(self) -> int | None:
        """Shots left in ``backend.shot_budget`` (None = no budget)."""
        return self._usage.remaining_shots(self.shot_budget)

    def usage(self) -> dict[str, float]:
        """Totals so far: jobs, shots, circuits, quantum_seconds, wall_seconds, failures, retries."""
        return self._usage.totals()

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


# --------------------------------------------------------------------------- construction


def make_backend(
    settings: BackendSettings,
    *,
    seed: int,
    n_qubits: int,
    service: Any | None = None,
    runtime: RuntimeApi | None = None,
    sleep: Callable[[float], None] | None = None,
) -> Backend:
    """Check the run's ``backend`` settings (as :func:`check_backend_config`), then build the backend.

    ``settings`` is the validated ``backend`` section (``llmqfl.config.load_settings(...).backend``); its
    kind is looked up in the registry once, here, and the Backend keeps the kind's traits. ``seed``
    should come from :func:`llmqfl.config.derive_seed`; transpiler and simulator seeds derive from it.
    ``service`` (a ``QiskitRuntimeService``-like object) and ``runtime`` (the primitive/Batch/Session
    classes) replace the real runtime for ``kind: ibm``, and ``sleep`` the retry back-off wait: the
    offline tests use them; the pipeline never passes them.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"config error: seed: must be a non-negative integer, got {seed!r}")
    if not isinstance(settings, BackendSettings):
        raise TypeError(f"make_backend: expected the backend section as BackendSettings "
                        f"(llmqfl.config.load_settings(...).backend), got {type(settings).__name__}")
    kind = resolve_kind(settings.kind)
    check_resolved(settings, kind, n_qubits)
    if n_qubits is None:
        raise ConfigError("config error: qfl.n_qubits: needed to build a backend")
    return _make_backend(settings, kind, seed, n_qubits, service, runtime, sleep)


def _make_backend(
    settings: BackendSettings,
    kind: ResolvedKind,
    seed: int,
    n_qubits: int,
    service: Any | None,
    runtime: RuntimeApi | None,
    sleep: Callable[[float], None] | None,
) -> Backend:
    shots = settings.shots if kind.traits["exact_without_shots"] else (settings.shots or DEFAULT_SHOTS)
    built = kind.kind.build(settings, seed=seed, n_qubits=n_qubits, service=service,
                            runtime=runtime)  # llmqfl.quantum.backends.backend_kinds
    engine, name, width, credentials = built.engine, built.name, built.width, built.credentials
    from llmqfl.quantum.backends.mitigation import readout_mitigation, runtime_options

    if isinstance(engine, RuntimeEngine):
        engine.mitigation = runtime_options(settings.mitigation)
    backend = Backend(
        kind=kind.name,
        name=name,
        num_qubits=width,
        shots=shots,
        seed=seed,
        mode=settings.mode,
        optimization_level=settings.optimization_level,
        retries=settings.retries,
        timeout_s=settings.timeout_s,
        backoff_s=settings.backoff_s,
        shot_budget=settings.shot_budget,
        credentials=credentials,
        service=built.service,
        traits=dict(kind.traits),
        _engine=engine,
        _sleep=sleep,
        mitigation=readout_mitigation(kind.name, settings.mitigation, shots=shots or DEFAULT_SHOTS,
                                      seed=derive_seed(seed, "mitigation")),
    )
    logger.info("backend: %s", backend.describe())
    return backend
