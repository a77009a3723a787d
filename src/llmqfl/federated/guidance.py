"""LLM guidance of the local step budget (COBYLA ``maxiter``): the five rules of the paper's code.

Each rule is a small class registered under its name (``llmqfl.registry``, kind ``guidance``); a new
rule is one class with a ``propose`` method (see ``docs/extending.md``).

Gurung & Pokhrel (arXiv 2505.18656) let each client's fine-tuned LLM "act as an agent" that raises
the quantum model's optimizer budget when the quantum loss J is worse than the LLM's loss l. The
public code implements it as a ratio rule (``docs/method.md``); with r = J / l:

=================  ==========================================
rule               new maxiter (before the cap)
=================  ==========================================
incremental        m + floor(m (r - 1))
dynamic_weighted   floor(0.5 m + 0.5 m r)
logarithmic        m + floor(ln(1 + r) m)
adaptive           floor(m r)
hybrid             m + min(floor(m r), max_increment)
none               m
=================  ==========================================

The rule fires only from round 2 on (it needs a quantum loss from the previous round) and only when
J > l; the result is capped at ``max_maxiter`` and never lower than m (the paper's code has no
decrease branch). Both losses must be natural-log cross-entropies: the paper's code divides a
base-2 quantum loss by a natural-log LLM loss, which inflates r by 1/ln 2 ~ 1.44 (D4 in
``docs/differences.md``); here every loss in the pipeline is in nats, so r = 1 means equal predictive quality.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

from llmqfl.registry import get, register


@runtime_checkable
class GuidanceRule(Protocol):
    """Proposes round r+1's ``maxiter`` from the current one ``m`` and the ratio ``r = J / l`` (> 1)."""

    def propose(self, m: int, r: float, max_increment: int) -> int: ...


@register("guidance", "none")
class NoGuidance:
    def propose(self, m: int, r: float, max_increment: int) -> int:
        return m


@register("guidance", "incremental")
class Incremental:
    def propose(self, m: int, r: float, max_increment: int) -> int:
        return m + math.floor(m * (r - 1.0))


@register("guidance", "dynamic_weighted")
class DynamicWeighted:
    def propose(self, m: int, r: float, max_increment: int) -> int:
        return math.floor(0.5 * m + 0.5 * m * r)


@register("guidance", "logarithmic")
class Logarithmic:
    def propose(self, m: int, r: float, max_increment: int) -> int:
        return m + math.floor(math.log1p(r) * m)


@register("guidance", "adaptive")
class Adaptive:
    def propose(self, m: int, r: float, max_increment: int) -> int:
        return math.floor(m * r)


@register("guidance", "hybrid")
class Hybrid:
    def propose(self, m: int, r: float, max_increment: int) -> int:
        return m + min(math.floor(m * r), max_increment)


def rule(name: str) -> GuidanceRule:
    """An instance of the registered rule ``name`` (an unknown name: the registry's one-line ConfigError)."""
    return get("guidance", name)()


def next_maxiter(
    guidance: str | GuidanceRule,
    *,
    maxiter: int,
    quantum_loss: float,
    llm_loss: float,
    max_maxiter: int,
    max_increment: int,
    round_index: int,
) -> int:
    """The client's ``maxiter`` for round ``round_index`` given its loss J from the round before.

    ``quantum_loss`` (J) and ``llm_loss`` (l) are natural-log cross-entropies. Returns ``maxiter``
    unchanged in round 1, when J <= l, when either loss is not a finite number, or when l <= 0
    (a ratio to a zero loss is undefined; the paper's code does not guard it). ``guidance`` is a rule's
    registered name or its object (a plan resolves it once: ``FederationPlan.guidance``).
    """
    proposer = rule(guidance) if isinstance(guidance, str) else guidance
    if maxiter < 1 or max_maxiter < 1 or max_increment < 1:
        raise ValueError("maxiter, max_maxiter and max_increment must be >= 1")
    if round_index < 1:
        raise ValueError(f"round_index must be >= 1, got {round_index}")
    return apply_rule(proposer, maxiter, quantum_loss, llm_loss, max_maxiter, max_increment, round_index)


def apply_rule(
    proposer: GuidanceRule, m: int, j: float, llm: float, max_maxiter: int, max_increment: int, round_index: int
) -> int:
    """The gate and cap around a rule: fires from round 2 on, only when J > l; never lowers m, never passes the cap."""
    if round_index < 2 or not (math.isfinite(j) and math.isfinite(llm)) or llm <= 0 or j <= llm:
        return m
    proposed = int(proposer.propose(m, j / llm, max_increment))
    # never decrease (no decrease branch in the paper), never exceed the cap; a start above the cap stays put
    return max(m, min(proposed, max_maxiter))
