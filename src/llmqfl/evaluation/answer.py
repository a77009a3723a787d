"""The experiment's answer: the pre-registered primary endpoint, the secondary claims after Holm, and cost.

The primary endpoint is fixed before any run (``docs/method.md``, "Primary endpoint"): the paired
difference in final server-test accuracy between L (``llm_guided``) and E (``equal_cost``: no LLM, the
same total circuit executions as L, spread evenly), one pair per replicate. Its interval, its p and
the minimal effect the replicate count can detect at 80% power say whether a researcher can publish
"the LLM helps", "it does not", or "too few replicates to tell". Secondary claims (C1-C7) each carry
the p of "the claim holds"; Holm's correction runs over those that were tested.

Accuracy against cost carries a stopped run's last value forward: a run that ended at 10k circuit
executions is still worth its final accuracy at 20k, so early stopping does not thin out the band.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from llmqfl.contracts import EQUAL_COST, LLM_GUIDED
from llmqfl.evaluation.evidence import ClaimResult, Evidence, Record, _by_seed, _final_accuracy, _finite
from llmqfl.evaluation.stats import (
    bootstrap_ci,
    holm,
    minimal_detectable_effect,
    paired_t_test,
    summarise,
)
from llmqfl.evaluation.verdicts import HOLDS

PRIMARY = (LLM_GUIDED, EQUAL_COST)  # effect = L - E, final server-test accuracy, paired by replicate
ALPHA, POWER = 0.05, 0.8
BUDGET_FRACTIONS = (0.25, 0.5, 0.75, 1.0)  # accuracy at these shares of the largest mean total cost


def primary_endpoint(evidence: Evidence) -> dict[str, Any]:
    """L - E final server-test accuracy, paired: effect, 95% t-interval, p, n, scope and the 80%-power MDE."""
    arm, other = PRIMARY
    mine, theirs = _by_seed(evidence, arm), _by_seed(evidence, other)
    seeds = sorted(set(mine) & set(theirs))
    diffs = [_finite(_final_accuracy(mine[s])) - _finite(_final_accuracy(theirs[s])) for s in seeds]
    diffs = [d for d in diffs if math.isfinite(d)]
    result: dict[str, Any] = {
        "comparison": f"{arm} - {other}: final server-test accuracy, paired by replicate",
        "effect": None, "ci": [None, None], "p": None, "n": len(diffs), "scope": evidence.scope, "mde": None,
        "sd": None, "alpha": ALPHA, "power": POWER,
    }
    if len(diffs) < 2:
        result["verdict"] = f"not measurable: {len(diffs)} paired replicate(s) of {arm} and {other}"
        return result
    test = paired_t_test(diffs)
    sd = float(np.std(diffs, ddof=1))
    mde = minimal_detectable_effect(sd, len(diffs), alpha=ALPHA, power=POWER) if sd > 0 else 0.0
    result.update(effect=test.mean, ci=[test.low, test.high], p=test.p, sd=sd, mde=mde)
    result["verdict"] = _primary_verdict(test.low, test.high, mde)
    return result


def _primary_verdict(low: float, high: float, mde: float) -> str:
    if low > 0:
        return "L above E: the LLM's guidance and teacher beat the same quantum cost spent evenly"
    if high < 0:
        return "L below E: the same quantum cost spent evenly, without the LLM, does better"
    return f"no difference detected; effects of {mde:.1%} or more would be detected with 80% power"


def secondary_claims(results: Sequence[ClaimResult]) -> list[dict[str, Any]]:
    """Each claim's verdict and p, with Holm's adjusted p over the claims that were tested."""
    adjusted = holm([r.p_value for r in results])
    return [
        {
            "id": r.id,
            "claim": r.claim,
            "verdict": r.verdict,
            "p": None if math.isnan(r.p_value) else r.p_value,
            "p_holm": None if math.isnan(p) else p,
            "holds_after_holm": bool(r.verdict == HOLDS and not math.isnan(p) and p < ALPHA),
        }
        for r, p in zip(results, adjusted, strict=True)
    ]


def _count_summary(values: Sequence[float]) -> dict[str, Any]:
    """Mean with a percentile-bootstrap interval: counts keep their support (never negative)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return {"mean": None, "ci": [None, None], "n": 0}
    low, high = bootstrap_ci(finite) if len(finite) > 1 else (finite[0], finite[0])
    return {"mean": float(np.mean(finite)), "ci": [float(low), float(high)], "n": len(finite)}


