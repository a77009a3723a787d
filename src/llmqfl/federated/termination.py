"""Early termination: the paper's "fewer communication rounds" mechanism, with its state kept right.

Two switchable criteria (``None`` = off), checked after each round's server evaluation
(``docs/method.md``):

* **LLM threshold**: stop when |J_s - l_s| < tau, the server's global-model loss has reached the
  LLM's loss level (l_s = size-weighted mean of the clients' LLM eval losses, natural log).
* **Loss delta** (the ``loss_stopping`` arm, no LLM): stop when the server loss moved by less than
  tau since the previous round, |J_s,r - J_s,r-1| < tau: the same kind of test as the LLM threshold,
  with the arm's own previous loss where L has the LLM's loss level.
* **Plateau**: stop when the mean client distance D = mean_i |J_i - J_s| has not improved (fallen
  by more than ``plateau_tolerance`` below the best value so far) for ``plateau_rounds`` rounds in a
  row. The paper's code resets its "previous distance" to infinity inside the loop, so its plateau
  test can never fire (D9 in ``docs/differences.md``); here the best value and the stall count persist across rounds and
  are part of the checkpoint.

A shot budget (``backend.shot_budget``) stops a run that has used up its shots (``shot_budget``).
More tests join through the registry (kind ``termination``) and ``qfl.termination.tests``: each is a
class whose ``check(outcome)`` says whether the run stops after the round ``outcome`` describes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol, runtime_checkable

from llmqfl.registry import get, register


@dataclass(frozen=True)
class TerminationConfig:
    """Which criteria are on; ``None`` switches one off."""

    llm_threshold: float | None = None
    loss_delta: float | None = None
    plateau_rounds: int | None = None
    plateau_tolerance: float = 0.001
    shot_budget: int | None = None
    tests: tuple[str, ...] = ()  # further registered tests, checked after the built-in ones

    def __post_init__(self) -> None:
        if self.llm_threshold is not None and not self.llm_threshold > 0:
            raise ValueError(f"llm_threshold must be > 0 or None, got {self.llm_threshold}")
        if self.loss_delta is not None and not self.loss_delta > 0:
            raise ValueError(f"loss_delta must be > 0 or None, got {self.loss_delta}")
        if self.plateau_rounds is not None and self.plateau_rounds < 1:
            raise ValueError(f"plateau_rounds must be >= 1 or None, got {self.plateau_rounds}")
        if self.plateau_tolerance < 0:
            raise ValueError(f"plateau_tolerance must be >= 0, got {self.plateau_tolerance}")
        if self.shot_budget is not None and self.shot_budget < 1:
            raise ValueError(f"shot_budget must be >= 1 or None, got {self.shot_budget}")

    @cached_property
    def active(self) -> list[tuple[str, TerminationTest]]:
        """The switched-on tests (:func:`active_tests`), built once: the registered ``tests`` are looked up
        by name here, not after every round."""
        return active_tests(self)


@dataclass(frozen=True)
class PlateauState:
    """Best mean distance so far and how many rounds in a row failed to beat it."""

    best: float = math.inf
    stalled: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"best": None if math.isinf(self.best) else self.best, "stalled": self.stalled}

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> PlateauState:
        best = payload.get("best")
        return cls(best=math.inf if best is None else float(best), stalled=int(payload["stalled"]))


def update_plateau(state: PlateauState, mean_distance: float, tolerance: float) -> PlateauState:
    """Advance the plateau state by one round's mean client distance (NaN = no information: stall)."""
    if math.isfinite(mean_distance) and (math.isinf(state.best) or state.best - mean_distance > tolerance):
        return PlateauState(best=mean_distance, stalled=0)
    return PlateauState(best=state.best, stalled=state.stalled + 1)


@dataclass(frozen=True)
class RoundOutcome:
    """What a termination test sees after a round's server evaluation."""

    round: int
    plateau: PlateauState  # the state AFTER this round's update
    server_loss: float  # J_s, in the plan's quantum-loss unit
    server_llm_loss: float  # l_s
    shots_used: int  # shots of every round so far, this one included
    previous_server_loss: float = math.nan  # J_s of the round before (NaN in round 1)


@runtime_checkable
class TerminationTest(Protocol):
    """``check(outcome)``: True stops the run after this round, with the test's registered name as reason."""

    def check(self, outcome: RoundOutcome) -> bool: ...


def _within(loss: float, level: float, threshold: float) -> bool:
    """|loss - level| < threshold, both finite (a NaN level, e.g. no LLM or round 1, never stops a run)."""
    return math.isfinite(level) and math.isfinite(loss) and abs(loss - level) < threshold


@register("termination", "llm_threshold")
@dataclass(frozen=True)
class LlmThreshold:
    threshold: float

    def check(self, outcome: RoundOutcome) -> bool:
        return _within(outcome.server_loss, outcome.server_llm_loss, self.threshold)


@register("termination", "loss_delta")
@dataclass(frozen=True)
class LossDelta:
    threshold: float

    def check(self, outcome: RoundOutcome) -> bool:
        return _within(outcome.server_loss, outcome.previous_server_loss, self.threshold)


@register("termination", "plateau")
@dataclass(frozen=True)
class Plateau:
    rounds: int

    def check(self, outcome: RoundOutcome) -> bool:
        return outcome.plateau.stalled >= self.rounds


@register("termination", "shot_budget")
@dataclass(frozen=True)
class ShotBudget:
    budget: int

    def check(self, outcome: RoundOutcome) -> bool:
        return outcome.shots_used >= self.budget


def active_tests(config: TerminationConfig) -> list[tuple[str, TerminationTest]]:
    """The switched-on tests in checking order: LLM threshold, loss delta, plateau, shot budget, ``tests``."""
    active: list[tuple[str, TerminationTest]] = []
    if config.llm_threshold is not None:
        active.append(("llm_threshold", LlmThreshold(config.llm_threshold)))
    if config.loss_delta is not None:
        active.append(("loss_delta", LossDelta(config.loss_delta)))
    if config.plateau_rounds is not None:
        active.append(("plateau", Plateau(config.plateau_rounds)))
    if config.shot_budget is not None:
        active.append(("shot_budget", ShotBudget(config.shot_budget)))
    active += [(name, get("termination", name)()) for name in config.tests]
    return active


def check_termination(
    config: TerminationConfig,
    *,
    plateau: PlateauState,
    server_loss: float,
    server_llm_loss: float,
    shots_used: int,
    round_index: int = 0,
    previous_server_loss: float = math.nan,
) -> str:
    """The stop reason for this round ("" = go on); ``plateau`` is the state AFTER this round's update."""
    outcome = RoundOutcome(round_index, plateau, server_loss, server_llm_loss, shots_used, previous_server_loss)
    return next((name for name, test in config.active if test.check(outcome)), "")
