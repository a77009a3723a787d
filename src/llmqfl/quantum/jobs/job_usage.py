"""What a backend's jobs have cost so far, and the shot budget that bounds them.

:class:`llmqfl.quantum.backends.backend.Backend` checks each job against the budget before it is submitted
(:meth:`JobUsage.reserve`) and adds what it cost after (:meth:`JobUsage.add`); the totals are the
run's accounting (``accounting.json``) and what ``backend.shot_budget`` is spent from.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmqfl.errors import LlmqflError


class ShotBudgetExceeded(LlmqflError):
    """The next job would use more shots than ``backend.shot_budget`` has left; nothing was submitted."""

    def __init__(self, *, needed: int, remaining: int, budget: int, what: str) -> None:
        super().__init__(
            f"backend.shot_budget: {what} needs {needed} shots but only {remaining} of {budget} are left"
        )
        self.needed = needed
        self.remaining = remaining
        self.budget = budget


@dataclass
class JobUsage:
    """Totals of one backend's jobs: counts, quantum and wall seconds.

    The shot budget is the caller's (``Backend.shot_budget``, which a resumed run lowers by the shots its
    restored rounds used), passed in each time rather than copied here.
    """

    jobs: int = 0
    shots: int = 0
    circuits: int = 0
    failures: int = 0
    retries: int = 0
    quantum_seconds: float = 0.0
    wall_seconds: float = 0.0

    def remaining_shots(self, budget: int | None) -> int | None:
        """Shots left in ``budget`` (None = no budget)."""
        if budget is None:
            return None
        return max(0, int(budget - self.shots))

    def reserve(self, shots: int, what: str, budget: int | None) -> None:
        """Refuse a job of ``shots`` before it is submitted when ``budget`` cannot pay for it."""
        remaining = self.remaining_shots(budget)
        if remaining is not None and shots > remaining:
            raise ShotBudgetExceeded(needed=shots, remaining=remaining, budget=int(budget or 0), what=what)

    def add(self, *, shots: int, circuits: int, attempts: int, failures: int, wall_seconds: float,
            quantum_seconds: float) -> None:
        """One finished job (after ``attempts`` tries, ``failures`` of them failed)."""
        self.jobs += 1
        self.shots += shots
        self.circuits += circuits
        self.failures += failures
        self.retries += attempts - 1
        self.wall_seconds += wall_seconds
        self.quantum_seconds += quantum_seconds

    def failed(self, attempts: int) -> None:
        """A job that failed every one of its ``attempts``: no shots counted, the failures are."""
        self.failures += attempts
        self.retries += attempts - 1

    def totals(self) -> dict[str, float]:
        """jobs, shots, circuits, quantum_seconds, wall_seconds, failures, retries."""
        return {"jobs": int(self.jobs), "shots": int(self.shots), "circuits": int(self.circuits),
                "quantum_seconds": float(self.quantum_seconds), "wall_seconds": float(self.wall_seconds),
                "failures": int(self.failures), "retries": int(self.retries)}