def cost_per_arm(evidence: Evidence) -> dict[str, dict[str, Any]]:
    """Total circuit executions and rounds run per arm (bootstrap intervals over replicates)."""
    return {
        arm: {
            "circuits": _count_summary([_finite(r["totals"].get("circuits")) for r in records]),
            "rounds": _count_summary([float(r["rounds_run"]) for r in records]),
        }
        for arm, records in evidence.runs.items()
        if records
    }


def accuracy_at_cost(record: Record, budgets: np.ndarray) -> np.ndarray:
    """The run's server-test accuracy after the last round that fits each budget (NaN before round 1);
    past its last round a run keeps its final accuracy (carried forward, not dropped)."""
    per_round = record["per_round"]
    spent = np.cumsum(np.asarray(per_round["circuits"], dtype=float))
    accuracy = np.asarray(per_round["test_accuracy"], dtype=float)
    index = np.searchsorted(spent, budgets, side="right") - 1
    return np.where(index >= 0, accuracy[np.clip(index, 0, None)], np.nan)


def cost_grid(runs: Mapping[str, Sequence[Record]], points: int = 40) -> np.ndarray:
    """A shared grid of cumulative circuit executions, up to the costliest run's total (empty without runs)."""
    totals = [_finite(r["totals"].get("circuits")) for records in runs.values() for r in records]
    top = max((t for t in totals if math.isfinite(t)), default=0.0)
    return np.linspace(top / points, top, points) if top > 0 else np.array([])


def accuracy_at_budgets(evidence: Evidence, cost: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean accuracy per arm at fixed shares of the largest arm's mean total cost (``cost``: :func:`cost_per_arm`)."""
    means = [c["circuits"]["mean"] for c in cost.values() if c["circuits"]["mean"]]
    if not means:
        return {}
    budgets = np.array([f * max(means) for f in BUDGET_FRACTIONS])
    table: dict[str, dict[str, Any]] = {}
    for arm, records in evidence.runs.items():
        cells: dict[str, Any] = {}
        table[arm] = cells
        if not records:
            continue
        matrix = np.array([accuracy_at_cost(r, budgets) for r in records])
        for fraction, budget, column in zip(BUDGET_FRACTIONS, budgets, matrix.T, strict=True):
            summary = summarise([v for v in column if math.isfinite(v)])
            cells[f"{fraction:.0%}"] = {
                "circuits": float(budget),
                "accuracy": None if summary is None else summary.mean,
                "ci": [None, None] if summary is None else [summary.low, summary.high],
            }
    return table


def teacher_summary(evidence: Evidence) -> dict[str, Any]:
    """The LLM teachers' accuracy: mean over clients of their held-out accuracy (and on the server's test
    set where the distill stage scored it)."""
    def mean_of(key: str) -> float | None:
        values = [_finite(m.get(key)) for m in evidence.distill]
        values = [v for v in values if math.isfinite(v)]
        return float(np.mean(values)) if values else None

    return {
        "server_test_accuracy": mean_of("server_test_accuracy"),
        "client_test_accuracy": mean_of("eval_accuracy"),
        "n_clients": len(evidence.distill),
    }


def build_answer(
    evidence: Evidence,
    results: Sequence[ClaimResult],
    *,
    feature_ceiling: float | None,
    teacher: Mapping[str, Any],
) -> dict[str, Any]:
    """answer.json: what the experiment says, with every number it rests on."""
    student = {
        arm: float(np.mean([a for a in (_finite(_final_accuracy(r)) for r in records) if math.isfinite(a)]))
        for arm, records in evidence.runs.items()
        if records and any(math.isfinite(_finite(_final_accuracy(r))) for r in records)
    }
    best = max(student.values(), default=None)
    cost = cost_per_arm(evidence)
    return {
        "experiment": evidence.config.experiment,
        "primary": primary_endpoint(evidence),
        "student": student,
        "feature_ceiling": feature_ceiling,
        "best_student_gap_to_ceiling": None if best is None or feature_ceiling is None else feature_ceiling - best,
        "majority_rate": evidence.majority_rate,
        "teacher": dict(teacher),
        "secondary": secondary_claims(results),
        "cost": cost,
        "accuracy_at_budgets": accuracy_at_budgets(evidence, cost),
    }
