"""The job ledger: every runtime job's id, content digest and result, on disk before the run goes on.

On a QPU a crashed run must never pay twice. :class:`JobLedger` sits at the one place every job
passes (``Backend._run`` -> :func:`llmqfl.quantum.jobs.retries.run_with_retries`) and appends, to one
JSON-lines file under the run's checkpoint folder (``checkpoints/jobs.ledger.jsonl``), each fsynced
before the optimizer sees the result:

- ``submitted``: a job's id as soon as the service assigns it (before the wait);
- ``result``: the job's result (:mod:`llmqfl.quantum.jobs.ledger_codec`), shots, circuits, QPU seconds;
- ``failed``: a job that failed on every retry; ``replayed``: a job answered from the ledger;
- ``round``: each finished round's losses (written with its checkpoint by
  :mod:`llmqfl.quantum.jobs.ledger_rounds`), so the ledger alone tells the run's story (``llmqfl ledger``;
  :mod:`llmqfl.quantum.jobs.ledger_report`).

A job is keyed by its content (:func:`llmqfl.quantum.jobs.ledger_codec.job_digest`: ISA circuits, parameter
values, shots, draw seed) and its ordinal among jobs of equal content in this process. A resumed run
(the federation restarts from its last checkpoint with the same job seeds) asks for the interrupted
round's jobs again: a job with a stored result is answered from the ledger; on ``ibm`` a job with an id
but no result (the process died while it waited) is fetched by id from the runtime service; only jobs
that failed or never ran are submitted. A torn last line (a kill mid-write) is cut off on open; a
ledger of another run (other inputs, config or code) is never replayed (:class:`LedgerMismatchError`).

Only the kinds with the ``job_ledger`` trait keep a ledger (``llmqfl.registry``: ``fake`` rehearses the hardware path,
``ibm`` is it); the Aer kinds re-simulate an interrupted round for the price of CPU time.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llmqfl.quantum.jobs.ledger_codec import circuit_digest, decode_result, encode_result, job_digest, plain
from llmqfl.quantum.jobs.ledger_file import (
    FORMAT_VERSION,
    LedgerError,
    LedgerFile,
    LedgerMismatchError,
    append_record,
    fsync_dir,
    read_ledger,
    repair,
    retire,
)
from llmqfl.quantum.jobs.retries import JobFailedError, JobOutcome, OnSubmit, run_with_retries

__all__ = [
    "LEDGER_NAME",
    "JobLedger",
    "LedgerError",
    "LedgerMismatchError",
    "attach_ledger",
    "read_ledger",
]

log = logging.getLogger(__name__)

LEDGER_NAME = "jobs.ledger.jsonl"
Submit = Callable[..., JobOutcome]  # submit(on_submit=...) -> the outcome of run_with_retries


# ---------------------------------------------------------------------------- the ledger


class JobLedger:
    """Records and replays one run's jobs; see the module docstring. Build it with :meth:`open`."""

    def __init__(self, path: Path, loaded: LedgerFile, *, fetch: Callable[[str], Any] | None = None,
                 fetch_timeout_s: float | None = None) -> None:
        self.path = path
        self.fingerprint = str((loaded.header or {}).get("fingerprint"))
        self.fetch = fetch
        self.fetch_timeout_s = fetch_timeout_s
        self.counts: Counter[str] = Counter()  # this process: submitted, replayed, fetched, failed
        self.overhead_seconds = 0.0  # time spent in the ledger itself (digests, encoding, fsync)
        self.bytes_written = 0
        self._done: dict[tuple[str, int], dict[str, Any]] = {}
        self._pending: dict[tuple[str, int], str] = {}  # submitted, never finished: the last job id
        self._seen: Counter[str] = Counter()
        self._circuits: dict[int, tuple[Any, str]] = {}
        for record in loaded.records:
            ident = (record.get("key"), record.get("n"))
            if record["type"] == "result" and "result" in record:
                self._done.setdefault(ident, record)
                self._pending.pop(ident, None)
            elif record["type"] == "submitted" and ident not in self._done and record.get("job_id"):
                self._pending[ident] = str(record["job_id"])
            elif record["type"] == "failed":  # every attempt failed: nothing to fetch, submit it again
                self._pending.pop(ident, None)
        self.stored_jobs = len(self._done)

    @classmethod
    def open(
        cls,
        directory: str | Path,
        *,
        fingerprint: str,
        resume: bool,
        backend: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
        fetch: Callable[[str], Any] | None = None,
        fetch_timeout_s: float | None = None,
        on_mismatch: str = "error",
    ) -> JobLedger:
        """The ledger in ``directory`` for the run ``fingerprint``.

        ``resume`` False starts a new ledger (an old one is moved aside, never deleted). ``resume``
        True continues a ledger of the same run; one of another run raises
        :class:`LedgerMismatchError`, or with ``on_mismatch="retire"`` is moved aside with a warning
        (what a pipeline rerun after a config change needs: its checkpoints do not resume either).
        """
        if on_mismatch not in ("error", "retire"):
            raise ValueError(f"on_mismatch must be 'error' or 'retire', got {on_mismatch!r}")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / LEDGER_NAME
        loaded = read_ledger(path) if path.exists() else None
        if loaded is not None and loaded.header is None:  # killed while writing the header: nothing in it
            path.unlink()
            loaded = None
        if loaded is not None:
            old = str(loaded.header.get("fingerprint"))
            if resume and old != fingerprint:
                problem = (f"job ledger {path} records the jobs of another run (fingerprint {old[:12]}, backend "
                           f"{_describe(loaded.header.get('backend'))}); this run is {fingerprint[:12]} (backend "
                           f"{_describe(backend)}): its results cannot be replayed into this run")
                if on_mismatch == "error":
                    raise LedgerMismatchError(problem + "; start a new run (without --resume) or use another "
                                              "out-dir")
                log.warning("%s; moved it to %s and starting a new ledger", problem, retire(path, old).name)
                loaded = None
            elif not resume:
                log.info("a new run: the previous job ledger is kept as %s", retire(path, old).name)
                loaded = None
        if loaded is None:
            header = {"type": "header", "format": FORMAT_VERSION, "fingerprint": fingerprint,
                      "backend": plain(backend or {}), "meta": plain(meta or {}), "created": time.time()}
            append_record(path, header)
            fsync_dir(directory)
            loaded = LedgerFile(path, header)
        else:
            repair(loaded)
        ledger = cls(path, loaded, fetch=fetch, fetch_timeout_s=fetch_timeout_s)
        ledger._write({"type": "open", "resume": bool(resume), "stored_jobs": ledger.stored_jobs, "pid": os.getpid(),
                       "t": time.time()})
        if ledger.stored_jobs:
            log.info("job ledger %s: %d finished jobs on record, %d awaiting a result", path, ledger.stored_jobs,
                     len(ledger._pending))
        return ledger

    # -- the job seam ----------------------------------------------------------------------------
    def run(
        self,
        what: str,
        pubs: Sequence[Any],
        *,
        seed: int,
        shots: int,
        circuits: int,
        submit: Submit,
        usage: Callable[[JobOutcome], float],
    ) -> JobOutcome:
        """One job: replayed from the ledger, fetched by id, or submitted (``submit(on_submit=...)``).

        ``usage(outcome)`` gives a fresh job's QPU seconds; they are stored with its result, which is
        on disk before this returns.
        """
        started = time.perf_counter()
        key = self._key(what, pubs, seed, shots)
        ordinal = self._seen[key]
        self._seen[key] += 1
        ident = {"key": key, "n": ordinal}
        stored = self._done.get((key, ordinal))
        if stored is not None:
            # attempts=1, no reasons: a replay adds no retries or failures to the backend's usage
            outcome = JobOutcome(decode_result(stored["result"]), None, stored.get("job_id"), 1, 0.0,
                                 quantum_seconds=float(stored.get("qpu_seconds") or 0.0), source="ledger")
            self._write({"type": "replayed", **ident, "job_id": stored.get("job_id"), "t": time.time()})
            self.counts["replayed"] += 1
            self.overhead_seconds += time.perf_counter() - started
            return outcome
        self.overhead_seconds += time.perf_counter() - started
        outcome = None
        pending = self._pending.get((key, ordinal))
        if pending is not None and self.fetch is not None:
            outcome = self._fetch(pending, what)
        if outcome is None:
            try:
                outcome = submit(on_submit=self._on_submit(ident, what, shots, circuits))
            except JobFailedError as exc:
                self._write({"type": "failed", **ident, "what": what, "job_id": exc.job_id, "attempts": exc.attempts,
                             "reasons": exc.reasons, "t": time.time()})
                self.counts["failed"] += 1
                raise
            self.counts["submitted"] += 1
        else:
            self.counts["fetched"] += 1
        outcome.quantum_seconds = float(usage(outcome))
        recording = time.perf_counter()
        self._record_result(ident, what, shots, circuits, outcome)
        # the payload is not needed again in this process (its ordinal is used up)
        self._done[(key, ordinal)] = {"job_id": outcome.job_id}
        self._pending.pop((key, ordinal), None)
        self.overhead_seconds += time.perf_counter() - recording
        return outcome

    def summary(self) -> dict[str, Any]:
        """This process's ledger counts, for ``accounting.json``: what it submitted vs what it replayed."""
        jobs = sum(self.counts[k] for k in ("submitted", "replayed", "fetched"))
        return {
            "path": f"checkpoints/{self.path.name}",
            "jobs_submitted": int(self.counts["submitted"]),
            "jobs_replayed": int(self.counts["replayed"]),
            "jobs_fetched_by_id": int(self.counts["fetched"]),
            "jobs_failed": int(self.counts["failed"]),
            "jobs_on_record_at_start": int(self.stored_jobs),
            "overhead_seconds": float(self.overhead_seconds),
            "overhead_seconds_per_job": float(self.overhead_seconds / jobs) if jobs else 0.0,
            "bytes_written": int(self.bytes_written),
        }

    # -- internals -------------------------------------------------------------------------------
    def _key(self, what: str, pubs: Sequence[Any], seed: int, shots: int) -> str:
        digests = []
        for pub in pubs:
            cached = self._circuits.get(id(pub.circuit))
            if cached is None or cached[0] is not pub.circuit:
                cached = (pub.circuit, circuit_digest(pub.circuit))  # keep the circuit alive: ids stay unique
                self._circuits[id(pub.circuit)] = cached
            digests.append(cached[1])
        return job_digest(what, pubs, seed=seed, shots=shots, circuit_digests=digests)

    def _on_submit(self, ident: dict[str, Any], what: str, shots: int, circuits: int) -> OnSubmit:
        def record(job_id: str | None, attempt: int) -> None:
            started = time.perf_counter()
            self._write({"type": "submitted", **ident, "what": what, "job_id": job_id, "attempt": attempt,
                         "shots": shots, "circuits": circuits, "t": time.time()})
            self.overhead_seconds += time.perf_counter() - started

        return record

    def _fetch(self, job_id: str, what: str) -> JobOutcome | None:
        """A job submitted by an earlier process, by id from the service; None if that fails (resubmit)."""
        assert self.fetch is not None
        fetch = self.fetch
        try:
            outcome = run_with_retries(lambda: fetch(job_id), retries=0, timeout_s=self.fetch_timeout_s,
                                       what=f"{what} (job {job_id} from an earlier run)")
        except Exception as exc:  # gone, failed or unreachable: the job is submitted again
            log.warning("could not fetch job %s by id (%s: %s); submitting it again", job_id, type(exc).__name__, exc)
            return None
        outcome.source = "fetched"
        return outcome

    def _record_result(self, ident: dict[str, Any], what: str, shots: int, circuits: int, outcome: JobOutcome) -> None:
        self._write({
            "type": "result", **ident, "what": what, "job_id": outcome.job_id, "source": outcome.source,
            "attempts": outcome.attempts, "reasons": list(outcome.reasons), "shots": int(shots),
            "circuits": int(circuits), "qpu_seconds": float(outcome.quantum_seconds or 0.0),
            "wall_seconds": float(outcome.wall_seconds), "t": time.time(), "result": encode_result(outcome.result),
        })  # fmt: skip

    def _write(self, record: dict[str, Any]) -> None:
        self.bytes_written += append_record(self.path, record)


