"""The IBM Quantum connection: a live ``QiskitRuntimeService`` and the device a run uses.

Every failure becomes one line with the token masked (:func:`llmqfl.quantum.backends.credentials.redact`):
an :class:`~llmqfl.errors.OfflineError` when the service cannot be reached, a
:class:`~llmqfl.errors.ConfigError` when the named device is not available or none fits.
"""

from __future__ import annotations

from typing import Any

from llmqfl.errors import ConfigError, OfflineError
from llmqfl.quantum.backends.backend_config import check_width
from llmqfl.quantum.backends.credentials import Credentials, redact


def connect(credentials: Credentials) -> Any:
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


def ibm_device(service: Any, name: str | None, n_qubits: int) -> Any:
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
        check_width(device.num_qubits, n_qubits, device.name)
        return device
    try:
        return service.least_busy(operational=True, simulator=False, min_num_qubits=n_qubits)
    except Exception as exc:
        raise ConfigError(
            redact(f"config error: backend.name: no operational IBM device with >= {n_qubits} qubits "
                   f"({type(exc).__name__}: {exc})")
        ) from None
