"""Every claim can come out either way: one synthetic case where it holds and one where it does not.

Verdicts come from 95% intervals over replicates (holds / does not hold / inconclusive), never from
means alone; comparisons pair replicates, never rounds; guidance claims are flagged when the teacher is
no better than the majority rate. C1-C3 here; C4-C7 and the shared checks in test_claims_rate.py.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from claim_cases import CURVE, FLAT, arms, claim, config, spread

from llmqfl.contracts import ARMS
from llmqfl.evaluation.claims import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    NOT_MEASURABLE,
)
from llmqfl.evaluation.stats import summarise
from llmqfl.evaluation.verdicts import Criterion, decide


def test_an_interval_decides_holds_fails_or_inconclusive() -> None:
    def position(values: tuple[float, ...]) -> str:
        return decide([Criterion("x", summarise(values), 0.7, "below")])

    assert position((0.5, 0.51, 0.52)) == HOLDS
    assert position((0.9, 0.91, 0.92)) == FAILS
    assert position((0.2, 0.69, 1.1)) == INCONCLUSIVE  # mean 0.66 < 0.7, but the interval straddles


# ---------------------------------------------------------------- C1 idle computation, L vs B0 and E


@pytest.mark.parametrize(("ratio", "verdict"), [(0.5, HOLDS), (0.95, FAILS)])
def test_c1_idle_computation_against_b0_and_e(ratio: float, verdict: str) -> None:
    result = claim("C1", arms(llm_guided={"idle": 10.0 * ratio}))
    assert result.verdict == verdict, result.reason
    assert result.numbers["idle_ratio_baseline"] == pytest.approx(ratio, rel=0.01)
    assert result.numbers["idle_ratio_equal_cost"] == pytest.approx(ratio, rel=0.01)
    assert "(n=3)" in result.reason  # one pair per replicate, not one per (replicate, round)
    assert 0 <= result.p_value <= 1


def test_c1_counts_the_circuits_spent_after_the_loss_stopped_improving() -> None:
    # same straggler idle everywhere; B0 and E bottom out in round 2 of 5, then spend 3 x 100 circuits for nothing
    stalled = {"loss": [0.9, 0.5, 0.6, 0.6, 0.7]}
    result = claim("C1", arms(baseline=stalled, equal_cost=stalled))
    assert result.verdict == HOLDS, result.reason
    assert result.values["baseline"].mean == pytest.approx(10.01 + 300)
    assert result.values["llm_guided"].mean == pytest.approx(10.01)


def test_c1_must_beat_e_as_well_as_b0() -> None:
    # 50% of B0's idle computation, but E (L's cost spread evenly, no LLM) has a tenth of B0's
    result = claim("C1", arms(llm_guided={"idle": 5.0}, equal_cost={"idle": 1.0}))
    assert result.verdict == FAILS and "idle L - 0.7 x B0" in result.reason and "x E" in result.reason


def test_c1_needs_the_equal_cost_control_and_some_idle_computation() -> None:
    runs = arms()
    del runs["equal_cost"]
    assert "equal_cost" in claim("C1", runs).reason
    result = claim("C1", arms(**{arm: {"idle": 0.0} for arm in ARMS}))
    assert result.verdict == NOT_MEASURABLE and "neither L nor B0 has idle computation" in result.reason


# ---------------------------------------------------------------- C2 LLM termination vs loss-only stopping


@pytest.mark.parametrize(("guided", "stopping", "verdict"), [
    ({"rounds_run": 3, "accuracy": FLAT}, {"accuracy": FLAT}, HOLDS),  # L stops after 3 rounds, S runs all 5
    ({"accuracy": FLAT}, {"rounds_run": 3, "accuracy": FLAT}, FAILS),  # S stops first
    ({"rounds_run": 2, "accuracy": CURVE}, {"accuracy": CURVE}, FAILS),  # L stops at 0.6, S goes on to 0.8
])
def test_c2_l_stops_before_s_without_losing_accuracy_to_it(guided: dict, stopping: dict, verdict: str) -> None:
    result = claim("C2", arms(llm_guided=guided, loss_stopping=stopping))
    assert result.verdict == verdict, result.reason
    assert "rounds L-S" in result.reason and "context: final accuracy L-B0" in result.reason


def test_c2_equal_stopping_rounds_save_nothing() -> None:
    result = claim("C2", arms(llm_guided={"rounds_run": 3}, loss_stopping={"rounds_run": 3}))
    assert result.verdict == FAILS and result.numbers["rounds_l_minus_s"] == 0


def test_c2_is_not_measurable_without_termination_or_without_s() -> None:
    cfg = config().with_values({"qfl.termination.llm_threshold": None})
    assert claim("C2", arms(), cfg).verdict == NOT_MEASURABLE
    runs = arms()
    del runs["loss_stopping"]
    result = claim("C2", runs)
    assert result.verdict == NOT_MEASURABLE and "loss_stopping" in result.reason


def test_counts_shown_per_arm_keep_their_support() -> None:
    # rounds 7, 7 and 2: a t-interval reaches below 2 rounds (and below 0 for one more stray run)
    runs = arms(baseline={"accuracy": [0.8] * 7})
    runs["llm_guided"] = spread("llm_guided", [{"accuracy": [0.8] * 7}, {"accuracy": [0.8] * 7},
                                               {"rounds_run": 2, "accuracy": [0.8] * 7}])
    shown = claim("C2", runs, config(rounds=7)).values["llm_guided"]
    assert summarise([7, 7, 2]).low < 2 <= shown.low <= shown.mean <= shown.high <= 7


# ---------------------------------------------------------------- C3 circuits to target, L vs E


@pytest.mark.parametrize(("equal_cost", "verdict"), [
    ({"accuracy": [0.5, 0.6, 0.7, 0.77, 0.8]}, HOLDS),  # E needs 400 circuits, L 200
    ({"accuracy": [0.77, 0.8, 0.8, 0.8, 0.8]}, FAILS),  # E needs 100
    ({"accuracy": [0.5, 0.6, 0.77, 0.8, 0.8], "circuits": 50.0}, FAILS),  # E: 150 (3 cheaper rounds)
])
def test_c3_l_reaches_the_target_with_fewer_circuits_than_e(equal_cost: dict, verdict: str) -> None:
    # target 0.95 x 0.8 = 0.76; L reaches it in round 2 at 100 circuits per round
    result = claim("C3", arms(llm_guided={"accuracy": [0.5, 0.77, 0.8, 0.8, 0.8]}, equal_cost=equal_cost))
    assert result.verdict == verdict, result.reason
    assert result.values["llm_guided"].mean == pytest.approx(200)


def test_c3_a_run_that_stops_short_of_the_target_cannot_come_out_ahead() -> None:
    # L stops after 2 cheap rounds at 0.5: it spent 200 circuits, E reached the target with 500
    result = claim("C3", arms(llm_guided={"accuracy": [0.5] * 5, "rounds_run": 2}))
    assert result.verdict == FAILS and "not reached" in result.reason
    assert result.numbers["circuits_l_minus_e"] == pytest.approx(0)
    assert result.values["llm_guided"] is None  # no L run reached it


def test_c3_needs_e() -> None:
    runs = arms()
    del runs["equal_cost"]
    assert claim("C3", runs).verdict == NOT_MEASURABLE


# ---------------------------------------------------------------- inconclusive: the interval straddles


@pytest.mark.parametrize(("claim_id", "guided", "extra"), [
    # C1: L - 0.7 x B0 (and E) is -4, 0 and +4 on the three replicates
    ("C1", [{"idle": 3.0}, {"idle": 7.0}, {"idle": 11.0}], {}),
    # C2: L stops after 3 rounds on two replicates and runs all 5 (as S) on the other
    ("C2", [{"rounds_run": 3, "accuracy": FLAT}, {"rounds_run": 3, "accuracy": FLAT}, {"accuracy": FLAT}], {}),
    # C3: L reaches the target in round 2 on one replicate, in round 5 (as E) on the others
    ("C3", [{"accuracy": [0.5, 0.77, 0.8, 0.8, 0.8]}, {}, {}], {}),
])
def test_a_guidance_claim_whose_interval_straddles_its_criterion_is_inconclusive(
    claim_id: str, guided: list[dict[str, Any]], extra: dict[str, Any]
) -> None:
    runs = arms(loss_stopping={"accuracy": FLAT})
    runs["llm_guided"] = spread("llm_guided", guided)
    result = claim(claim_id, runs, **extra)
    assert result.verdict == INCONCLUSIVE, result.reason
    assert not math.isnan(result.p_value)
