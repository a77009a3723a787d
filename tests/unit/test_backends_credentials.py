"""Credentials: found like QiskitRuntimeService finds them, offline, and never shown."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from llmqfl.config import load_settings
from llmqfl.errors import ConfigError
from llmqfl.quantum.backends.backend import check_backend_config
from llmqfl.quantum.backends.credentials import (
    MASK,
    RedactingFilter,
    find_credentials,
    redact,
    register_secret,
    require_credentials,
)

TOKEN = "CRED-TEST-TOKEN-abcdef0123456789"


@pytest.fixture
def no_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HOME and no QISKIT_IBM_* variables."""
    for name in ("QISKIT_IBM_TOKEN", "QISKIT_IBM_INSTANCE", "QISKIT_IBM_CHANNEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def save_accounts(home: Path, accounts: dict) -> Path:
    path = home / ".qiskit" / "qiskit-ibm.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(accounts))
    return path


def test_token_from_environment(no_account: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    monkeypatch.setenv("QISKIT_IBM_TOKEN", TOKEN)
    monkeypatch.setenv("QISKIT_IBM_INSTANCE", "crn:v1:bluemix:public:quantum-computing:us-east:a/acct:my-instance::")
    # Execute
    credentials = find_credentials()
    # Assert
    assert credentials is not None
    assert (credentials.source, credentials.channel, credentials.instance) == (
        "env", "ibm_quantum_platform", "crn:v1:bluemix:public:quantum-computing:us-east:a/acct:my-instance::")
    assert credentials.token == TOKEN
    assert TOKEN not in repr(credentials) and TOKEN not in str(credentials.describe())


def test_saved_default_account_for_the_channel(no_account: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    save_accounts(no_account, {
        "other": {"channel": "ibm_cloud", "token": "OTHER-TOKEN-000000000", "instance": "cloud-instance"},
        "mine": {"channel": "ibm_quantum_platform", "token": TOKEN, "instance": "qp", "is_default_account": True},
    })
    monkeypatch.setenv("QISKIT_IBM_CHANNEL", "ibm_quantum_platform")
    # Execute
    credentials = find_credentials()
    # Assert
    assert credentials is not None
    assert (credentials.source, credentials.account_name, credentials.instance) == ("saved:mine", "mine", "qp")


def test_environment_token_wins_over_saved_account(no_account: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    save_accounts(no_account, {"mine": {"channel": "ibm_quantum_platform", "token": "SAVED-TOKEN-11111111"}})
    monkeypatch.setenv("QISKIT_IBM_TOKEN", TOKEN)
    # Execute
    credentials = find_credentials()
    # Assert
    assert credentials is not None and credentials.source == "env"


def test_no_account_is_a_clear_error_before_any_work(no_account: Path) -> None:
    # Prepare: an accounts file without tokens does not count
    save_accounts(no_account, {"broken": {"channel": "ibm_quantum_platform"}})
    # Execute / Assert
    assert find_credentials() is None
    with pytest.raises(ConfigError, match=r"^config error: backend.kind: ibm needs an IBM Quantum account: set "
                                          r"QISKIT_IBM_TOKEN"):
        require_credentials()
    with pytest.raises(ConfigError, match=r"backend\.kind: ibm needs an IBM Quantum account"):
        check_backend_config(load_settings({"backend": {"kind": "ibm"}, "qfl": {"n_qubits": 4}}))


def test_unknown_channel_is_rejected(no_account: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    monkeypatch.setenv("QISKIT_IBM_CHANNEL", "ibm_quantum")
    # Execute / Assert
    with pytest.raises(ConfigError, match="QISKIT_IBM_CHANNEL: 'ibm_quantum' is not one of"):
        find_credentials()


def test_unreadable_accounts_file_names_the_file(no_account: Path) -> None:
    # Prepare
    path = save_accounts(no_account, {})
    path.write_text("{not json")
    # Execute / Assert
    with pytest.raises(ConfigError, match=r"cannot read saved IBM accounts in .*qiskit-ibm\.json"):
        find_credentials()


def test_redact_masks_registered_secrets_and_token_assignments() -> None:
    # Prepare
    register_secret(TOKEN)
    text = f"401 Unauthorized for {TOKEN}; retry with token=SOMETHING-unregistered-1234 or apikey: 'xyzxyzxyz99'"
    # Execute
    cleaned = redact(text)
    # Assert
    assert TOKEN not in cleaned
    assert "SOMETHING-unregistered-1234" not in cleaned and "xyzxyzxyz99" not in cleaned
    assert cleaned.count(MASK) == 3
    assert redact("nothing secret here: shots=1024") == "nothing secret here: shots=1024"


def test_short_strings_are_never_treated_as_secrets() -> None:
    # Prepare
    register_secret("abc")
    # Execute / Assert
    assert redact("abc def") == "abc def"


def test_log_filter_masks_messages_and_exceptions(caplog: pytest.LogCaptureFixture) -> None:
    # Prepare
    register_secret(TOKEN)
    log = logging.getLogger("llmqfl.test_redaction")
    caplog.handler.addFilter(RedactingFilter())
    # Execute
    with caplog.at_level(logging.INFO):
        log.info("connecting with %s", TOKEN)
        try:
            raise RuntimeError(f"refused {TOKEN}")
        except RuntimeError:
            log.exception("failed")
    # Assert
    assert TOKEN not in caplog.text
    assert caplog.text.count(MASK) == 2
