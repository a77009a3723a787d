"""The job ledger (llmqfl.quantum.jobs.job_ledger): a killed hardware-path run never pays for a finished job twice.

The kill test runs the ``qfl`` stage on ``fake`` (FakeManilaV2, few shots), SIGKILLs it inside its
second round once two of that round's jobs are on record, resumes it, and checks from the ledger that
no finished job was submitted again and that history and weights equal an uninterrupted run's. The
unit tests cover replay, a torn last line, a ledger of another run, fetch-by-id on ``ibm``, a failed
job, and ``llmqfl ledger``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fakes.backend_settings import backend_settings
from fakes.runtime import FakeRuntimeService
from qfl_stage_inputs import _argv, _config, _history
from qiskit.circuit.library import real_amplitudes, zz_feature_map
from qiskit_ibm_runtime.fake_provider import FakeManilaV2

from llmqfl import cli
from llmqfl.quantum.backends.backend import make_backend
from llmqfl.quantum.jobs.job_ledger import (
    LEDGER_NAME,
    JobLedger,
    LedgerError,
    LedgerMismatchError,
    attach_ledger,
    read_ledger,
)
from llmqfl.quantum.jobs.ledger_report import analyse
from llmqfl.quantum.jobs.retries import JobFailedError
from llmqfl.stages import qfl as stage

ROOT = Path(__file__).resolve().parents[2]
FINGERPRINT = "a" * 64


def _records(path: Path, kind: str | None = None) -> list[dict[str, Any]]:
    records = read_ledger(path / "checkpoints" / LEDGER_NAME if path.is_dir() else path).records
    return [r for r in records if kind is None or r["type"] == kind]


def _count(ledger: Path, kind: str) -> int:
    try:
        return ledger.read_bytes().count(f'{{"type":"{kind}"'.encode())
    except FileNotFoundError:
        return 0


# ---------------------------------------------------------------------------- the kill test


def test_killed_fake_run_replays_finished_jobs_and_ends_as_the_uninterrupted_run(results: Path) -> None:
    # Prepare: an uninterrupted reference, then the same run SIGKILLed mid-round 2
    config = _config(n_qubits=2)
    config["backend"] = {"kind": "fake", "name": "FakeManilaV2", "shots": 32}
    reference, killed = results / "reference", results / "killed"
    assert stage.main(_argv(results, "llm_guided", config, out=str(reference))) == 0
    ledger = killed / "checkpoints" / LEDGER_NAME
    process = subprocess.Popen(
        [sys.executable, "-m", "llmqfl.stages.qfl", *_argv(results, "llm_guided", config, out=str(killed))],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline, in_round_1 = time.monotonic() + 120, None
    while process.poll() is None:
        assert time.monotonic() < deadline, "the killed run never reached its second round"
        if in_round_1 is None and (killed / "checkpoints" / "round_1.json").exists():
            in_round_1 = _count(ledger, "result")
        if in_round_1 is not None and _count(ledger, "result") >= in_round_1 + 2:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    process.wait()
    assert process.returncode == -signal.SIGKILL and not (killed / "history.parquet").exists()
    before = {(r["key"], r["n"]) for r in _records(killed, "result")}
    # Execute
    assert stage.main(_argv(results, "llm_guided", config, "--resume", out=str(killed))) == 0
    # Assert: the same numbers as the uninterrupted run
    pd.testing.assert_frame_equal(_history(killed / "history.parquet"), _history(reference / "history.parquet"))
    np.testing.assert_array_equal(np.load(killed / "weights.npy"), np.load(reference / "weights.npy"))
    # no job whose result was on record was submitted again; round 2's finished jobs were replayed
    records = _records(killed)
    opened = [i for i, r in enumerate(records) if r["type"] == "open"]
    assert len(opened) == 2 and records[opened[1]]["resume"]
    resumed = records[opened[1]:]
    submitted_again = {(r["key"], r["n"]) for r in resumed if r["type"] == "submitted"} & before
    replayed = [(r["key"], r["n"]) for r in resumed if r["type"] == "replayed"]
    assert not submitted_again
    assert len(replayed) >= 2 and set(replayed) <= before
    # accounting says it: submitted vs replayed; the reference replayed nothing
    accounting = json.loads((killed / "accounting.json").read_text())["job_ledger"]
    assert accounting["jobs_replayed"] == len(replayed) > 0
    assert accounting["jobs_submitted"] == sum(1 for r in resumed if r["type"] == "result")
    assert json.loads((reference / "accounting.json").read_text())["job_ledger"]["jobs_replayed"] == 0
    # the ledger alone recovers the run: the same finished jobs and shots as the reference, the same losses
    got, want = analyse(killed / "checkpoints"), analyse(reference / "checkpoints")
    assert got["totals"]["resubmitted_after_result"] == 0 and got["resumes"] == 1
    for key in ("jobs", "shots", "circuits"):
        assert got["totals"][key] == want["totals"][key]
    assert [r["jobs"] for r in got["rounds"]] == [r["jobs"] for r in want["rounds"]]
    server = pd.read_parquet(reference / "history.parquet").query("client == -1")
    assert [r["server_val_loss"] for r in got["rounds"]] == pytest.approx(server["loss"].tolist(), abs=0)


# ---------------------------------------------------------------------------- unit tests


def _pub(shift: float = 0.0) -> tuple:
    circuit = zz_feature_map(2, reps=1).compose(real_amplitudes(2, reps=1))
    circuit.measure_all()
    return circuit, np.random.default_rng(0).uniform(size=(2, 3, circuit.num_parameters)) + shift


class JobService(FakeRuntimeService):
    """The fake runtime service, plus ``job(job_id)`` as ``QiskitRuntimeService`` has it."""

    def job(self, job_id: str) -> Any:
        self.fetched = [*getattr(self, "fetched", []), job_id]
        return next(s.job for s in self.submitted if s.job.job_id() == job_id)


@pytest.fixture
def ibm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> JobService:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("QISKIT_IBM_TOKEN", "FAKE-TOKEN-0123456789abcdef")
    monkeypatch.setenv("QISKIT_IBM_INSTANCE", "crn:v1:bluemix:public:quantum-computing:us-east:a/fake:instance::")
    monkeypatch.delenv("QISKIT_IBM_CHANNEL", raising=False)
    device = FakeManilaV2()
    return JobService({device.name: device})


def _backend(service: JobService, directory: Path, *, resume: bool, fingerprint: str = FINGERPRINT) -> Any:
    settings = backend_settings(kind="ibm", name="fake_manila", shots=40, backoff_s=0.0)
    backend = make_backend(settings, seed=1, n_qubits=2, service=service, runtime=service.runtime_api(),
                           sleep=lambda s: None)
    attach_ledger(backend, directory, fingerprint=fingerprint, resume=resume)
    return backend


def _counts(result: Any) -> np.ndarray:
    return result[0].data.meas.array


def test_a_resumed_run_replays_stored_results_and_submits_only_the_rest(ibm: JobService, tmp_path: Path) -> None:
    # Prepare: two jobs on record
    first = _backend(ibm, tmp_path, resume=False)
    originals = [first.run_sampler([_pub(s)]) for s in (0.0, 1.0)]
    # Execute: the "resumed" process asks for the same two jobs and a new one
    second = _backend(ibm, tmp_path, resume=True)
    again = [second.run_sampler([_pub(s)]) for s in (0.0, 1.0, 2.0)]
    # Assert
    assert len(ibm.submitted) == 3  # only the new job went to the service
    for old, new in zip(originals, again, strict=False):
        np.testing.assert_array_equal(_counts(old), _counts(new))
        assert new[0].data.meas.num_bits == old[0].data.meas.num_bits
    summary = second.ledger.summary()
    assert (summary["jobs_replayed"], summary["jobs_submitted"]) == (2, 1)
    assert second.usage()["jobs"] == 3 and second.usage()["retries"] == 0
    assert second.usage()["quantum_seconds"] == pytest.approx(3 * ibm.usage_s)  # replays carry what they cost


def test_a_torn_last_line_is_cut_and_its_job_runs_again(ibm: JobService, tmp_path: Path) -> None:
    # Prepare: the second job's result record cut in half, as by a kill mid-write
    first = _backend(ibm, tmp_path, resume=False)
    first.run_sampler([_pub(0.0)])
    first.run_sampler([_pub(1.0)])
    path = tmp_path / LEDGER_NAME
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 200])
    assert read_ledger(path).torn_tail
    # Execute
    second = _backend(ibm, tmp_path, resume=True)
    second.run_sampler([_pub(0.0)])
    second.run_sampler([_pub(1.0)])
    # Assert: job 1 replayed, job 2 (fetched by id: its "submitted" record survived) not paid again
    loaded = read_ledger(path)
    assert not loaded.torn_tail and not loaded.unreadable_lines
    assert second.ledger.summary()["jobs_replayed"] == 1
    assert second.ledger.summary()["jobs_fetched_by_id"] == 1 and len(ibm.submitted) == 2


def test_an_ibm_job_submitted_before_a_kill_is_fetched_by_id_not_resubmitted(ibm: JobService, tmp_path: Path) -> None:
    # Prepare: the process died while waiting: the job's id is on record, its result is not
    first = _backend(ibm, tmp_path, resume=False)
    original = first.run_sampler([_pub()])
    path = tmp_path / LEDGER_NAME
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(line for line in lines if b'"type":"result"' not in line))
    # Execute
    second = _backend(ibm, tmp_path, resume=True)
    fetched = second.run_sampler([_pub()])
    # Assert
    assert len(ibm.submitted) == 1 and ibm.fetched == [ibm.submitted[0].job.job_id()]
    np.testing.assert_array_equal(_counts(fetched), _counts(original))
    assert analyse(tmp_path)["totals"]["jobs_fetched_by_id"] == 1


def test_a_failed_job_is_on_record_and_runs_again_on_resume(ibm: JobService, tmp_path: Path) -> None:
    # Prepare
    first = _backend(ibm, tmp_path, resume=False)
    ibm.fail_next(first.retries + 1)
    with pytest.raises(JobFailedError):
        first.run_sampler([_pub()])
    # Execute
    second = _backend(ibm, tmp_path, resume=True)
    second.run_sampler([_pub()])
    # Assert: known failed, so not fetched by id: submitted once more
    summary = analyse(tmp_path)["totals"]
    assert summary["jobs_failed"] == 1 and summary["failed_attempts"] == first.retries + 1
    assert summary["jobs"] == 1 and second.ledger.summary()["jobs_submitted"] == 1
    assert not getattr(ibm, "fetched", [])


def test_a_ledger_of_another_run_is_refused_with_a_clear_error(ibm: JobService, tmp_path: Path) -> None:
    # Prepare
    _backend(ibm, tmp_path, resume=False).run_sampler([_pub()])
    before = (tmp_path / LEDGER_NAME).read_bytes()
    # Execute / Assert: the library call refuses; the file is untouched
    with pytest.raises(LedgerMismatchError, match=r"another run \(fingerprint aaaaaaaaaaaa.*this run is bbbbbbbbbbbb"):
        JobLedger.open(tmp_path, fingerprint="b" * 64, resume=True)
    assert (tmp_path / LEDGER_NAME).read_bytes() == before
    # the stage (its rerun after a config change does not resume either) moves it aside, never replays it
    backend = _backend(ibm, tmp_path, resume=True, fingerprint="b" * 64)
    backend.run_sampler([_pub()])
    assert (tmp_path / "jobs.aaaaaaaaaaaa.ledger.jsonl").read_bytes() == before
    assert backend.ledger.summary()["jobs_replayed"] == 0 and len(ibm.submitted) == 2


def test_what_is_not_a_ledger_gives_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    (tmp_path / LEDGER_NAME).write_text('{"type":"result","key":"x"}\n')
    # Execute / Assert
    with pytest.raises(LedgerError, match="not a job ledger"):
        JobLedger.open(tmp_path, fingerprint=FINGERPRINT, resume=True)
    assert cli.main(["ledger", str(tmp_path / "nowhere")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_llmqfl_ledger_reports_jobs_shots_and_qpu_seconds(ibm: JobService, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    backend = _backend(ibm, tmp_path / "checkpoints", resume=False)
    for shift in (0.0, 1.0, 2.0):
        backend.run_sampler([_pub(shift)])
    # Execute
    code_text = cli.main(["ledger", str(tmp_path)])
    text = capsys.readouterr().out
    code_json = cli.main(["ledger", str(tmp_path / "checkpoints"), "--json"])
    summary = json.loads(capsys.readouterr().out)
    # Assert
    assert code_text == code_json == 0
    assert "jobs 3 (3 submitted, 0 fetched by id)" in text and "QPU seconds 7.50" in text
    assert summary["totals"]["shots"] == 3 * 2 * 3 * 40 and summary["totals"]["circuits"] == 18
    assert summary["unfinished_round"]["jobs"] == 3  # no round records: a bare backend, not a federation
