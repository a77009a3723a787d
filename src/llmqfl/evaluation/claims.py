"""The paper's headline claims (C1-C7), each decided by code from measurements, in either direction.

Every claim returns the measured value per arm (mean and 95% t-interval over replicates), a verdict
and the reason, with the numbers the verdict rests on. Verdicts come from the intervals
(:mod:`llmqfl.evaluation.verdicts`): ``holds`` when the interval clears the criterion, ``does not
hold`` when it lies on the wrong side, ``inconclusive`` when it straddles; ``not measurable here``
when the experiment lacks what the claim needs. Comparisons between arms are paired by replicate
and need at least :data:`MIN_SEEDS` replicates. Each claim can come out either way on some config;
a claim whose verdict is fixed before measuring is a defect (``tests/test_claims_*.py`` hold one
synthetic case each way). Guidance claims (C1-C3) carry the flag "teacher uninformative" when the
LLM teacher's accuracy is not above the majority rate by its own interval over clients. C8
(hardware noise) is the ibm-hardware experiment's business, not this table's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from llmqfl.contracts import ARMS
from llmqfl.evaluation.evidence import (
    MIN_SEEDS,
    ClaimResult,
    Evidence,
    Record,
    _accuracy_gap,
    _decided,
    _final_accuracy,
    _finite,
    _idle_per_round,
    _missing,
    _paired,
    _paired_rounds,
    _per_arm,
    _too_few,
    _unmeasurable,
)
from llmqfl.evaluation.metrics import rounds_to_target
from llmqfl.evaluation.stats import summarise
from llmqfl.evaluation.verdicts import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    NOT_MEASURABLE,
    VERDICT_CODES,
    Criterion,
)

__all__ = ["ARMS", "ARM_LABELS", "FAILS", "HOLDS", "INCONCLUSIVE", "MIN_SEEDS", "NOT_MEASURABLE", "VERDICT_CODES",
           "ClaimResult", "Evidence", "evaluate_claims", "teacher_check"]

ARM_LABELS = {"baseline": "B0", "llm_guided": "L", "budget_matched": "B1", "equal_cost": "E", "loss_stopping": "S"}
IDLE_RATIO = 0.70  # C1: L idle per round <= 0.70 x B0's ("about 30% less")
ACCURACY_SLACK = 0.01  # C1, C2: accuracy may drop by at most 1 percentage point
TARGET_FRACTION = 0.95  # C3: target accuracy = 95% of the best baseline accuracy
SELECTION_TOLERANCE = 0.01  # C4: measured uplink cut may fall short of the expected cut by 1 point
SLOPE_TARGET, SLOPE_TOLERANCE = -1.0, 0.3  # C5: O(1/T) means slope -1 +- 0.3
TEXT_SOURCES = {"rotten_tomatoes", "tweet_eval"}
UNINFORMATIVE = "teacher uninformative"

def evaluate_claims(evidence: Evidence) -> list[ClaimResult]:
    """Decide C1-C7 from ``evidence``; raises ValueError for an unknown arm or a record without its keys."""
    for arm, records in evidence.runs.items():
        if arm not in ARMS:
            raise ValueError(f"unknown arm {arm!r}; expected one of {', '.join(ARMS)}")
        for record in records:
            missing = [k for k in ("seed", "rounds_run", "per_round", "final", "best", "totals") if k not in record]
            if missing:
                raise ValueError(f"eval record for arm {arm}: missing key(s) {', '.join(missing)}")
    informative, _ = teacher_check(evidence)
    results = []
    for check in CHECKS:
        result = check(evidence)
        if result.id in GUIDANCE_CLAIMS and informative is False:
            result = ClaimResult(**{**result.__dict__, "flags": (*result.flags, UNINFORMATIVE)})
        results.append(result)
    return results


def teacher_check(evidence: Evidence) -> tuple[bool | None, str]:
    """Whether the LLM teacher beats the majority rate by its own 95% interval over clients.

    Uses each client's ``eval_accuracy - majority_rate`` (both on the client's eval split, from the
    distill metrics). None when no distill metrics carry both numbers.
    """
    margins = [_finite(m.get("eval_accuracy")) - _finite(m.get("majority_rate")) for m in evidence.distill]
    margin = summarise(margins)
    if margin is None:
        return None, "no teacher accuracy recorded"
    accuracy = summarise([_finite(m.get("eval_accuracy")) for m in evidence.distill])
    text = f"teacher accuracy {accuracy.format(percent=True)}, over the majority rate by {margin.format(percent=True)}"
    return bool(margin.has_interval and margin.low > 0), text


def _gap_criterion(evidence: Evidence, arm: str = "llm_guided", other: str = "baseline") -> Criterion | None:
    gap = _paired(evidence, arm, other, _accuracy_gap)
    if gap is None:
        return None
    name = f"final accuracy {ARM_LABELS[arm]}-{ARM_LABELS[other]}"
    return Criterion(name, gap, -ACCURACY_SLACK, "above")


# ---------------------------------------------------------------- claims


def claim_idle(evidence: Evidence) -> ClaimResult:
    """C1: about 30% less idle computation per round (straggler wait), without losing accuracy.

    Per round run, so an arm that stops early does not "save" idle work by running fewer rounds.
    Idle work (circuit executions a client is short of the round's slowest selected client) is
    deterministic; the wall-clock idle seconds, which depend on the machine's load, are reported beside it.
    """
    base = {
        "id": "C1",
        "claim": "~30% less idle computation per round",
        "metric": "idle work per round: circuit executions short of the round's slowest client",
        "values": _per_arm(evidence, _idle_per_round),
    }
    if reason := _missing(evidence, ("baseline", "llm_guided")):
        return _unmeasurable(base, reason)
    gap = _gap_criterion(evidence)
    if all(not r["totals"].get("idle_circuits") for r in evidence.runs["baseline"]):
        return _no_baseline_idle(evidence, base, gap)

    def ratio(a: Record, b: Record) -> float:
        denominator = _idle_per_round(b)
        return _idle_per_round(a) / denominator if denominator else math.nan

    idle = _paired(evidence, "llm_guided", "baseline", ratio)
    # L <= 0.7 x B0 per round, as a paired excess per (replicate, round): idle work follows each round's
    # maxiter schedule, so the round is the unit; a ratio of three run means has a uselessly wide t-interval
    excess = _paired_rounds(evidence, "llm_guided", "baseline", lambda a, b: a - IDLE_RATIO * b, "idle_circuits")
    if reason := _too_few([idle, gap.summary if gap else None]):
        return _unmeasurable(base, reason)
    if excess is not None and excess.has_interval:
        criteria = [Criterion(f"idle work per round L - {IDLE_RATIO:g} x B0, per (replicate, round)", excess,
                              0.0, "below"), gap]
    else:
        criteria = [Criterion("idle work per round L/B0", idle, IDLE_RATIO, "below"), gap]
    seconds = _paired(evidence, "llm_guided", "baseline",
                      lambda a, b: _finite(a["totals"].get("idle_seconds")) / int(a["rounds_run"])
                      / (_finite(b["totals"].get("idle_seconds")) / int(b["rounds_run"]) or math.nan))
    extra = (f"idle work per round L/B0 per replicate = {idle.format()}; wall-clock idle seconds per round L/B0 = "
             f"{seconds.format() if seconds else 'n/a'} (load-dependent)")
    return _decided(base, criteria, extra, {"idle_ratio": idle.mean, "accuracy_gap": gap.summary.mean,
                                            "idle_seconds_ratio": seconds.mean if seconds else None})


def _no_baseline_idle(evidence: Evidence, base: dict[str, Any], gap: Criterion | None) -> ClaimResult:
    """B0 clients all do equal work: L cannot cut idle work below zero, only add to it."""
    guided = base["values"]["llm_guided"]
    if guided is None or (guided.mean == 0 and not any(guided.values)):
        why = "neither B0 nor L has idle work (one aggregated client per round, or equal work on every client)"
        return _unmeasurable(base, why)
    if reason := _too_few([guided]):
        return _unmeasurable(base, reason)
    # L's idle per round must be <= 0.7 x 0 = 0: holds only if L has none either (handled above)
    criteria = [Criterion("idle work per round of L (B0 has none)", guided, 0.0, "below")]
    if gap is not None and gap.summary.has_interval:
        criteria.append(gap)
    return _decided(base, criteria, "B0 clients do equal work, so L can only add idle work",
                    {"idle_ratio": math.inf})


def claim_rounds(evidence: Evidence) -> ClaimResult:
    """C2: fewer communication rounds through early termination, at no accuracy cost."""
    rounds = int(evidence.config["federation"]["rounds"])
    base = {
        "id": "C2",
        "claim": "fewer communication rounds (termination)",
        "metric": f"rounds run (of {rounds})",
        "values": _per_arm(evidence, lambda r: r["rounds_run"]),
    }
    termination = evidence.config.get("qfl", {}).get("termination", {})
    if all(termination.get(k) is None for k in ("llm_threshold", "plateau_rounds", "llm_threshold_quantile")):
        return _unmeasurable(base, "termination is off (qfl.termination.llm_threshold and plateau_rounds are null)")
    if reason := _missing(evidence, ("baseline", "llm_guided")):
        return _unmeasurable(base, reason)
    used = base["values"]["llm_guided"]
    gap = _gap_criterion(evidence)
    if reason := _too_few([used, gap.summary if gap else None]):
        return _unmeasurable(base, reason)
    reasons = sorted({str(r.get("stop_reason") or "none") for r in evidence.runs["llm_guided"]})
    criteria = [Criterion("rounds run by L", used, rounds, "below", strict=True), gap]
    extra = (f"stop reasons: {', '.join(reasons)}; {rounds - used.mean:.3g} rounds fewer on average; "
             "the accuracy criterion compares L at its last round with B0 after all its rounds")
    return _decided(base, criteria, extra, {"rounds_saved": rounds - used.mean, "accuracy_gap": gap.summary.mean})


def target_accuracy(evidence: Evidence) -> float | None:
    """95% of the baseline's best server test accuracy (mean over replicates of each one's best round)."""
    best = summarise([_finite(r["best"].get("test_accuracy")) for r in evidence.runs.get("baseline", ())])
    return None if best is None else TARGET_FRACTION * best.mean


def claim_convergence(evidence: Evidence) -> ClaimResult:
    """C3: L reaches the target accuracy in fewer rounds than B0 and than B1 (same budget, no LLM)."""
    target = target_accuracy(evidence)
    rounds = int(evidence.config["federation"]["rounds"])
    censored: list[str] = []

    def to_target(record: Record) -> float:
        reached = rounds_to_target(record["per_round"]["test_accuracy"], target)
        if reached is None:
            censored.append(f"{ARM_LABELS.get(record.get('arm', ''), '?')} replicate {record['seed']}")
            return float(rounds + 1)
        return float(reached)

    base = {
        "id": "C3",
        "claim": "faster convergence (vs B0 and B1)",
        "metric": "rounds to 95% of best baseline accuracy",
        "values": {a: None for a in ARMS} if target is None else _per_arm(evidence, to_target),
    }
    if reason := _missing(evidence, ARMS):
        return _unmeasurable(base, reason + " (beating B0 alone would show the effect of extra iterations)")
    if target is None:
        return _unmeasurable(base, "the baseline has no finite server test accuracy")
    if not float(evidence.config.get("qfl", {}).get("distillation", {}).get("weight", 0.0)) > 0:
        return _unmeasurable(base, "qfl.distillation.weight is 0: L and B1 then train identically by "
                                   "construction (B1 replays L's schedule), so L cannot beat B1")
    b0 = _paired(evidence, "llm_guided", "baseline", lambda a, b: to_target(a) - to_target(b))
    b1 = _paired(evidence, "llm_guided", "budget_matched", lambda a, b: to_target(a) - to_target(b))
    if reason := _too_few([b0, b1]):
        return _unmeasurable(base, reason)
    criteria = [Criterion("rounds L-B0", b0, 0.0, "below", strict=True),
                Criterion("rounds L-B1", b1, 0.0, "below", strict=True)]
    extra = f"target accuracy {target:.4g}"
    if censored:
        extra += f"; not reached within {rounds} rounds (counted as {rounds + 1}): {', '.join(sorted(set(censored)))}"
    return _decided(base, criteria, extra, {"target_accuracy": target, "rounds_l_minus_b0": b0.mean,
                                            "rounds_l_minus_b1": b1.mean})


def expected_cut(record: Record, kind: str, n_clients: int, k: int) -> float:
    """Uplink cut (N-k)/N averaged over the rounds run, with the rounds in which selection applies.

    closest_to_server has no losses to compare before round 1, so round 1 uploads from every client;
    random applies from round 1.
    """
    rounds = int(record["rounds_run"])
    if rounds < 1:
        return math.nan
    applies = rounds - 1 if kind == "closest_to_server" else rounds
    return applies * (n_clients - k) / (n_clients * rounds)


def claim_selection(evidence: Evidence) -> ClaimResult:
    """C4: client selection cuts the uplink by (N-k)/N in the rounds where it applies."""
    federation = evidence.config["federation"]
    selection = federation["selection"]
    n, kind = int(federation["n_clients"]), selection["kind"]
    k = max(1, math.floor(selection["fraction"] * n + 1e-9))
    base = {
        "id": "C4",
        "claim": "client selection cuts uplink by (N-k)/N",
        "metric": "uplink bytes / all-client uplink",
        "values": _per_arm(evidence, lambda r: (r.get("selection") or {}).get("uplink_fraction")),
        "percent": True,
    }
    if kind == "all":
        return _unmeasurable(base, "selection kind is all: every client uploads every round")
    if reason := _missing(evidence, ("baseline", "llm_guided")):
        return _unmeasurable(base, reason)

    def shortfall(record: Record) -> float:
        cut = 1.0 - _finite((record.get("selection") or {}).get("uplink_fraction"))
        return cut - expected_cut(record, kind, n, k)

    guided = summarise([shortfall(r) for r in evidence.runs["llm_guided"]])
    baseline = summarise([shortfall(r) for r in evidence.runs["baseline"]])
    gap = _gap_criterion(evidence)
    if reason := _too_few([guided, gap.summary if gap else None]):
        return _unmeasurable(base, reason)
    expected = summarise([expected_cut(r, kind, n, k) for r in evidence.runs["llm_guided"]])
    criteria = [Criterion("L uplink cut - expected cut", guided, -SELECTION_TOLERANCE, "above"), gap]
    cut = 1.0 - base["values"]["llm_guided"].mean
    extra = (f"{kind} with fraction {selection['fraction']}: k={k} of N={n}; L's uplink cut {cut:.1%}, expected "
             f"over the rounds run {expected.format(percent=True)}; B0 with the same selection: cut - expected "
             f"{baseline.format() if baseline else 'n/a'}; the accuracy criterion compares L with B0 under the "
             f"same selection")
    return _decided(base, criteria, extra, {"uplink_cut": cut,
                                            "expected_cut": expected.mean, "cut_shortfall": guided.mean})


def claim_rate(evidence: Evidence) -> ClaimResult:
    """C5: O(1/T) convergence: slope of log(min_{t<=T} F_t - F*) against log T is about -1."""
    base = {
        "id": "C5",
        "claim": "O(1/T) convergence",
        "metric": "slope of log(min F - F*) vs log T, server loss",
        "values": _per_arm(evidence, lambda r: (r.get("convergence") or {}).get("slope")),
    }
    if reason := _missing(evidence, ("llm_guided",)):
        return _unmeasurable(base, reason)
    slope = base["values"]["llm_guided"]
    if slope is None:
        return _unmeasurable(base, "the server loss never decreased over >= 3 rounds, so there is no rate to fit")
    if reason := _too_few([slope]):
        return _unmeasurable(base, reason)
    low, high = SLOPE_TARGET - SLOPE_TOLERANCE, SLOPE_TARGET + SLOPE_TOLERANCE
    criteria = [Criterion("L slope", slope, low, "above"), Criterion("L slope", slope, high, "below")]
    b0 = base["values"]["baseline"]
    extra = (f"B0 slope {b0.format() if b0 else 'n/a'}; F* per run is the floor in [0, min F) that makes the "
             "fit straightest")
    return _decided(base, criteria, extra, {"slope": slope.mean})


def claim_peft(evidence: Evidence) -> ClaimResult:
    """C6: PEFT fine-tunes with less memory and time than full fine-tuning of the same model on the same data.

    The trainable fraction is reported beside it (it cannot fail for any LoRA set-up, so it does not
    decide); the verdict compares each client's peak memory and seconds under the configured PEFT with
    a full fine-tuning of the same client (``distill_full``).
    """
    fraction = summarise([_finite(m.get("trainable_fraction")) for m in evidence.distill])
    base = {
        "id": "C6",
        "claim": "PEFT cheaper than full fine-tuning",
        "metric": "trainable / total LLM parameters (over clients)",
        "values": {"baseline": None, "llm_guided": fraction, "budget_matched": None},
        "percent": True,
    }
    if fraction is None:
        return _unmeasurable(base, "no distill metrics.json with trainable_fraction (the LLM was not fine-tuned)")
    first = evidence.distill[0]
    peft = str(first.get("peft", evidence.config.get("llm", {}).get("peft", "?")))
    described = (f"{first.get('model', '?')} {peft}: {first.get('trainable_params', '?')} of "
                 f"{first.get('total_params', '?')} parameters trainable ({fraction.format(percent=True)})")
    if peft == "full":
        return _unmeasurable(base, "llm.peft is full: no parameter-efficient fine-tuning to measure")
    if not evidence.distill_full:
        return _unmeasurable(base, described + "; no full fine-tuning reference of the same model and data was run")
    pairs = list(zip(evidence.distill, evidence.distill_full, strict=False))
    memory = summarise([_finite(a.get("peak_memory_mb")) / _finite(b.get("peak_memory_mb")) for a, b in pairs])
    seconds = summarise([_finite(a.get("seconds")) / _finite(b.get("seconds")) for a, b in pairs])
    if reason := _too_few([memory, seconds]):
        return _unmeasurable(base, described + f"; {reason} (clients with both runs)")
    criteria = [Criterion(f"peak memory {peft}/full", memory, 1.0, "below", strict=True),
                Criterion(f"seconds {peft}/full", seconds, 1.0, "below", strict=True)]
    absolute = summarise([_finite(m.get("peak_memory_mb")) for m in evidence.distill])
    full = summarise([_finite(m.get("peak_memory_mb")) for m in evidence.distill_full])
    extra = (f"{described}; peak memory {absolute.mean:.0f} MB vs {full.mean:.0f} MB per client (process peak RSS)"
             if absolute and full else described)
    return _decided(base, criteria, extra, {"trainable_fraction": fraction.mean, "memory_ratio": memory.mean,
                                            "seconds_ratio": seconds.mean})


def claim_text(evidence: Evidence) -> ClaimResult:
    """C7: on the text task the quantum model beats the majority-class rate."""
    base = {
        "id": "C7",
        "claim": "text task above majority class",
        "metric": "final server test accuracy",
        "values": _per_arm(evidence, _final_accuracy),
        "percent": True,
    }
    kind = evidence.data_kind or ("text" if evidence.config["data"]["source"] in TEXT_SOURCES else None)
    if kind != "text":
        return _unmeasurable(base, f"a text-task claim; this experiment's data are {kind or 'not text'}")
    if evidence.majority_rate is None:
        return _unmeasurable(base, "the majority-class rate of the test set is unknown")
    if reason := _missing(evidence, ("llm_guided",)):
        return _unmeasurable(base, reason)
    accuracy = base["values"]["llm_guided"]
    if reason := _too_few([accuracy]):
        return _unmeasurable(base, reason)
    majority = float(evidence.majority_rate)
    criteria = [Criterion("L accuracy", accuracy, majority, "above", strict=True)]
    f1 = summarise([_finite(m.get("eval_f1")) for m in evidence.distill])
    extra = f"majority-class rate {majority:.1%}" + (f"; LLM weighted F1 over clients {f1.format()}" if f1 else "")
    return _decided(base, criteria, extra, {"majority_rate": majority,
                                            "accuracy_over_majority": accuracy.mean - majority})


CHECKS: tuple[Callable[[Evidence], ClaimResult], ...] = (
    claim_idle,
    claim_rounds,
    claim_convergence,
    claim_selection,
    claim_rate,
    claim_peft,
    claim_text,
)
GUIDANCE_CLAIMS = ("C1", "C2", "C3")
