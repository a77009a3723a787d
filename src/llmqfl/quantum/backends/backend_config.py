"""Backend settings checked cheaply at parse time: shots, mitigation, fake device names, qubit fit, and each
kind's own checks (IBM credentials, a fake device's width; :mod:`llmqfl.quantum.backends.backend_kinds`).

No simulator is built and no network is touched here, so the Snakefile's preflight can call
:func:`check_backend_config` before anything runs; :func:`llmqfl.quantum.backends.backend.make_backend`
calls it again before it builds anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmqfl.contracts import check_qubit_fit
from llmqfl.errors import ConfigError
from llmqfl.quantum.backends.mitigation import check_mitigation
from llmqfl.registry import create, traits
from llmqfl.settings import BackendSettings, Settings

if TYPE_CHECKING:
    from qiskit.providers import BackendV2

    from llmqfl.quantum.backends.backend_kinds import BackendKind

MODES = ("batch", "session", "job")
AER_SAMPLERS = ("distribution", "native")  # backend.aer_sampler: how the Aer kinds draw shots
DEFAULT_SHOTS = 1024
DEFAULT_FAKE_DEVICE = "FakeManilaV2"


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


def check_backend_config(settings: Settings | BackendSettings, *, n_qubits: int | None = None) -> BackendSettings:
    """Check the backend settings cheaply (no network, no simulator) and return them.

    ``settings`` is the whole :class:`~llmqfl.settings.Settings` (``n_qubits`` then defaults to
    ``qfl.n_qubits``) or just its ``backend`` section; the schema's checks and defaults are already
    behind it (:func:`llmqfl.config.load_settings`). Raises a one-line :class:`ConfigError` for an
    unknown device, more qubits than the device has, ``shots < 1``, mitigation the kind cannot honour,
    or ``kind: ibm`` without a token or saved account. The Snakefile's preflight calls this at parse
    time; :func:`make_backend` calls it again.
    """
    backend, n_qubits = _backend_section(settings, n_qubits)
    check_resolved(backend, resolve_kind(backend.kind), n_qubits)
    return backend


@dataclass(frozen=True)
class ResolvedKind:
    """``backend.kind`` looked up once: the registered kind's instance and its traits."""

    name: str
    kind: BackendKind
    traits: Mapping[str, Any]


def resolve_kind(name: str) -> ResolvedKind:
    """The registered backend kind ``name`` (a one-line :class:`ConfigError` listing the known ones otherwise)."""
    return ResolvedKind(name, create("backend", name), traits("backend", name))


def _backend_section(settings: Settings | BackendSettings, n_qubits: int | None) -> tuple[BackendSettings, int | None]:
    if isinstance(settings, Settings):
        return settings.backend, settings.qfl.n_qubits if n_qubits is None else n_qubits
    if isinstance(settings, BackendSettings):
        return settings, n_qubits
    raise TypeError(f"backend settings: expected Settings or BackendSettings (llmqfl.config.load_settings), "
                    f"got {type(settings).__name__}")


def check_resolved(backend: BackendSettings, kind: ResolvedKind, n_qubits: int | None) -> None:
    """:func:`check_backend_config`'s checks with the kind already looked up (:func:`make_backend` builds it next)."""
    if n_qubits is not None and (isinstance(n_qubits, bool) or not isinstance(n_qubits, int) or n_qubits < 1):
        raise ConfigError(f"config error: qfl.n_qubits: must be a positive integer, got {n_qubits!r}")
    shots = backend.shots
    if shots is not None and shots < 1:
        raise ConfigError(f"config error: backend.shots: must be >= 1 or null, got {shots}")
    check_mitigation(kind.name, backend.mitigation, kind.traits)
    kind.kind.check(backend, n_qubits)  # the kind's own checks (llmqfl.quantum.backends.backend_kinds)


def check_width(device_qubits: int | None, n_qubits: int | None, name: str) -> None:
    check_qubit_fit(n_qubits, device_qubits, name)
