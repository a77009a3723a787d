"""Run one primitive job with a timeout and retries, so a flaky QPU queue does not kill a run.

A submitted job (Aer ``PrimitiveJob``, runtime ``RuntimeJobV2`` or a local-mode job) is waited
for until it reaches a final state or ``timeout_s`` passes; a failed, cancelled or timed-out job
is submitted again after an exponential back-off (``backoff_s * 2**k``). After ``retries``
retries the last reason is raised as :class:`JobFailedError`, naming the job and its id. Errors
that retrying cannot fix (bad input, an exhausted shot budget) propagate at once. ``on_submit``
hears each attempt's job id as soon as the service assigns it, before the wait: the job ledger
(:mod:`llmqfl.quantum.jobs.job_ledger`) records it durably there, so a run killed while it waits can fetch the
job by id instead of paying for it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmqfl.errors import LlmqflError
from llmqfl.quantum.backends.credentials import redact

logger = logging.getLogger(__name__)

# Input errors: the same job would fail the same way again.
NON_RETRYABLE: tuple[type[BaseException], ...] = (LlmqflError, ValueError, TypeError)
_POLL_START_S = 0.01
_POLL_MAX_S = 2.0
OnSubmit = Callable[[str | None, int], None]  # (job id, attempt number from 1)


class JobFailedError(LlmqflError, RuntimeError):
    """A primitive job failed or timed out on every attempt."""

    def __init__(self, message: str, *, what: str, job_id: str | None, attempts: int, reasons: list[str]) -> None:
        super().__init__(message)
        self.what = what
        self.job_id = job_id
        self.attempts = attempts
        self.reasons = reasons


class JobTimeoutError(TimeoutError):
    """One attempt did not reach a final state within ``timeout_s`` (retried like a failure, so not an input error)."""


@dataclass
class JobOutcome:
    """The result of the attempt that succeeded, with what it took to get it."""

    result: Any
    job: Any
    job_id: str | None
    attempts: int
    wall_seconds: float  # of the successful attempt (submit to result)
    reasons: list[str] = field(default_factory=list)  # one per failed attempt
    # set by the job ledger (llmqfl.quantum.jobs.job_ledger): QPU seconds as recorded, and where the result came
    # from: "submitted" (this process ran the job), "ledger" (replayed) or "fetched" (by id from the service)
    quantum_seconds: float | None = None
    source: str = "submitted"

    @property
    def failures(self) -> int:
        return len(self.reasons)


def run_with_retries(
    submit: Callable[[], Any],
    *,
    retries: int,
    timeout_s: float | None,
    what: str,
    backoff_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_submit: OnSubmit | None = None,
) -> JobOutcome:
    """Submit with ``submit()``, wait for the result; retry failures with exponential back-off.

    ``submit`` must return a job with ``result()`` (and, for a timeout, ``status()`` or
    ``in_final_state()``; ``cancel()`` is tried on a timed-out job). ``sleep`` and ``clock`` are
    injectable so tests need not wait. ``on_submit(job_id, attempt)`` is called once per submitted
    attempt (attempt counts from 1) before its result is awaited.
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    if timeout_s is not None and timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0 or None, got {timeout_s}")
    if backoff_s < 0:
        raise ValueError(f"backoff_s must be >= 0, got {backoff_s}")
    return _run_with_retries(submit, retries, timeout_s, what, backoff_s, sleep, clock, on_submit)


def _run_with_retries(
    submit: Callable[[], Any],
    retries: int,
    timeout_s: float | None,
    what: str,
    backoff_s: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    on_submit: OnSubmit | None = None,
) -> JobOutcome:
    reasons: list[str] = []
    job_id: str | None = None
    for attempt in range(retries + 1):
        if attempt:
            delay = backoff_s * 2 ** (attempt - 1)
            logger.warning("%s: retry %d/%d in %.1f s after: %s", what, attempt, retries, delay, reasons[-1])
            sleep(delay)
        job = None
        started = clock()
        try:
            job = submit()
            job_id = _job_id(job)
        except NON_RETRYABLE:
            raise
        except Exception as exc:  # refused at submission
            reasons.append(redact(f"{type(exc).__name__}: {exc}".strip()))
            continue
        if on_submit is not None:  # outside the retry: a ledger that cannot record must stop the run
            on_submit(job_id, attempt + 1)
        try:
            result = _wait(job, timeout_s, sleep, clock)
        except NON_RETRYABLE:
            raise
        except Exception as exc:
            if isinstance(exc, JobTimeoutError):
                _cancel_quietly(job)
            reasons.append(redact(f"{type(exc).__name__}: {exc}".strip()))
            continue
        return JobOutcome(result, job, job_id, attempt + 1, clock() - started, reasons)
    attempts = retries + 1
    message = redact(
        f"{what} (job id {job_id or 'not assigned'}) failed after {attempts} attempt"
        f"{'s' if attempts > 1 else ''}: {reasons[-1]}"
    )
    raise JobFailedError(message, what=what, job_id=job_id, attempts=attempts, reasons=reasons)


def _job_id(job: Any) -> str | None:
    getter = getattr(job, "job_id", None)
    if getter is None:
        return None
    value = getter() if callable(getter) else getter
    return None if value is None else str(value)


def _wait(job: Any, timeout_s: float | None, sleep: Callable[[float], None], clock: Callable[[], float]) -> Any:
    """``job.result()``, but give up after ``timeout_s`` seconds of the job not reaching a final state."""
    if timeout_s is None:
        return job.result()
    deadline = clock() + timeout_s
    poll = _POLL_START_S
    while not _in_final_state(job):
        remaining = deadline - clock()
        if remaining <= 0:
            raise JobTimeoutError(f"no result within timeout_s={timeout_s:g} s (last status {_status_name(job)})")
        sleep(min(poll, remaining))
        poll = min(poll * 2, _POLL_MAX_S)
    return job.result()


def _in_final_state(job: Any) -> bool:
    final = getattr(job, "in_final_state", None)
    if callable(final):
        return bool(final())
    return _status_name(job) in {"DONE", "ERROR", "CANCELLED"}


def _status_name(job: Any) -> str:
    status = job.status() if callable(getattr(job, "status", None)) else getattr(job, "status", "")
    name = getattr(status, "name", status)
    return str(name).upper()


def _cancel_quietly(job: Any) -> None:
    """Best effort: a timed-out job should not keep the QPU (and the bill) running."""
    cancel = getattr(job, "cancel", None)
    if not callable(cancel):
        return
    try:
        cancel()
    except Exception as exc:  # the job may have finished or be uncancellable; the retry goes on
        logger.info("could not cancel timed-out job %s: %s", _job_id(job), redact(exc))
