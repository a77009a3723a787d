"""The ibm kind, offline, against a fake runtime service: device choice, modes, retries, secrecy."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from fakes.backend_settings import backend_settings
from fakes.runtime import FakeAccount, FakeRuntimeService
from qiskit.circuit.library import real_amplitudes, zz_feature_map
from qiskit_ibm_runtime.fake_provider import FakeManilaV2, FakeQuitoV2, FakeSherbrooke

from llmqfl.errors import ConfigError
from llmqfl.quantum.backends.backend import ShotBudgetExceeded, make_backend
from llmqfl.quantum.jobs.retries import JobFailedError

ACCOUNT = FakeAccount()
N_QUBITS = 4


@pytest.fixture
def account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeAccount:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("QISKIT_IBM_TOKEN", ACCOUNT.token)
    monkeypatch.setenv("QISKIT_IBM_INSTANCE", ACCOUNT.instance)
    monkeypatch.delenv("QISKIT_IBM_CHANNEL", raising=False)
    return ACCOUNT


@pytest.fixture
def service() -> FakeRuntimeService:
    devices = [FakeManilaV2(), FakeQuitoV2(), FakeSherbrooke()]
    return FakeRuntimeService({d.name: d for d in devices}, pending={"fake_manila": 7, "fake_quito": 2,
                                                                     "fake_sherbrooke": 40})


def build(service: FakeRuntimeService, **settings) -> object:
    sleeps: list[float] = []
    cfg = backend_settings(**({"kind": "ibm", "shots": 50, "backoff_s": 1.0} | settings))
    backend = make_backend(cfg, seed=1, n_qubits=N_QUBITS, service=service, runtime=service.runtime_api(),
                           sleep=sleeps.append)
    backend.sleeps = sleeps
    return backend


def pub() -> tuple:
    circuit = zz_feature_map(N_QUBITS, reps=1).compose(real_amplitudes(N_QUBITS, reps=1))
    circuit.measure_all()
    return circuit, np.random.default_rng(0).uniform(size=(2, 3, circuit.num_parameters))


def test_least_busy_device_in_a_batch(account: FakeAccount, service: FakeRuntimeService) -> None:
    # Prepare
    backend = build(service)
    # Execute
    result = backend.run_sampler([pub()])
    backend.close()
    # Assert
    assert service.least_busy_calls == [{"min_num_qubits": N_QUBITS, "operational": True, "simulator": False}]
    assert (backend.name, backend.num_qubits, backend.shots) == ("fake_quito", 5, 50)
    job = service.submitted[0]
    assert (job.program_id, job.device, job.mode) == ("sampler", "fake_quito", "batch")
    assert job.options["default_shots"] == 50
    assert result[0].data.meas.shape == (2, 3) and result[0].data.meas.num_shots == 50
    assert backend._engine.mode.closed


def test_named_device_in_a_session_runs_the_sampler(account: FakeAccount, service: FakeRuntimeService) -> None:
    # Prepare
    backend = build(service, name="fake_sherbrooke", mode="session")
    # Execute
    result = backend.run_sampler([pub()])
    # Assert
    assert backend.num_qubits == 127 and service.least_busy_calls == []
    job = service.submitted[0]
    assert (job.program_id, job.device, job.mode) == ("sampler", "fake_sherbrooke", "session")
    assert result[0].data.meas.shape == (2, 3)
    assert backend.usage()["shots"] == 2 * 3 * 50


def test_job_mode_submits_directly_to_the_device(account: FakeAccount, service: FakeRuntimeService) -> None:
    # Prepare
    backend = build(service, name="fake_manila", mode="job")
    # Execute
    backend.run_sampler([pub()])
    backend.close()
    # Assert
    assert service.submitted[0].mode == "job" and service.submitted[0].mode_id is None


def test_usage_reports_runtime_quantum_seconds(account: FakeAccount, service: FakeRuntimeService) -> None:
    # Prepare
    backend = build(service)
    # Execute
    backend.run_sampler([pub()])
    backend.run_sampler([pub()])
    # Assert
    usage = backend.usage()
    assert usage["quantum_seconds"] == pytest.approx(2 * service.usage_s)
    assert (usage["jobs"], usage["shots"], usage["circuits"], usage["failures"], usage["retries"]) == (
        2, 2 * 6 * 50, 12, 0, 0)


def test_a_failed_job_is_retried_after_backoff(account: FakeAccount, service: FakeRuntimeService) -> None:
    # Prepare
    backend = build(service, retries=2)
    service.fail_next(1, reason="Error code 3211; job cancelled by calibration")
    service.refuse_next(1)
    # Execute
    result = backend.run_sampler([pub()])
    # Assert
    assert result[0].data.meas.num_shots == 50
    assert backend.sleeps == [1.0, 2.0]
    usage = backend.usage()
    assert (usage["jobs"], usage["failures"], usage["retries"]) == (1, 2, 2)
    assert usage["quantum_seconds"] == pytest.approx(service.usage_s)  # the failed job charged nothing


def test_retries_exhausted_give_one_clear_error(account: FakeAccount, service: FakeRuntimeService) -> None:
    # Prepare
    backend = build(service, retries=1)
    service.fail_next(2, reason="Error code 1517; backend fake_quito is in maintenance")
    # Execute
    with pytest.raises(JobFailedError) as info:
        backend.run_sampler([pub()])
    # Assert
    last_id = service.submitted[-1].job.job_id()
    assert str(info.value) == (
        f"sampler job on ibm:fake_quito (job id {last_id}) failed after 2 attempts: FakeRuntimeJobFailureError: "
        "Unable to retrieve job result. Error code 1517; backend fake_quito is in maintenance"
    )
    assert backend.usage()["failures"] == 2 and backend.usage()["jobs"] == 0


def test_a_hung_job_times_out_is_cancelled_and_retried(account: FakeAccount, service: FakeRuntimeService) -> None:
    # Prepare: real waiting here (tiny timeout); back-off sleeps are recorded, not slept
    backend = build(service, retries=1, timeout_s=0.05)
    service.hang_next(1)
    # Execute
    result = backend.run_sampler([pub()])
    # Assert
    hung, done = service.submitted[0].job, service.submitted[1].job
    assert hung.cancelled and hung.result_calls == 0
    assert done.status() == "DONE" and result[0].data.meas.num_shots == 50
    assert backend.usage()["retries"] == 1


def test_the_token_never_reaches_logs_or_errors(account: FakeAccount, service: FakeRuntimeService,
                                                caplog: pytest.LogCaptureFixture) -> None:
    # Prepare: an upstream error that echoes the token, as careless API errors do
    leak = f"401 Client Error: Unauthorized for token {account.token}"
    # Execute
    with caplog.at_level(logging.DEBUG):
        backend = build(service, retries=1)
        service.fail_next(2, reason=leak)
        with pytest.raises(JobFailedError) as info:
            backend.run_sampler([pub()])
        described = str(backend.describe()) + repr(backend) + repr(backend.credentials)
    # Assert
    assert account.token not in caplog.text
    assert account.token not in str(info.value) and "***" in str(info.value)
    assert all(account.token not in reason for reason in info.value.reasons)
    assert account.token not in described
    assert "retry 1/1" in caplog.text  # the retry was logged, masked


def test_unknown_device_lists_the_available_ones(account: FakeAccount, service: FakeRuntimeService) -> None:
    # Execute / Assert
    with pytest.raises(ConfigError, match=r"backend.name: IBM device 'ibm_nowhere' is not available to this account "
                                          r"\(FakeBackendNotFoundError\); available: fake_manila, fake_quito, "
                                          r"fake_sherbrooke"):
        build(service, name="ibm_nowhere")
    assert service.submitted == []


def test_device_too_small_for_the_model(account: FakeAccount, service: FakeRuntimeService) -> None:
    # Execute / Assert
    with pytest.raises(ConfigError, match=r"qfl\.n_qubits: 6 qubits do not fit fake_manila, which has 5"):
        make_backend(backend_settings(kind="ibm", name="fake_manila"), seed=0, n_qubits=6, service=service,
                     runtime=service.runtime_api())


def test_no_device_large_enough(account: FakeAccount) -> None:
    # Prepare
    small = FakeRuntimeService({"fake_manila": FakeManilaV2()})
    # Execute / Assert
    with pytest.raises(ConfigError, match="no operational IBM device with >= 6 qubits"):
        make_backend(backend_settings(kind="ibm"), seed=0, n_qubits=6, service=small, runtime=small.runtime_api())


def test_ibm_without_account_fails_before_touching_the_service(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, service: FakeRuntimeService) -> None:
    # Prepare
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("QISKIT_IBM_TOKEN", raising=False)
    # Execute / Assert
    with pytest.raises(ConfigError, match=r"backend\.kind: ibm needs an IBM Quantum account"):
        build(service)
    assert service.least_busy_calls == [] and service.submitted == []


def test_shot_budget_on_hardware_counts_only_successful_jobs(account: FakeAccount,
                                                             service: FakeRuntimeService) -> None:
    # Prepare: one job = 6 circuits x 50 shots = 300 shots
    backend = build(service, shot_budget=700, retries=1)
    service.fail_next(1)
    # Execute
    backend.run_sampler([pub()])
    backend.run_sampler([pub()])
    # Assert
    assert backend.remaining_shots() == 100
    with pytest.raises(ShotBudgetExceeded):
        backend.run_sampler([pub()])
    assert len(service.submitted) == 3  # two successes and the failed attempt; nothing after the budget


def test_a_resumed_run_charges_its_restored_shots_to_the_budget_of_the_next_job(
        account: FakeAccount, service: FakeRuntimeService) -> None:
    # Prepare: a 700-shot budget, 500 of which the restored rounds already used; one job = 300 shots
    from types import SimpleNamespace

    from llmqfl.federated.run import _on_start

    backend = build(service, shot_budget=700, retries=1)
    # Execute: what the qfl stage does when it resumes from a checkpoint
    _on_start(SimpleNamespace(round=0, rows=[], shots_used=500), log_metrics=lambda *a, **k: None, backend=backend)
    # Assert: 200 left, so the next job is refused before it is submitted
    assert backend.remaining_shots() == 200
    with pytest.raises(ShotBudgetExceeded):
        backend.run_sampler([pub()])
    assert service.submitted == []