def _describe(backend: Any) -> str:
    if not isinstance(backend, dict) or not backend:
        return "unknown"
    return ":".join(str(backend.get(k)) for k in ("kind", "name", "shots") if backend.get(k) is not None)


# ---------------------------------------------------------------------------- hooks


def attach_ledger(
    backend: Any,
    directory: str | Path,
    *,
    fingerprint: str,
    resume: bool,
    meta: dict[str, Any] | None = None,
) -> JobLedger | None:
    """Give a runtime-kind backend (``fake``, ``ibm``) its ledger in ``directory``; None for other kinds.

    ``ibm`` gets a fetch-by-id from its runtime service: a job submitted before a kill is collected,
    not paid for again. Local-mode (``fake``) jobs die with their process, so those are resubmitted.
    """
    if backend is None or not backend.traits["job_ledger"]:
        return None
    service = getattr(backend, "service", None)
    fetch = service.job if service is not None and hasattr(service, "job") else None  # a QPU kind keeps its service
    described = {k: v for k, v in backend.describe().items() if not k.startswith("account_")}
    ledger = JobLedger.open(directory, fingerprint=fingerprint, resume=resume, backend=described, meta=meta,
                            fetch=fetch, fetch_timeout_s=getattr(backend, "timeout_s", None), on_mismatch="retire")
    backend.ledger = ledger
    return ledger
