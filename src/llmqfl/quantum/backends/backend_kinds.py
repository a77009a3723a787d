"""The built-in backend kinds (``llmqfl.registry`` kind ``backend``; ``backend.kind`` names one).

A kind is a small class: its static traits (class attributes, ``registry.BACKEND_TRAITS``: the exact path
when shots are null, runtime options, readout mitigation, a job ledger, a real QPU) say what the rest of
the code may do with it, and three methods say how to check, build and time it:

``cfg`` is the run's ``backend`` section (:class:`llmqfl.settings.BackendSettings`: read ``cfg.name``,
``cfg.threads``, ...; every field is filled, the schema's defaults included):

* ``check(cfg, n_qubits)``: cheap parse-time checks (no network, no simulator built);
* ``build(cfg, seed=, n_qubits=, service=, runtime=)``: the :class:`Built` engine the Backend drives;
* ``timing_device(cfg)``: the fake device whose timings stand for it in a cost plan (None: no QPU seconds).

A new kind is one module with one such class under ``@register("backend", NAME)``, named in the config's
``extensions`` (docs/extending.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from llmqfl.quantum.backends.backend_config import DEFAULT_FAKE_DEVICE, check_width, fake_device, fake_device_names
from llmqfl.quantum.backends.credentials import Credentials, install_log_redaction, require_credentials
from llmqfl.quantum.backends.engines import (
    Engine,
    LocalRuntimeEngine,
    RuntimeApi,
    RuntimeEngine,
    aer_engine,
    noisy_engine,
)
from llmqfl.registry import register
from llmqfl.settings import BackendSettings

logger = logging.getLogger(__name__)
STAND_IN_DEVICE = "FakeBrisbane"  # a real device's timings when its fake twin is unknown (a 127-qubit Eagle)


@dataclass
class Built:
    """What a kind builds: the engine that runs pubs, the device's name and width, the account used."""

    engine: Engine
    name: str | None
    width: int | None
    credentials: Credentials | None = None
    service: Any | None = None  # kept on the Backend (the job ledger fetches submitted jobs back from it)


@runtime_checkable
class BackendKind(Protocol):
    """A backend kind: traits (class attributes) and how to check, build and time it."""

    exact_without_shots: ClassVar[bool]
    runtime_options: ClassVar[bool]
    readout_mitigation: ClassVar[bool]
    job_ledger: ClassVar[bool]
    qpu: ClassVar[bool]
    device_checks: ClassVar[bool]

    def check(self, cfg: BackendSettings, n_qubits: int | None) -> None: ...

    def build(self, cfg: BackendSettings, *, seed: int, n_qubits: int, service: Any | None,
              runtime: RuntimeApi | None) -> Built: ...

    def timing_device(self, cfg: BackendSettings) -> str | None: ...


class _FakeDevice:
    """Shared by the kinds that run on a fake IBM device (``backend.name``, default FakeManilaV2)."""

    def check(self, cfg: BackendSettings, n_qubits: int | None) -> None:
        name = cfg.name or DEFAULT_FAKE_DEVICE
        check_width(fake_device(name).num_qubits, n_qubits, name)

    def timing_device(self, cfg: BackendSettings) -> str | None:
        return cfg.name or DEFAULT_FAKE_DEVICE


@register("backend", "aer")
class Aer:
    """The ideal statevector simulator, sampled and seeded; with shots null, the exact path (no backend)."""

    exact_without_shots, runtime_options, readout_mitigation, job_ledger, qpu = True, False, False, False, False
    device_checks = False  # nothing to check at parse time beyond the schema (no device, no account)

    def check(self, cfg: BackendSettings, n_qubits: int | None) -> None:
        return None

    def build(self, cfg: BackendSettings, *, seed: int, n_qubits: int, service: Any | None,
              runtime: RuntimeApi | None) -> Built:
        if cfg.name:
            logger.info("backend.name %r is ignored for kind aer (ideal statevector)", cfg.name)
        return Built(aer_engine(seed, n_qubits, cfg.threads, cfg.aer_sampler), None, None)

    def timing_device(self, cfg: BackendSettings) -> str | None:
        return None


@register("backend", "aer_noisy")
class AerNoisy(_FakeDevice):
    """Aer with a fake device's noise model, circuits transpiled for the device."""

    exact_without_shots, runtime_options, readout_mitigation, job_ledger, qpu = False, False, True, False, False
    device_checks = True

    def build(self, cfg: BackendSettings, *, seed: int, n_qubits: int, service: Any | None,
              runtime: RuntimeApi | None) -> Built:
        name = cfg.name or DEFAULT_FAKE_DEVICE
        engine = noisy_engine(name, seed, cfg.threads, n_qubits, cfg.aer_sampler, cfg.noisy_engine)
        return Built(engine, name, engine.target.num_qubits)


@register("backend", "fake")
class Fake(_FakeDevice):
    """qiskit-ibm-runtime's local testing mode: the hardware code path on a fake device."""

    exact_without_shots, runtime_options, readout_mitigation, job_ledger, qpu = False, True, True, True, False
    device_checks = True

    def build(self, cfg: BackendSettings, *, seed: int, n_qubits: int, service: Any | None,
              runtime: RuntimeApi | None) -> Built:
        name = cfg.name or DEFAULT_FAKE_DEVICE
        device = fake_device(name)
        engine = LocalRuntimeEngine(device, cfg.mode, runtime or RuntimeApi.default(), threads=cfg.threads)
        return Built(engine, name, device.num_qubits)


@register("backend", "ibm")
class Ibm:
    """An IBM QPU through QiskitRuntimeService (a named device or the least busy one)."""

    exact_without_shots, runtime_options, readout_mitigation, job_ledger, qpu = False, True, True, True, True
    device_checks = True

    def check(self, cfg: BackendSettings, n_qubits: int | None) -> None:
        require_credentials()

    def build(self, cfg: BackendSettings, *, seed: int, n_qubits: int, service: Any | None,
              runtime: RuntimeApi | None) -> Built:
        from llmqfl.quantum.backends.ibm_connection import connect, ibm_device

        install_log_redaction()
        credentials = require_credentials()
        service = service if service is not None else connect(credentials)
        device = ibm_device(service, cfg.name, n_qubits)
        engine = RuntimeEngine(device, cfg.mode, runtime or RuntimeApi.default(), local=False)
        return Built(engine, device.name, device.num_qubits, credentials=credentials, service=service)

    def timing_device(self, cfg: BackendSettings) -> str | None:
        """The device's fake twin (ibm_brisbane -> FakeBrisbane), or a stand-in when qiskit has none."""
        twin = "Fake" + "".join(part.capitalize() for part in str(cfg.name or "").split("_")[1:])
        return twin if twin in fake_device_names() else STAND_IN_DEVICE
