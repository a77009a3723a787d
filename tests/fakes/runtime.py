"""A fake IBM Quantum runtime: service, Batch/Session, Sampler/Estimator and jobs, all offline.

It mirrors what ``llmqfl.quantum.backends.backend`` uses of ``QiskitRuntimeService`` and the runtime
primitives: ``backends()``, ``backend(name)``, ``least_busy(...)``; primitives built with
``mode=`` a device, Batch or Session and ``options={"default_shots": ...}``; jobs with
``job_id()``, ``status()``, ``in_final_state()``, ``result()``, ``usage()``, ``cancel()``.
Like the real service it rejects circuits that are not ISA for the device, and it can be told
to fail or hang the next jobs (or submissions), with reasons that may echo the account token as a
careless upstream error would.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit_aer.primitives import EstimatorV2 as AerEstimator
from qiskit_aer.primitives import SamplerV2 as AerSampler

from llmqfl.quantum.backends.backend import RuntimeApi


class FakeBackendNotFoundError(Exception):
    """Like ``QiskitBackendNotFoundError``."""


class FakeRuntimeJobFailureError(Exception):
    """Like ``RuntimeJobFailureError``."""


class FakeRequestsApiError(Exception):
    """Like ``RequestsApiError`` raised when a submission is refused."""


@dataclass
class _Fault:
    kind: str  # "fail", "hang" or "refuse"
    reason: str


class FakeRuntimeJob:
    """A job that is DONE, ERROR, or stuck in QUEUED (a hang), with a fixed QPU usage."""

    def __init__(self, job_id: str, *, compute: Any, fault: _Fault | None, usage_s: float) -> None:
        self._job_id = job_id
        self._compute = compute
        self._fault = fault
        self._usage_s = usage_s
        self._status = "QUEUED" if fault and fault.kind == "hang" else ("ERROR" if fault else "DONE")
        self.cancelled = False
        self.result_calls = 0

    def job_id(self) -> str:
        return self._job_id

    def status(self) -> str:
        return self._status

    def in_final_state(self) -> bool:
        return self._status in ("DONE", "ERROR", "CANCELLED")

    def done(self) -> bool:
        return self._status == "DONE"

    def cancel(self) -> None:
        if self.in_final_state():
            raise FakeRuntimeJobFailureError(f"Job {self._job_id} cannot be cancelled: already {self._status}")
        self._status = "CANCELLED"
        self.cancelled = True

    def result(self, timeout: float | None = None) -> Any:
        self.result_calls += 1
        if self._status == "QUEUED":
            raise AssertionError("result() on a job that never finishes would block forever")
        if self._status == "CANCELLED":
            raise FakeRuntimeJobFailureError(f"Unable to retrieve result for job {self._job_id}. Job was cancelled.")
        if self._status == "ERROR":
            raise FakeRuntimeJobFailureError(f"Unable to retrieve job result. {self._fault.reason}")
        return self._compute()

    def usage(self, partial: bool = False) -> float:
        return self._usage_s if self._status == "DONE" else 0.0

    def metrics(self) -> dict[str, Any]:
        return {"usage": {"quantum_seconds": self.usage(), "status": "complete"}}


class FakeBatch:
    """Like ``qiskit_ibm_runtime.Batch``: jobs submitted through it share its id; ``close()`` ends it."""

    kind = "batch"
    _ids = itertools.count(1)

    def __init__(self, backend: Any, max_time: int | None = None) -> None:
        self._backend = backend
        self.session_id = f"{self.kind}-{next(self._ids)}"
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeSession(FakeBatch):
    """Like ``qiskit_ibm_runtime.Session``."""

    kind = "session"


class _FakePrimitive:
    program_id = ""

    def __init__(self, mode: Any = None, options: dict | None = None, *, service: FakeRuntimeService) -> None:
        self.mode = mode
        self.options = dict(options or {})
        self.service = service

    def _device(self) -> Any:
        return self.mode._backend if isinstance(self.mode, FakeBatch) else self.mode


class FakeSampler(_FakePrimitive):
    program_id = "sampler"

    def run(self, pubs: list, *, shots: int | None = None) -> FakeRuntimeJob:
        shots = shots or self.options.get("default_shots") or 4096
        coerced = [SamplerPub.coerce(pub, shots) for pub in pubs]
        seed = self.service.seed
        return self.service._submit(self, coerced, lambda: AerSampler(seed=seed).run(coerced).result())


class FakeEstimator(_FakePrimitive):
    program_id = "estimator"

    def run(self, pubs: list, *, precision: float | None = None) -> FakeRuntimeJob:
        shots = self.options.get("default_shots") or 4096
        precision = precision or shots**-0.5
        coerced = [EstimatorPub.coerce(pub, precision) for pub in pubs]
        options = {"run_options": {"seed_simulator": self.service.seed}}
        return self.service._submit(self, coerced, lambda: AerEstimator(options=options).run(coerced).result())


@dataclass
class SubmittedJob:
    """What the fake service saw for one submission (for assertions)."""

    job: FakeRuntimeJob
    program_id: str
    device: str
    mode: str  # "job", "batch" or "session"
    mode_id: str | None
    options: dict
    n_pubs: int


class FakeRuntimeService:
    """Stands in for ``QiskitRuntimeService``: fixed devices with pending-job counts, scripted faults."""

    def __init__(self, devices: dict[str, Any], *, pending: dict[str, int] | None = None, usage_s: float = 2.5,
                 seed: int = 11) -> None:
        self.devices = dict(devices)
        self.pending = {name: 0 for name in self.devices} | dict(pending or {})
        self.usage_s = usage_s
        self.seed = seed
        self.submitted: list[SubmittedJob] = []
        self.least_busy_calls: list[dict] = []
        self._faults: list[_Fault] = []
        self._ids = itertools.count(1)

    # --- the QiskitRuntimeService surface
    def backends(self, name: str | None = None, min_num_qubits: int | None = None, **_: Any) -> list[Any]:
        found = [d for n, d in sorted(self.devices.items()) if name in (None, n)]
        return [d for d in found if min_num_qubits is None or d.num_qubits >= min_num_qubits]

    def backend(self, name: str, instance: str | None = None) -> Any:
        if name not in self.devices:
            raise FakeBackendNotFoundError("No backend matches the criteria.")
        return self.devices[name]

    def least_busy(self, min_num_qubits: int | None = None, **kwargs: Any) -> Any:
        self.least_busy_calls.append({"min_num_qubits": min_num_qubits, **kwargs})
        candidates = self.backends(min_num_qubits=min_num_qubits)
        if not candidates:
            raise FakeBackendNotFoundError("No backend matches the criteria.")
        return min(candidates, key=lambda d: (self.pending[self._name(d)], self._name(d)))

    # --- test controls
    def fail_next(self, count: int = 1, reason: str = "Error code 1517; internal error") -> None:
        self._faults += [_Fault("fail", reason)] * count

    def hang_next(self, count: int = 1) -> None:
        self._faults += [_Fault("hang", "")] * count

    def refuse_next(self, count: int = 1, reason: str = "503 Service Unavailable") -> None:
        self._faults += [_Fault("refuse", reason)] * count

    def runtime_api(self) -> RuntimeApi:
        """The primitive, Batch and Session classes bound to this service."""
        return RuntimeApi(
            sampler=partial(FakeSampler, service=self),
            batch=FakeBatch,
            session=FakeSession,
        )

    # --- internals
    def _name(self, device: Any) -> str:
        return next(n for n, d in self.devices.items() if d is device)

    def _submit(self, primitive: _FakePrimitive, pubs: list, compute: Any) -> FakeRuntimeJob:
        mode = primitive.mode
        if isinstance(mode, FakeBatch) and mode.closed:
            raise FakeRequestsApiError(f"{mode.kind} {mode.session_id} is closed")
        device = primitive._device()
        for pub in pubs:
            _require_isa(pub.circuit, device)
        fault = self._faults.pop(0) if self._faults else None
        if fault and fault.kind == "refuse":
            raise FakeRequestsApiError(fault.reason)
        job = FakeRuntimeJob(f"fake-job-{next(self._ids):04d}", compute=compute, fault=fault, usage_s=self.usage_s)
        self.submitted.append(SubmittedJob(
            job=job,
            program_id=primitive.program_id,
            device=self._name(device),
            mode=mode.kind if isinstance(mode, FakeBatch) else "job",
            mode_id=mode.session_id if isinstance(mode, FakeBatch) else None,
            options=primitive.options,
            n_pubs=len(pubs),
        ))
        return job


def _require_isa(circuit: Any, device: Any) -> None:
    """The runtime refuses circuits that the device cannot run as they are."""
    target = device.target
    if circuit.num_qubits != target.num_qubits:
        raise ValueError(f"circuit has {circuit.num_qubits} qubits, {device.name} has {target.num_qubits}: not ISA")
    for inst in circuit.data:
        name = inst.operation.name
        if name == "barrier":
            continue
        qargs = tuple(circuit.find_bit(q).index for q in inst.qubits)
        if not target.instruction_supported(name, qargs):
            raise ValueError(f"instruction {name} on {qargs} is not supported by {device.name}: not ISA")


@dataclass
class FakeAccount:
    """A fake token; long and distinctive so that a leak is easy to grep for."""

    token: str = "FAKE-TOKEN-0123456789abcdef-DO-NOT-LEAK"
    instance: str = "crn:v1:bluemix:public:quantum-computing:us-east:a/fake:instance::"
    extra: dict = field(default_factory=dict)
