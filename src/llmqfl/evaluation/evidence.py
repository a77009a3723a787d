"""What the claims are decided from (Evidence), what each yields (ClaimResult), and the paired-statistics helpers.

Comparisons between arms are paired by replicate; a comparison needs at least :data:`MIN_SEEDS`
replicates so that a 95% interval exists.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmqfl.contracts import ARMS
from llmqfl.evaluation.stats import Summary, summarise
from llmqfl.evaluation.verdicts import NOT_MEASURABLE, Criterion, claim_p_value, decide

MIN_SEEDS = 2
Record = Mapping[str, Any]


@dataclass(frozen=True)
class Evidence:
    """Everything the claims are decided from."""

    runs: Mapping[str, Sequence[Record]]  # arm -> evaluate-stage records (one per replicate)
    config: Mapping[str, Any]
    distill: Sequence[Record] = ()  # per-client distill metrics.json (the configured PEFT)
    data_kind: str | None = None  # "dna" | "text" (data meta.json)
    majority_rate: float | None = None  # majority-class share of the server test set
    distill_full: Sequence[Record] = ()  # per-client distill metrics of full fine-tuning, same model and data
    scope: str = "quantum_init"  # replicates.scope that produced the intervals


@dataclass(frozen=True)
class ClaimResult:
    """One row of claims.md."""

    id: str
    claim: str
    metric: str
    values: Mapping[str, Summary | None]
    verdict: str
    reason: str
    percent: bool = False
    numbers: Mapping[str, float | None] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    p_value: float = math.nan  # of "the claim holds" (verdicts.claim_p_value); NaN where not tested


def _by_seed(evidence: Evidence, arm: str) -> dict[int, Record]:
    return {int(r["seed"]): r for r in evidence.runs.get(arm, ())}


def _per_arm(evidence: Evidence, metric: Callable[[Record], float | None]) -> dict[str, Summary | None]:
    return {arm: summarise([_finite(metric(r)) for r in evidence.runs.get(arm, ())]) for arm in ARMS}


def _paired(
    evidence: Evidence, arm: str, other: str, metric: Callable[[Record, Record], float | None]
) -> Summary | None:
    """``metric(run of arm, run of other)`` over the replicates both arms have."""
    mine, theirs = _by_seed(evidence, arm), _by_seed(evidence, other)
    return summarise([_finite(metric(mine[s], theirs[s])) for s in sorted(set(mine) & set(theirs))])


def _finite(value: Any) -> float:
    if value is None:
        return math.nan
    value = float(value)
    return value if math.isfinite(value) else math.nan


def _final_accuracy(record: Record) -> float | None:
    return record["final"].get("test_accuracy")


def _idle_per_round(record: Record) -> float:
    rounds = int(record["rounds_run"])
    return _finite(record["totals"].get("idle_circuits")) / rounds if rounds else math.nan


def _paired_rounds(
    evidence: Evidence, arm: str, other: str, metric: Callable[[float, float], float], series: str
) -> Summary | None:
    """``metric(arm's value, other's value)`` per (replicate, round) that both runs reached.

    For per-round quantities that the configuration makes near-deterministic given the round
    (idle work follows the maxiter schedule), so the unit of comparison is the round, not the run;
    the interval then says how consistently the effect shows round by round.
    """
    mine, theirs = _by_seed(evidence, arm), _by_seed(evidence, other)
    values = []
    for seed in sorted(set(mine) & set(theirs)):
        a, b = mine[seed]["per_round"].get(series), theirs[seed]["per_round"].get(series)
        if a is None or b is None:
            return None
        values += [metric(_finite(x), _finite(y)) for x, y in zip(a, b, strict=False)]
    return summarise(values)


def _accuracy_gap(a: Record, b: Record) -> float:
    return _finite(_final_accuracy(a)) - _finite(_final_accuracy(b))


def _missing(evidence: Evidence, arms: Sequence[str]) -> str | None:
    absent = [a for a in arms if not evidence.runs.get(a)]
    if absent:
        return f"needs arm(s) {', '.join(absent)}, which this experiment did not run"
    return None


def _too_few(summaries: Sequence[Summary | None]) -> str | None:
    n = min((s.n if s else 0) for s in summaries)
    if n < MIN_SEEDS or not all(s is not None and s.has_interval for s in summaries):
        return f"n={n} replicate(s): a comparison needs >= {MIN_SEEDS} replicates for a 95% interval"
    return None


def _unmeasurable(base: dict[str, Any], reason: str) -> ClaimResult:
    return ClaimResult(**base, verdict=NOT_MEASURABLE, reason=reason)


def _decided(base: dict[str, Any], criteria: Sequence[Criterion], extra: str = "",
             numbers: Mapping[str, float | None] | None = None) -> ClaimResult:
    text = "; ".join(c.describe() for c in criteria) + (f"; {extra}" if extra else "")
    return ClaimResult(**base, verdict=decide(criteria), reason=text, numbers=dict(numbers or {}),
                       p_value=claim_p_value(criteria))
