"""Early termination: the paper's "fewer communication rounds" mechanism, with its state kept right.

Two switchable criteria (``None`` = off), checked after each round's server evaluation
(paper-notes.md section 2.3 (f)):

* **LLM threshold**: stop when |J_s - l_s| < tau, the server's global-model loss has reached the
  LLM's loss level (l_s = size-weighted mean of the clients' LLM eval losses, natural log).
* **Plateau**: stop when the mean client distance D = mean_i |J_i - J_s| has not improved (fallen
  by more than ``plateau_tolerance`` below the best value so far) for ``plateau_rounds`` rounds in a
  row. The paper's code resets its "previous distance" to infinity inside the loop, so its plateau
  test can never fire (gap G9); here the best value and the stall count persist across rounds and
  are part of the checkpoint.

A shot budget (``backend.shot_budget``) stops a run that has used up its shots (``shot_budget``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TerminationConfig:
    """Which criteria are on; ``None`` switches one off."""

    llm_threshold: float | None = None
    plateau_rounds: int | None = None
    plateau_tolerance: float = 0.001
    shot_budget: int | None = None

    def __post_init__(self) -> None:
        if self.llm_threshold is not None and not self.llm_threshold > 0:
            raise ValueError(f"llm_threshold must be > 0 or None, got {self.llm_threshold}")
        if self.plateau_rounds is not None and self.plateau_rounds < 1:
            raise ValueError(f"plateau_rounds must be >= 1 or None, got {self.plateau_rounds}")
        if self.plateau_tolerance < 0:
            raise ValueError(f"plateau_tolerance must be >= 0, got {self.plateau_tolerance}")
        if self.shot_budget is not None and self.shot_budget < 1:
            raise ValueError(f"shot_budget must be >= 1 or None, got {self.shot_budget}")


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


def check_termination(
    config: TerminationConfig,
    *,
    plateau: PlateauState,
    server_loss: float,
    server_llm_loss: float,
    shots_used: int,
) -> str:
    """The stop reason for this round ("" = go on); ``plateau`` is the state AFTER this round's update."""
    if (
        config.llm_threshold is not None
        and math.isfinite(server_llm_loss)
        and math.isfinite(server_loss)
        and abs(server_loss - server_llm_loss) < config.llm_threshold
    ):
        return "llm_threshold"
    if config.plateau_rounds is not None and plateau.stalled >= config.plateau_rounds:
        return "plateau"
    if config.shot_budget is not None and shots_used >= config.shot_budget:
        return "shot_budget"
    return ""
