"""What one federation is given and gives back: the server's sets, the arm's plan, the result.

Plain frozen records shared by the in-process loop (:mod:`llmqfl.federated.server`), the cost plan
and the Flower transport, so each reads the same settings the same way. A plan names its extensions
(guidance rule, selection strategy, aggregator, termination tests) and resolves each name to its
registered object once, when it is built; the round loop uses those objects, never the names. The
names were checked when the config was validated (:func:`llmqfl.registry.check_config`); a name that
reaches a plan by another path and is not registered is the registry's one-line ``ConfigError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from llmqfl.federated.aggregation import Aggregator
from llmqfl.federated.cost_budget import CostBudget
from llmqfl.federated.guidance import GuidanceRule, rule
from llmqfl.federated.privacy import ClientLevelDP
from llmqfl.federated.schedule import Schedule
from llmqfl.federated.selection import SelectionStrategy, strategy
from llmqfl.federated.termination import TerminationConfig
from llmqfl.registry import get


@dataclass(frozen=True)
class ServerData:
    """The server's own sets: ``val`` for its loss J_s (never trained on), ``test`` for reporting."""

    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    llm_loss: float = math.nan  # l_s: size-weighted mean of the clients' LLM losses

    def __post_init__(self) -> None:
        if len(self.val_y) == 0:
            raise ValueError("server_val is empty: the server needs items for its loss")
        if len(self.val_x) != len(self.val_y) or len(self.test_x) != len(self.test_y):
            raise ValueError("server sets: features and labels differ in length")


@dataclass(frozen=True)
class FederationPlan:
    """The arm's settings. ``schedule`` (budget_matched) overrides selection and maxiter per round."""

    rounds: int
    initial_maxiter: int
    max_maxiter: int
    guidance_rule: str = "none"
    max_increment: int = 100
    # Unit of the quantum loss J as the guidance rule and the LLM-threshold test see it: 1.0 = nats,
    # like the LLM loss (ours); 1/ln 2 = bits, as the paper's code does (D4), to reproduce it.
    quantum_loss_scale: float = 1.0
    selection: str = "all"
    fraction: float = 1.0
    aggregator: str = "fedavg"
    termination: TerminationConfig = field(default_factory=TerminationConfig)
    schedule: Schedule | None = None
    cost_budget: CostBudget | None = None  # equal_cost: L's total circuit executions, spread evenly
    privacy: ClientLevelDP | None = None  # client-level DP of the updates (replaces the aggregator)

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if self.initial_maxiter < 1:
            raise ValueError(f"maxiter must be >= 1, got {self.initial_maxiter}")
        if self.max_maxiter < self.initial_maxiter:
            raise ValueError("max_maxiter must be >= maxiter")
        if self.schedule is not None and self.cost_budget is not None:
            raise ValueError("a plan replays a schedule or spreads a cost budget, not both")
        if self.schedule is not None and self.rounds > self.schedule.rounds:
            raise ValueError(f"schedule covers {self.schedule.rounds} rounds, plan asks for {self.rounds}")
        # each extension resolved here, once per plan (cached): an unregistered name stops the plan, not a round
        _ = (self.guidance, self.selector, self.aggregation, self.termination.active)

    @cached_property
    def guidance(self) -> GuidanceRule:
        """The guidance rule's object, resolved once per plan (not once per client and round)."""
        return rule(self.guidance_rule)

    @cached_property
    def selector(self) -> SelectionStrategy:
        """The selection strategy's object (``selection``), resolved once per plan."""
        return strategy(self.selection)

    @cached_property
    def aggregation(self) -> Aggregator:
        """The aggregator's object (``aggregator``), resolved once per plan."""
        return get("aggregator", self.aggregator)()


@dataclass(frozen=True)
class FederationResult:
    weights: np.ndarray
    history: pd.DataFrame
    stop_reason: str
    rounds_run: int
    aborted: dict[str, Any] = field(default_factory=dict)
