"""Engines: what differs between backend kinds, behind one small interface the Backend drives.

An engine knows the device the pass manager targets and builds a fresh primitive per job (so each
job gets its own seed): :class:`AerEngine` for the ideal and noisy Aer simulators,
:class:`RuntimeEngine` for qiskit-ibm-runtime primitives on an IBM QPU (job, batch or session
mode) and :class:`LocalRuntimeEngine` for the runtime's local testing mode on a fake device.

The runtime primitive is the client-side ``executor_sampler.Sampler``: in qiskit-ibm-runtime 0.51
the server-side ``SamplerV2`` is deprecated in its favour. Every evaluation the pipeline makes is a
sampler job (:mod:`llmqfl.quantum.training.primitive`); there is no estimator path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmqfl.config import derive_seed
from llmqfl.errors import ConfigError
from llmqfl.quantum.backends.backend_config import AER_SAMPLERS, fake_device
from llmqfl.quantum.backends.credentials import redact

if TYPE_CHECKING:
    from qiskit import QuantumCircuit
    from qiskit.providers import BackendV2

logger = logging.getLogger(__name__)

_DENSITY_MATRIX_MAX_QUBITS = 8


@dataclass(frozen=True)
class RuntimeApi:
    """The qiskit-ibm-runtime classes the ``fake`` and ``ibm`` kinds use; tests swap in fakes."""

    sampler: Callable[..., Any]
    batch: Callable[..., Any]
    session: Callable[..., Any]

    @classmethod
    def default(cls) -> RuntimeApi:
        from qiskit_ibm_runtime import Batch, Session
        from qiskit_ibm_runtime.executor_sampler import Sampler

        return cls(sampler=Sampler, batch=Batch, session=Session)


class Engine:
    """Kind-specific parts: the device the pass manager targets, and fresh primitives per job."""

    target: BackendV2
    reports_usage = False  # True: quantum seconds come from job.usage() (hardware)

    def sampler(self, *, shots: int, seed: int) -> Any:
        raise NotImplementedError

    def prepare(self, circuits: list[QuantumCircuit]) -> None:
        """Called with a job's ISA circuits before its primitive is built; most engines need nothing."""

    def close(self) -> None:
        """Nothing to close for simulators."""


class AerEngine(Engine):
    """Ideal (statevector) or noisy Aer; primitives are rebuilt per job so each job has its own seed."""

    def __init__(
        self, simulator: Any, target: BackendV2, *, sampler: str = "distribution", noisy_engine: str = "auto"
    ) -> None:
        if sampler not in AER_SAMPLERS:
            raise ConfigError(f"config error: backend.aer_sampler: expected one of {AER_SAMPLERS}, got {sampler!r}")
        self.simulator = simulator
        self.target = target
        self.sampler_kind = sampler
        self.noisy_engine = noisy_engine  # backend.noisy_engine: auto = quantum.simulators.noisy_exact where it fits
        self._plans: dict[int, Any] = {}  # ISA circuit id -> (circuit, DistributionPlan | None), shared by jobs
        self._noisy_engines: dict[int, Any] = {}  # ISA circuit id -> (circuit, NoisyExactEngine | None)

    def sampler(self, *, shots: int, seed: int) -> Any:
        if self.sampler_kind == "distribution":
            # Aer computes each binding's outcome distribution, shots are drawn from it in numpy:
            # same distribution as Aer's measure sampling, ~10x less time (see llmqfl.quantum.simulators.aer_sampler)
            from llmqfl.quantum.simulators.aer_sampler import DistributionSamplerV2

            noise = self.simulator.options.noise_model
            if self.noisy_engine == "auto" and noise is not None and not noise.is_ideal():
                # the same distributions and draws from numpy superoperators, ~10x+ faster (noisy_exact)
                from llmqfl.quantum.simulators.noisy_exact import NoisyExactSamplerV2

                return NoisyExactSamplerV2(self.simulator, seed=seed, default_shots=shots, plans=self._plans,
                                           engines=self._noisy_engines)
            return DistributionSamplerV2(self.simulator, seed=seed, default_shots=shots, plans=self._plans)
        from qiskit_aer.primitives import SamplerV2

        return SamplerV2.from_backend(self.simulator, seed=seed, default_shots=shots)


