"""Backend settings checked cheaply at parse time: shots, mitigation, fake device names, qubit fit, and each
kind's own checks (IBM credentials, a fake device's width; :mod:`llmqfl.quantum.backends.backend_kinds`).

No simulator is built and no network is touched here, so the Snakefile's preflight can call
:func:`check_backend_config` before anything runs; :func:`llmqfl.quantum.backends.backend.make_backend`
calls it again before it builds anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from llmqfl.config import validate_config
from llmqfl.contracts import check_qubit_fit
from llmqfl.errors import ConfigError
from llmqfl.quantum.backends.mitigation import check_mitigation
from llmqfl.registry import create

if TYPE_CHECKING:
    from qiskit.providers import BackendV2

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
    check_mitigation(kind, cfg.get("mitigation"))
    create("backend", kind).check(cfg, n_qubits)  # the kind's own checks (llmqfl.quantum.backends.backend_kinds)


def check_width(device_qubits: int | None, n_qubits: int | None, name: str) -> None:
    check_qubit_fit(n_qubits, device_qubits, name)
