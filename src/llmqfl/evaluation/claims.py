"""The paper's headline claims (C1-C7), each decided by code from measurements, in either direction.

Every claim returns the measured value per arm, a verdict and the reason, with the numbers the verdict
rests on. Verdicts come from 95% intervals (:mod:`llmqfl.evaluation.verdicts`): ``holds`` when the
interval clears the criterion, ``does not hold`` when it lies on the wrong side, ``inconclusive`` when
it straddles; ``not measurable here`` when the experiment lacks what the claim needs. Comparisons
between arms are paired by replicate (never by round) and need at least :data:`MIN_SEEDS` replicates;
the controls that isolate the LLM are the comparators: E (equal_cost, L's circuit executions without
the LLM) for idle work and convergence, S (loss_stopping, stops on its own loss) for termination.
Counts shown per arm (rounds, circuit executions) carry percentile-bootstrap intervals; criteria are
t-intervals of paired differences. A claim whose verdict is fixed before measuring is a defect
(``tests/unit/test_claims_*.py`` hold one synthetic case each way). Guidance claims (C1-C3) carry the flag
"teacher uninformative" when the LLM teacher's accuracy is not above the majority rate by its own
interval over clients. C8 (hardware noise) is the ibm-hardware experiment's business, not this table's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from llmqfl.contracts import ARMS
from llmqfl.errors import ConfigError
from llmqfl.evaluation.evidence import (
    MIN_SEEDS,
    ClaimResult,
    Evidence,
    Record,
    _accuracy_gap,
    _counts_per_arm,
    _decided,
    _final_accuracy,
    _finite,
    _missing,
    _paired,
    _paired_runs,
    _per_arm,
    _too_few,
    _unmeasurable,
    after_best,
    idle_computation,
    mean_curve,
    rate_summary,
)
from llmqfl.evaluation.metrics import circuits_to_target, dyadic_rate, rounds_to_target
from llmqfl.evaluation.stats import summarise
from llmqfl.evaluation.verdicts import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    NOT_MEASURABLE,
    VERDICT_CODES,
    Criterion,
)
from llmqfl.registry import trait

__all__ = ["ARMS", "ARM_LABELS", "FAILS", "HOLDS", "INCONCLUSIVE", "MIN_SEEDS", "NOT_MEASURABLE", "VERDICT_CODES",
           "ClaimResult", "Evidence", "evaluate_claims", "teacher_check"]

ARM_LABELS = {"baseline": "B0", "llm_guided": "L", "budget_matched": "B1", "equal_cost": "E", "loss_stopping": "S"}
IDLE_RATIO = 0.70  # C1: L's idle computation <= 0.70 x the reference's ("about 30% less")
IDLE_REFERENCES = ("baseline", "equal_cost")  # C1: no LLM at B0's budget, and at L's own total cost
ACCURACY_SLACK = 0.01  # C1, C2, C4: accuracy may drop by at most 1 percentage point
TARGET_FRACTION = 0.95  # C3: target accuracy = 95% of the best baseline accuracy
RATE_TARGET, RATE_TOLERANCE = -1.0, 0.3  # C5: O(1/T) means a convergence order of -1 +- 0.3
RATE_ROUNDS = 6  # C5: three doublings T -> 2T (T = 1, 2, 3) need 6 rounds
MIN_PEFT_CLIENTS = 3  # C6: clients with both a PEFT and a full fine-tuning measurement
UNINFORMATIVE = "teacher uninformative"


def _source_kind(source: str) -> str | None:
    """The item kind a data source declares (``registry`` trait ``item_kind``); None when unknown here."""
    try:
        return trait("data_source", source, "item_kind")
    except ConfigError:  # a run's extension source, not imported by the report: the data kind decides
        return None


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


def _mean_of(evidence: Evidence, arm: str, metric: Callable[[Record], float | None]) -> str:
    summary = summarise([_finite(metric(r)) for r in evidence.runs.get(arm, ())])
    return "n/a" if summary is None else f"{summary.mean:,.4g}"


def claim_idle(evidence: Evidence) -> ClaimResult:
    """C1: about 30% less idle computation than B0 and than E over the whole run, without losing accuracy.

    Idle computation sums, over the run, the straggler wait in circuit executions and the executions
    spent after the run's best server loss (the loss had stopped improving), so stopping early counts
    only where it cuts work that did not help. B0 gives every client the same budget and runs every
    round; E spends L's total cost evenly without the LLM, so L against E shows what the LLM's budgets
    and stopping add. One pair per replicate (rounds of a run are not independent). The wall-clock idle
    seconds, which depend on the machine's load, are reported beside it.
    """
    base = {
        "id": "C1",
        "claim": "~30% less idle computation",
        "metric": "idle computation per run: straggler idle + circuits after the best server loss "
                  "(circuit executions; bootstrap interval)",
        "values": _counts_per_arm(evidence, idle_computation),
    }
    if reason := _missing(evidence, ("llm_guided", *IDLE_REFERENCES)):
        return _unmeasurable(base, reason)
    criteria: list[Criterion] = []
    numbers: dict[str, float | None] = {}
    for other in IDLE_REFERENCES:
        label = ARM_LABELS[other]
        excess = _paired(evidence, "llm_guided", other,
                         lambda a, b: idle_computation(a) - IDLE_RATIO * idle_computation(b))
        gap = _gap_criterion(evidence, other=other)
        if reason := _too_few([excess, gap.summary if gap else None]):
            return _unmeasurable(base, reason)
        if not any(v for arm in ("llm_guided", other) for v in getattr(base["values"][arm], "values", ())):
            return _unmeasurable(base, f"neither L nor {label} has idle computation to cut")
        criteria += [Criterion(f"idle L - {IDLE_RATIO:g} x {label}, per replicate", excess, 0.0, "below"), gap]
        theirs = base["values"][other].mean
        numbers[f"idle_ratio_{other}"] = base["values"]["llm_guided"].mean / theirs if theirs else math.inf
        numbers[f"accuracy_gap_{other}"] = gap.summary.mean
    parts = ", ".join(f"{ARM_LABELS[a]} {_mean_of(evidence, a, lambda r: r['totals'].get('idle_circuits'))} + "
                      f"{_mean_of(evidence, a, after_best)}" for a in ("llm_guided", *IDLE_REFERENCES))
    seconds = ", ".join(f"{ARM_LABELS[a]} {_mean_of(evidence, a, lambda r: r['totals'].get('idle_seconds'))}"
                        for a in ("llm_guided", *IDLE_REFERENCES))
    extra = (f"mean straggler idle + circuits after the best loss: {parts}; "
             f"wall-clock idle seconds per run (load-dependent): {seconds}")
    return _decided(base, criteria, extra, {"idle_ratio": numbers["idle_ratio_baseline"], **numbers})


def claim_rounds(evidence: Evidence) -> ClaimResult:
    """C2: the LLM's termination saves communication rounds: L stops in fewer rounds than S (no LLM, stops once
    its own server loss stops moving), paired by replicate, and loses at most the slack of accuracy to S.

    Does the LLM stop better than the loss alone? Fewer rounds is strict: L and S stopping together (or
    neither stopping) saves nothing. B0 (all rounds) is context only: any stopping rule beats it on rounds.
    """
    rounds = evidence.config.federation.rounds
    base = {
        "id": "C2",
        "claim": "fewer communication rounds (LLM termination vs loss-only stopping)",
        "metric": f"rounds run (of {rounds}; bootstrap interval)",
        "values": _counts_per_arm(evidence, lambda r: r["rounds_run"]),
    }
    termination = evidence.config.qfl.termination
    if all(value is None for value in (termination.llm_threshold, termination.plateau_rounds,
                                       termination.llm_threshold_quantile)):
        return _unmeasurable(base, "termination is off (qfl.termination.llm_threshold and plateau_rounds are null)")
    if reason := _missing(evidence, ("llm_guided", "loss_stopping")):
        return _unmeasurable(base, reason)
    fewer = _paired(evidence, "llm_guided", "loss_stopping", lambda a, b: float(a["rounds_run"]) - b["rounds_run"])
    gap = _gap_criterion(evidence, other="loss_stopping")
    if reason := _too_few([fewer, gap.summary if gap else None]):
        return _unmeasurable(base, reason)
    criteria = [Criterion("rounds L-S, per replicate", fewer, 0.0, "below", strict=True), gap]
    used = base["values"]["llm_guided"]
    stops = {a: sorted({str(r.get("stop_reason") or "none") for r in evidence.runs[a]})
             for a in ("llm_guided", "loss_stopping")}
    extra = f"stop reasons: L {', '.join(stops['llm_guided'])}; S {', '.join(stops['loss_stopping'])}"
    b0 = _gap_criterion(evidence, other="baseline")
    if b0 is not None:
        extra += f"; context: final accuracy L-B0 {b0.summary.format()} (B0 runs all {rounds} rounds)"
    return _decided(base, criteria, extra, {"rounds_saved": rounds - used.mean, "rounds_l_minus_s": fewer.mean,
                                            "accuracy_gap": gap.summary.mean,
                                            "accuracy_gap_baseline": b0.summary.mean if b0 else None})


def target_accuracy(evidence: Evidence) -> float | None:
    """95% of the baseline's best server test accuracy (mean over replicates of each one's best round)."""
    best = summarise([_finite(r["best"].get("test_accuracy")) for r in evidence.runs.get("baseline", ())])
    return None if best is None else TARGET_FRACTION * best.mean


def claim_convergence(evidence: Evidence) -> ClaimResult:
    """C3: L reaches the target accuracy with fewer circuit executions than E (L's total cost spread evenly,
    no LLM), paired by replicate.

    Circuit executions, not rounds: an arm that runs more iterations per round reaches a target in fewer
    rounds without converging faster, which is what beating B0 on rounds showed. In a pair, a run that
    never reaches the target is charged the larger total of the two runs (so it cannot come out ahead);
    the per-arm values are over the runs that reached it.
    """
    target = target_accuracy(evidence)
    rounds = evidence.config.federation.rounds
    censored: set[str] = set()

    def cost(record: Record) -> float | None:
        per_round = record["per_round"]
        spent = circuits_to_target(per_round["test_accuracy"], per_round.get("circuits", ()), target)
        if spent is None:
            censored.add(f"{ARM_LABELS.get(record.get('arm', ''), '?')} replicate {record['seed']}")
        return spent

    def pair(a: Record, b: Record) -> float:
        """A run that never reaches the target is charged the larger total of the pair: no better than the other."""
        worst = max(_finite(a["totals"].get("circuits")), _finite(b["totals"].get("circuits")))
        mine, theirs = cost(a), cost(b)
        return (worst if mine is None else mine) - (worst if theirs is None else theirs)

    def to_target(record: Record) -> float:
        reached = rounds_to_target(record["per_round"]["test_accuracy"], target)
        return float(rounds + 1 if reached is None else reached)

    base = {
        "id": "C3",
        "claim": "faster convergence (vs E, equal cost)",
        "metric": "circuit executions to 95% of best baseline accuracy, runs that reach it (bootstrap interval)",
        "values": {a: None for a in ARMS} if target is None else _counts_per_arm(evidence, cost),
    }
    if reason := _missing(evidence, ("baseline", "llm_guided", "equal_cost")):
        return _unmeasurable(base, reason + " (the target comes from B0; E spends L's cost without the LLM)")
    if target is None:
        return _unmeasurable(base, "the baseline has no finite server test accuracy")
    faster = _paired(evidence, "llm_guided", "equal_cost", pair)
    if reason := _too_few([faster]):
        return _unmeasurable(base, reason)
    criteria = [Criterion("circuits to target L-E, per replicate", faster, 0.0, "below", strict=True)]
    context = [f"rounds to target L-{ARM_LABELS[o]} {s.format()}" for o in ("equal_cost", "baseline", "budget_matched")
               if (s := _paired(evidence, "llm_guided", o, lambda a, b: to_target(a) - to_target(b)))]
    extra = f"target accuracy {target:.4g}; context: {'; '.join(context)}"
    if censored:
        extra += f"; not reached (rounds counted as {rounds + 1}): {', '.join(sorted(censored))}"
    return _decided(base, criteria, extra, {"target_accuracy": target, "circuits_l_minus_e": faster.mean})


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


def _accuracy_at_shared_round(selected: Record, full: Record) -> float:
    """Accuracy with selection minus accuracy aggregating every client, both at the last round both ran."""
    last = min(int(selected["rounds_run"]), int(full["rounds_run"]))
    if last < 1:
        return math.nan
    accuracy = selected["per_round"]["test_accuracy"][last - 1], full["per_round"]["test_accuracy"][last - 1]
    return _finite(accuracy[0]) - _finite(accuracy[1])


def claim_selection(evidence: Evidence) -> ClaimResult:
    """C4: client selection cuts the uplink at no more than the slack of accuracy.

    The cut follows from the rule ((N-k)/N in the rounds where selection applies), so it is reported as a
    number, not tested. What can fail is the accuracy it costs, which needs L runs that aggregate every
    client at the same rounds (``Evidence.full_participation``); without them: not measurable here.
    """
    federation = evidence.config.federation
    selection = federation.selection
    n, kind = federation.n_clients, selection.kind
    k = max(1, math.floor(selection.fraction * n + 1e-9))
    base: dict[str, Any] = {
        "id": "C4",
        "claim": "client selection cuts uplink at little accuracy cost",
        "metric": "uplink bytes / all-client uplink",
        "values": _per_arm(evidence, lambda r: (r.get("selection") or {}).get("uplink_fraction")),
        "percent": True,
    }
    if kind == "all":
        return _unmeasurable(base, "selection kind is all: every client uploads every round")
    if reason := _missing(evidence, ("llm_guided",)):
        return _unmeasurable(base, reason)
    cut = 1.0 - base["values"]["llm_guided"].mean if base["values"]["llm_guided"] else math.nan
    expected = summarise([expected_cut(r, kind, n, k) for r in evidence.runs["llm_guided"]])
    base["numbers"] = {"uplink_cut": cut, "expected_cut": expected.mean if expected else None}
    saving = (f"{kind} with fraction {selection.fraction}: k={k} of N={n}; L's uplink cut {cut:.1%} "
              f"(reported, not tested: (N-k)/N over the rounds selection applies gives "
              f"{expected.mean if expected else math.nan:.1%})")
    full = evidence.full_participation.get("llm_guided")
    if not full:
        return _unmeasurable(base, saving + "; the accuracy cost of selection needs L runs aggregating every "
                                            "client at the same rounds, and no arm here does (all select)")
    gap = _paired_runs(evidence.runs["llm_guided"], full, _accuracy_at_shared_round)
    if reason := _too_few([gap]):
        return _unmeasurable(base, saving + f"; {reason}")
    criteria = [Criterion("accuracy L with selection - L all clients, at the same round", gap, -ACCURACY_SLACK,
                          "above")]
    return _decided(base, criteria, saving, {"accuracy_cost": gap.mean})


def claim_rate(evidence: Evidence) -> ClaimResult:
    """C5: O(1/T) convergence: the order of L's mean server-loss curve lies in -1 +- 0.3.

    Read without guessing the optimum F* (:func:`llmqfl.evaluation.metrics.dyadic_rate`): a floor fixed
    just below the smallest loss decides the slope by itself, and a floor chosen to straighten the fit
    decides it too. One curve per arm, the mean over replicates, so the noise of single runs averages out.
    """
    base = {
        "id": "C5",
        "claim": "O(1/T) convergence",
        "metric": "order of the mean server-loss curve: slope of log(m_T - m_2T) vs log T (jackknife interval)",
        "values": {arm: rate_summary(evidence.runs.get(arm, ())) for arm in ARMS},
    }
    if reason := _missing(evidence, ("llm_guided",)):
        return _unmeasurable(base, reason)
    runs = evidence.runs["llm_guided"]
    shared = min(len(r["per_round"]["server_loss"]) for r in runs)
    rate = base["values"]["llm_guided"]
    if shared < RATE_ROUNDS:
        return _unmeasurable(base, f"L's replicates share {shared} round(s); a rate needs >= {RATE_ROUNDS} "
                                   "(three doublings T -> 2T)")
    if rate is None:
        return _unmeasurable(base, "L's mean server loss stops improving over a doubling T -> 2T: no power-law rate")
    if reason := _too_few([rate]):
        return _unmeasurable(base, reason + " (or a leave-one-out mean curve stops improving)")
    low, high = RATE_TARGET - RATE_TOLERANCE, RATE_TARGET + RATE_TOLERANCE
    criteria = [Criterion("L order", rate, low, "above"), Criterion("L order", rate, high, "below")]
    point = dyadic_rate(mean_curve(runs, shared))
    context = ", ".join(f"{ARM_LABELS[a]} {s.format()}" for a in ("baseline", "equal_cost")
                        if (s := base["values"][a]) is not None)
    extra = (f"mean-curve order {point:.3g} over {shared} rounds; O(1/T) is -1, O(1/sqrt T) -0.5"
             + (f"; context: {context}" if context else ""))
    return _decided(base, criteria, extra, {"slope": point, "slope_jackknife": rate.mean})


def claim_peft(evidence: Evidence) -> ClaimResult:
    """C6: PEFT fine-tunes with less memory and time than full fine-tuning of the same model on the same data.

    The trainable fraction is reported beside it (it cannot fail for any LoRA set-up, so it does not
    decide); the verdict compares each client's peak memory and seconds under the configured PEFT with
    a full fine-tuning of the same client (``distill_full``), over at least :data:`MIN_PEFT_CLIENTS`
    clients: two ratios give a t-interval too wide to say anything.
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
    peft = str(first.get("peft", evidence.config.llm.peft))
    described = (f"{first.get('model', '?')} {peft}: {first.get('trainable_params', '?')} of "
                 f"{first.get('total_params', '?')} parameters trainable ({fraction.format(percent=True)})")
    if peft == "full":
        return _unmeasurable(base, "llm.peft is full: no parameter-efficient fine-tuning to measure")
    if not evidence.distill_full:
        return _unmeasurable(base, described + "; no full fine-tuning reference of the same model and data was run")
    # both lists are in client order and the reference covers the first clients
    pairs = [(a, b) for a, b in zip(evidence.distill, evidence.distill_full, strict=False)
             if all(math.isfinite(_finite(m.get(k))) for m in (a, b) for k in ("peak_memory_mb", "seconds"))]
    if len(pairs) < MIN_PEFT_CLIENTS:
        configured = evidence.config.report.peft_reference_clients
        return _unmeasurable(base, described + f"; {len(pairs)} client(s) with both a {peft} and a full fine-tuning "
                                               f"measurement (report.peft_reference_clients = {configured}): a "
                                               f"comparison over clients needs >= {MIN_PEFT_CLIENTS}")
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
    kind = evidence.data_kind or _source_kind(evidence.config.data.source)
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
