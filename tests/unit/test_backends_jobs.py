"""run_with_retries: back-off, timeouts, a clear final error, and no retry of input errors."""

from __future__ import annotations

import pytest

from llmqfl.errors import ConfigError, LlmqflError
from llmqfl.quantum.backends.credentials import register_secret
from llmqfl.quantum.jobs.retries import JobFailedError, run_with_retries


class Clock:
    """A fake monotonic clock whose sleep() advances time and records each wait."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Job:
    """A job that is done after ``finish_after`` seconds of the fake clock, then returns or raises."""

    _ids = iter(range(1, 10_000))

    def __init__(self, clock: Clock, *, value: object = "ok", error: Exception | None = None,
                 finish_after: float = 0.0) -> None:
        self.clock, self.value, self.error = clock, value, error
        self.finish_after = finish_after
        self.done_at = clock.now + finish_after
        self.id = f"job-{next(self._ids)}"
        self.cancelled = False

    def job_id(self) -> str:
        return self.id

    def in_final_state(self) -> bool:
        return self.cancelled or self.clock.now >= self.done_at

    def status(self) -> str:
        return "DONE" if self.in_final_state() else "QUEUED"

    def cancel(self) -> None:
        self.cancelled = True

    def result(self) -> object:
        if self.error is not None:
            raise self.error
        return self.value


def scripted(jobs: list[Job]):
    submitted: list[Job] = []

    def submit() -> Job:
        job = jobs[len(submitted)]
        job.done_at = job.clock.now + job.finish_after  # the clock starts at submission
        submitted.append(job)
        return job

    return submit, submitted


def test_first_success_needs_no_retry() -> None:
    # Prepare
    clock = Clock()
    submit, submitted = scripted([Job(clock, value=42)])
    # Execute
    outcome = run_with_retries(submit, retries=3, timeout_s=None, what="sampler job", sleep=clock.sleep, clock=clock)
    # Assert
    assert outcome.result == 42
    assert (outcome.attempts, outcome.failures, len(submitted)) == (1, 0, 1)
    assert outcome.job_id == submitted[0].id
    assert clock.sleeps == []


def test_failed_jobs_are_retried_with_exponential_backoff() -> None:
    # Prepare
    clock = Clock()
    jobs = [Job(clock, error=RuntimeError("qpu calibration")), Job(clock, error=RuntimeError("lost")), Job(clock)]
    submit, _ = scripted(jobs)
    # Execute
    outcome = run_with_retries(submit, retries=3, timeout_s=None, what="sampler job", backoff_s=2.0,
                               sleep=clock.sleep, clock=clock)
    # Assert
    assert outcome.result == "ok"
    assert outcome.attempts == 3
    assert outcome.reasons == ["RuntimeError: qpu calibration", "RuntimeError: lost"]
    assert clock.sleeps == [2.0, 4.0]


def test_retries_exhausted_raise_one_clear_error_naming_the_job() -> None:
    # Prepare
    clock = Clock()
    jobs = [Job(clock, error=RuntimeError(f"boom {i}")) for i in range(3)]
    submit, submitted = scripted(jobs)
    # Execute
    with pytest.raises(JobFailedError) as info:
        run_with_retries(submit, retries=2, timeout_s=None, what="estimator job on ibm:ibm_test",
                         backoff_s=0.5, sleep=clock.sleep, clock=clock)
    # Assert
    error = info.value
    assert isinstance(error, LlmqflError)
    assert str(error) == (
        f"estimator job on ibm:ibm_test (job id {submitted[-1].id}) failed after 3 attempts: RuntimeError: boom 2"
    )
    assert "\n" not in str(error)
    assert (error.attempts, error.job_id, len(error.reasons)) == (3, submitted[-1].id, 3)
    assert clock.sleeps == [0.5, 1.0]


def test_a_job_that_does_not_finish_in_time_is_cancelled_and_retried() -> None:
    # Prepare
    clock = Clock()
    slow, fast = Job(clock, finish_after=100.0), Job(clock, value="second", finish_after=1.0)
    submit, _ = scripted([slow, fast])
    # Execute
    outcome = run_with_retries(submit, retries=1, timeout_s=10.0, what="sampler job", backoff_s=1.0,
                               sleep=clock.sleep, clock=clock)
    # Assert
    assert outcome.result == "second"
    assert slow.cancelled and not fast.cancelled
    assert outcome.reasons[0].startswith("JobTimeoutError: no result within timeout_s=10 s")
    backoff_at = clock.sleeps.index(1.0)  # polls are 0.01 * 2**k (capped by the deadline), never exactly 1.0
    assert sum(clock.sleeps[:backoff_at]) == pytest.approx(10.0)  # waited exactly the timeout
    assert 1.0 <= sum(clock.sleeps[backoff_at + 1:]) < 1.0 + 2.0  # the second job, polled at most 2 s apart


def test_timeout_on_every_attempt_is_a_final_failure() -> None:
    # Prepare
    clock = Clock()
    submit, _ = scripted([Job(clock, finish_after=1e9) for _ in range(2)])
    # Execute / Assert
    with pytest.raises(JobFailedError, match=r"failed after 2 attempts: JobTimeoutError: no result within"):
        run_with_retries(submit, retries=1, timeout_s=5, what="sampler job", sleep=clock.sleep, clock=clock)


def test_input_errors_are_not_retried() -> None:
    # Prepare
    clock = Clock()
    submit, submitted = scripted([Job(clock, error=ValueError("pub shape mismatch")), Job(clock)])
    # Execute / Assert
    with pytest.raises(ValueError, match="pub shape mismatch"):
        run_with_retries(submit, retries=3, timeout_s=None, what="sampler job", sleep=clock.sleep, clock=clock)
    assert len(submitted) == 1 and clock.sleeps == []


def test_submission_errors_count_as_failures() -> None:
    # Prepare
    clock = Clock()
    calls = []

    def submit() -> Job:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("503 Service Unavailable")
        return Job(clock, value="in")

    # Execute
    outcome = run_with_retries(submit, retries=1, timeout_s=None, what="sampler job", sleep=clock.sleep, clock=clock)
    # Assert
    assert outcome.result == "in" and outcome.reasons == ["ConnectionError: 503 Service Unavailable"]


def test_failure_messages_mask_registered_secrets() -> None:
    # Prepare
    secret = "JOBS-TEST-SECRET-987654321"
    register_secret(secret)
    clock = Clock()
    submit, _ = scripted([Job(clock, error=RuntimeError(f"401 for key {secret}"))])
    # Execute
    with pytest.raises(JobFailedError) as info:
        run_with_retries(submit, retries=0, timeout_s=None, what="sampler job", sleep=clock.sleep, clock=clock)
    # Assert
    assert secret not in str(info.value) and "***" in str(info.value)
    assert all(secret not in reason for reason in info.value.reasons)


@pytest.mark.parametrize(("kwargs", "field"), [({"retries": -1}, "retries"), ({"timeout_s": 0}, "timeout_s"),
                                               ({"backoff_s": -1.0}, "backoff_s")])
def test_bad_arguments_are_rejected(kwargs: dict, field: str) -> None:
    # Prepare
    settings = {"retries": 1, "timeout_s": None, "what": "x"} | kwargs
    # Execute / Assert
    with pytest.raises(ValueError, match=field):
        run_with_retries(lambda: None, **settings)


def test_llmqfl_errors_propagate_unchanged() -> None:
    # Prepare
    def submit() -> Job:
        raise ConfigError("config error: backend.shots: bad")

    # Execute / Assert
    with pytest.raises(ConfigError, match=r"backend\.shots"):
        run_with_retries(submit, retries=5, timeout_s=None, what="x")