class RuntimeEngine(Engine):
    """qiskit-ibm-runtime primitives in job, batch or session mode (local fake device or IBM QPU)."""

    def __init__(self, device: BackendV2, mode: str, api: RuntimeApi, *, local: bool) -> None:
        self.target = device
        self.api = api
        self.local = local
        self.reports_usage = not local
        self.mode_name = mode
        self.mitigation: dict[str, Any] = {}  # runtime Sampler options (quantum.backends.mitigation.runtime_options)
        self.mode = self._first_mode(device)
        self._closed = False

    def _first_mode(self, device: BackendV2) -> Any:
        """The mode the first job runs in: a Batch/Session on the device (or the device, job mode)."""
        return self._open(device)

    def _open(self, backend: Any) -> Any:
        """The primitives' ``mode``: a Batch or Session on ``backend``, or ``backend`` itself (job mode)."""
        if self.mode_name == "batch":
            return self.api.batch(backend=backend)
        if self.mode_name == "session":
            return self.api.session(backend=backend)
        return backend

    def _options(self, shots: int, seed: int) -> dict[str, Any]:
        options: dict[str, Any] = {"default_shots": shots, **self.mitigation}
        if self.local:
            options["simulator"] = {"seed_simulator": seed}
        return options

    def sampler(self, *, shots: int, seed: int) -> Any:
        return self.api.sampler(mode=self.mode, options=self._options(shots, seed))

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


class LocalRuntimeEngine(RuntimeEngine):
    """Local testing mode on a fake device, with the device's Aer simulator built once, not per job.

    Given the fake device as ``mode``, local mode runs ``AerSimulator.from_backend(device)`` for
    every job. Here the runtime primitives get that simulator built once, with the device's noise
    on the qubits the circuits use (:mod:`llmqfl.quantum.simulators.device_noise`: the same counts for the same
    seed), rebuilt only if a later circuit uses other qubits. Transpilation still targets the device.
    """

    def __init__(self, device: BackendV2, mode: str, api: RuntimeApi, *, threads: int) -> None:
        self.threads = threads
        self.qubits: frozenset[int] | None = frozenset()
        super().__init__(device, mode, api, local=True)

    def _first_mode(self, device: BackendV2) -> Any:
        """None: :meth:`prepare` opens the mode on the simulator once the first job's qubits are known."""
        return None

    def prepare(self, circuits: list[QuantumCircuit]) -> None:
        from qiskit_aer import AerSimulator

        from llmqfl.quantum.simulators.device_noise import active_qubits, device_noise_model

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

def aer_engine(seed: int, n_qubits: int, threads: int, sampler: str = "distribution") -> AerEngine:
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
    return AerEngine(simulator, simulator, sampler=sampler)


def noisy_engine(
    name: str, seed: int, threads: int, n_qubits: int, sampler: str = "distribution", engine: str = "auto"
) -> AerEngine:
    from qiskit_aer import AerSimulator

    device = fake_device(name)
    # Few qubits, few shots per circuit: one density-matrix run per circuit beats one noisy
    # statevector trajectory per shot (300 circuits x 10 shots on FakeManilaV2: 0.6 s vs 3.2 s).
    # Idle device qubits are truncated away, so this holds on 127-qubit devices too.
    method = "density_matrix" if n_qubits <= _DENSITY_MATRIX_MAX_QUBITS else "automatic"
    simulator = AerSimulator.from_backend(
        device, method=method, seed_simulator=derive_seed(seed, "simulator"), max_parallel_threads=threads
    )
    return AerEngine(simulator, device, sampler=sampler, noisy_engine=engine)
