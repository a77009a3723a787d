"""IBM Quantum credentials: find them cheaply, never show them.

The token is resolved the way ``QiskitRuntimeService()`` resolves it (``QISKIT_IBM_TOKEN``, plus
``QISKIT_IBM_INSTANCE`` / ``QISKIT_IBM_CHANNEL``; otherwise a saved account in
``~/.qiskit/qiskit-ibm.json``), but without any network call, so the Snakefile can check at parse
time that a ``kind: ibm`` run will be able to authenticate. Every resolved token is registered
here, and :func:`redact` / :class:`RedactingFilter` mask it in any text or log record: error
messages from the runtime client can echo request headers, and none of that may reach logs,
MLflow or DVC files.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from llmqfl.errors import ConfigError

TOKEN_ENV = "QISKIT_IBM_TOKEN"
INSTANCE_ENV = "QISKIT_IBM_INSTANCE"
CHANNEL_ENV = "QISKIT_IBM_CHANNEL"
DEFAULT_CHANNEL = "ibm_quantum_platform"
CHANNELS = ("ibm_quantum_platform", "ibm_cloud")
MASK = "***"

# Every secret seen in this process; redact() masks all of them.
_SECRETS: set[str] = set()
# Shorter strings are not masked: they would mangle ordinary text and cannot be real API keys.
_MIN_SECRET_LEN = 8


@dataclass(frozen=True)
class Credentials:
    """Where the IBM account comes from; the token is kept out of ``repr`` and :meth:`describe`."""

    source: str  # "env" or "saved:<account name>"
    channel: str
    instance: str | None
    account_name: str | None = None
    token: str = field(default="", repr=False)

    def describe(self) -> dict[str, str | None]:
        """What may be logged (MLflow params, run logs): everything but the token."""
        return {"source": self.source, "channel": self.channel, "instance": self.instance}


def register_secret(secret: str | None) -> None:
    """Remember ``secret`` so that :func:`redact` masks it from now on."""
    if secret and len(secret) >= _MIN_SECRET_LEN:
        _SECRETS.add(secret)


def redact(text: object) -> str:
    """``str(text)`` with every registered secret (and any ``token=...`` value) replaced by ``***``."""
    message = str(text)
    for secret in sorted(_SECRETS, key=len, reverse=True):
        message = message.replace(secret, MASK)
    # A token that was never registered (e.g. from a config file passed to the runtime) still
    # tends to appear as token=..., "token": "...", or a bearer header.
    return _TOKEN_PATTERN.sub(lambda m: m.group(1) + MASK, message)


_TOKEN_PATTERN = re.compile(
    r"((?:token|apikey|api_key|authorization)[\"']?\s*[:=]\s*[\"']?(?:bearer\s+)?)[A-Za-z0-9._\-]{8,}",
    re.IGNORECASE,
)


class RedactingFilter(logging.Filter):
    """A logging filter that masks registered secrets in the formatted message of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            if redact(exc) != str(exc):
                # the traceback text would show the raw exception: drop it, keep the masked message
                record.msg = f"{cleaned} ({type(exc).__name__}: {redact(exc)})"
                record.args, record.exc_info, record.exc_text = None, None, None
        return True


def install_log_redaction(*logger_names: str) -> RedactingFilter:
    """Attach one :class:`RedactingFilter` to the root handlers and to the named loggers (idempotent)."""
    names = logger_names or ("llmqfl", "qiskit_ibm_runtime")
    flt = next(
        (f for f in logging.getLogger().filters if isinstance(f, RedactingFilter)),
        RedactingFilter(),
    )
    targets: list[logging.Filterer] = [logging.getLogger(), *logging.getLogger().handlers]
    targets += [logging.getLogger(name) for name in names]
    for target in targets:
        if not any(isinstance(f, RedactingFilter) for f in target.filters):
            target.addFilter(flt)
    return flt


def accounts_file() -> Path:
    """The runtime client's saved-account file (resolved at call time, so tests can move HOME)."""
    return Path(os.path.expanduser("~")) / ".qiskit" / "qiskit-ibm.json"


def find_credentials(*, environ: dict[str, str] | None = None, path: Path | None = None) -> Credentials | None:
    """The account ``QiskitRuntimeService()`` would use, or ``None``; reads env and one file, no network."""
    env = os.environ if environ is None else environ
    return _find_credentials(env, path or accounts_file())


def _find_credentials(env: os._Environ[str] | dict[str, str], path: Path) -> Credentials | None:
    channel = env.get(CHANNEL_ENV) or DEFAULT_CHANNEL
    if channel not in CHANNELS:
        raise ConfigError(f"config error: {CHANNEL_ENV}: {channel!r} is not one of: {', '.join(CHANNELS)}")
    token = env.get(TOKEN_ENV, "").strip()
    if token:
        register_secret(token)
        instance = check_instance(env.get(INSTANCE_ENV) or None, where=INSTANCE_ENV)
        return Credentials(source="env", channel=channel, instance=instance, token=token)
    accounts = _read_accounts(path)
    name = _pick_saved_account(accounts, env.get(CHANNEL_ENV))
    if name is None:
        return None
    account = accounts[name]
    register_secret(account.get("token"))
    return Credentials(
        source=f"saved:{name}",
        channel=account.get("channel") or DEFAULT_CHANNEL,
        instance=check_instance(account.get("instance"), where=f"instance of saved IBM account {name!r} in {path}"),
        account_name=name,
        token=account["token"],
    )


# A CRN as the runtime client parses it: crn:version:cname:ctype:service:location:scope:instance:...
_CRN = re.compile(r"^crn:[^:\s]+:[^:\s]+:[^:\s]+:[^:\s]+:[^:\s]+:[^:\s]*:[^:\s]+(?::[^:\s]*)*$")
# Otherwise a service-instance name (the client resolves it to a CRN): no ':' and no control characters.
_INSTANCE_NAME = re.compile(r"^[^:\x00-\x1f\x7f]{1,200}$")


def check_instance(instance: object, *, where: str) -> str | None:
    """A usable IBM instance (a full CRN or a service-instance name) or None; a :class:`ConfigError` otherwise.

    The runtime client assumes a value starting with ``crn:`` has every CRN field and fails with an
    ``AttributeError`` deep inside when one is missing; this says what is wrong before any job starts.
    The value itself is not echoed (it identifies an account).
    """
    if instance is None:
        return None
    if not isinstance(instance, str) or not instance.strip():
        raise ConfigError(f"config error: {where}: must be a CRN (crn:v1:...) or an instance name, "
                          f"got an empty or non-text value")
    value = instance.strip()
    if value.lower().startswith("crn:"):
        if not _CRN.match(value):
            raise ConfigError(f"config error: {where}: malformed CRN ({value.count(':') + 1} ':'-separated fields); "
                              f"expected crn:v1:<cname>:<ctype>:<service>:<location>:<scope>:<instance>::")
    elif not _INSTANCE_NAME.match(value):
        raise ConfigError(f"config error: {where}: not a CRN (crn:v1:...) nor an instance name "
                          f"(names have no ':' or control characters)")
    return value


def _read_accounts(path: Path) -> dict[str, dict]:
    try:
        loaded = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"config error: cannot read saved IBM accounts in {path}: {type(exc).__name__}") from None
    if not isinstance(loaded, dict):
        return {}
    return {name: acc for name, acc in loaded.items() if isinstance(acc, dict) and acc.get("token")}


def _pick_saved_account(accounts: dict[str, dict], channel: str | None) -> str | None:
    """Same precedence as the runtime's AccountManager.get: default for the channel, then any."""
    if not accounts:
        return None
    ordered = sorted(accounts)
    for name in ordered:
        acc = accounts[name]
        if acc.get("is_default_account") and (channel is None or acc.get("channel") == channel):
            return name
    for name in ordered:
        if channel is None or accounts[name].get("channel") == channel:
            return name
    return None


def require_credentials(*, environ: dict[str, str] | None = None, path: Path | None = None) -> Credentials:
    """Like :func:`find_credentials` but a clear :class:`ConfigError` when there is no account."""
    credentials = find_credentials(environ=environ, path=path)
    if credentials is None:
        raise ConfigError(
            f"config error: backend.kind: ibm needs an IBM Quantum account: set {TOKEN_ENV} "
            f"(and {INSTANCE_ENV}) or save one with QiskitRuntimeService.save_account(); none found in the "
            f"environment or {path or accounts_file()}"
        )
    return credentials
