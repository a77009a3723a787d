"""C4-C7 each way, and what every claim shares: C1..C7 in order, a p for each decided claim, the teacher flag.

C4 reports the uplink cut (fixed by the selection rule) and decides only the accuracy it costs, which
needs all-client runs at the same rounds; C5 reads the order of the mean loss curve without guessing F*;
C6 needs three clients measured both ways.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from claim_cases import FLAT, SEEDS, arms, claim, config, falling, record, spread

from llmqfl.contracts import ARMS
from llmqfl.evaluation.claims import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    NOT_MEASURABLE,
    UNINFORMATIVE,
    Evidence,
    evaluate_claims,
)

SELECTING = {"selection": {"kind": "closest_to_server", "fraction": 0.25}}


# ---------------------------------------------------------------- C4 accuracy cost of selection


def full_participation(accuracy: list[float]) -> dict[str, list[dict[str, Any]]]:
    return {"llm_guided": [record("llm_guided", s, accuracy=accuracy, uplink=1.0) for s in SEEDS]}


def test_c4_reports_the_uplink_cut_but_is_not_measurable_without_all_client_runs() -> None:
    # closest_to_server, N=4, k=1, 5 rounds: round 1 uploads from all, so the expected cut is 4 x 0.75 / 5 = 60%
    result = claim("C4", arms(llm_guided={"uplink": 0.4}), config(**SELECTING))
    assert result.verdict == NOT_MEASURABLE and math.isnan(result.p_value)
    # uplink fractions 0.4, 0.401, 0.402 (the seed jitter)
    assert "aggregating every client" in result.reason and "L's uplink cut 59.9%" in result.reason
    assert result.numbers["expected_cut"] == pytest.approx(0.6)
    assert result.numbers["uplink_cut"] == pytest.approx(0.6, abs=0.01)


@pytest.mark.parametrize(("all_clients", "verdict"), [([0.5, 0.6, 0.7, 0.75, 0.805], HOLDS),
                                                      ([0.6, 0.7, 0.8, 0.85, 0.9], FAILS)])
def test_c4_accuracy_with_selection_against_all_clients_at_the_same_round(all_clients: list[float],
                                                                         verdict: str) -> None:
    result = claim("C4", arms(llm_guided={"uplink": 0.4}), config(**SELECTING),
                   full_participation=full_participation(all_clients))
    assert result.verdict == verdict, result.reason
    assert result.numbers["uplink_cut"] == pytest.approx(0.6, abs=0.01)


def test_c4_compares_at_the_last_round_both_ran() -> None:
    # L stops after round 2 (0.6); the all-client runs reach 0.9 by round 5 but 0.605 at round 2
    result = claim("C4", arms(llm_guided={"rounds_run": 2}), config(**SELECTING),
                   full_participation=full_participation([0.5, 0.605, 0.7, 0.8, 0.9]))
    assert result.verdict == HOLDS and result.numbers["accuracy_cost"] == pytest.approx(-0.005)


def test_c4_without_selection_is_not_measurable() -> None:
    assert claim("C4", arms(), config(selection={"kind": "all"})).verdict == NOT_MEASURABLE


# ---------------------------------------------------------------- C5 order of the mean loss curve


def curves(orders: tuple[float, ...], rounds: int = 8) -> list[dict[str, Any]]:
    return spread("llm_guided", [{"accuracy": [0.8] * rounds, "loss": falling(rounds, order)} for order in orders])


@pytest.mark.parametrize(("orders", "verdict"), [((0.95, 1.0, 1.05), HOLDS), ((0.45, 0.5, 0.55), FAILS),
                                                 ((1.9, 2.0, 2.1), FAILS), ((0.5, 1.0, 1.6), INCONCLUSIVE)])
def test_c5_order_of_the_mean_curve(orders: tuple[float, ...], verdict: str) -> None:
    runs = arms()
    runs["llm_guided"] = curves(orders)
    result = claim("C5", runs, config(rounds=8))
    assert result.verdict == verdict, result.reason
    assert result.values["llm_guided"].n == 3  # jackknife over replicates


def test_c5_needs_three_doublings_and_a_curve_that_keeps_improving() -> None:
    runs = arms()  # 5 rounds: doublings 1->2 and 2->4 only
    assert "needs >= 6" in claim("C5", runs).reason
    runs["llm_guided"] = spread("llm_guided", [{"accuracy": [0.8] * 8, "loss": [0.9, 0.8] + [0.7] * 6}] * 3)
    result = claim("C5", runs, config(rounds=8))
    assert result.verdict == NOT_MEASURABLE and "stops improving" in result.reason


# ---------------------------------------------------------------- C6 PEFT against full fine-tuning


def peft_metrics(memory: float, seconds: float, peft: str = "lora", clients: int = 4) -> list[dict[str, Any]]:
    return [{"peft": peft, "model": "minilm-l6", "trainable_params": 1, "total_params": 100,
             "trainable_fraction": 0.01 if peft == "lora" else 1.0, "peak_memory_mb": memory + k,
             "seconds": seconds + 0.1 * k} for k in range(clients)]


@pytest.mark.parametrize(("memory", "seconds", "verdict"), [(500.0, 5.0, HOLDS), (900.0, 12.0, FAILS)])
def test_c6_peft_against_full_fine_tuning(memory: float, seconds: float, verdict: str) -> None:
    full = peft_metrics(800.0, 10.0, peft="full")
    result = claim("C6", arms(), distill=peft_metrics(memory, seconds), distill_full=full)
    assert result.verdict == verdict and "trainable" in result.reason


def test_c6_needs_three_clients_measured_both_ways() -> None:
    cfg = config().with_values({"report.peft_reference_clients": 2})
    result = claim("C6", arms(), cfg, distill=peft_metrics(500.0, 5.0),
                   distill_full=peft_metrics(800.0, 10.0, peft="full", clients=2))
    assert result.verdict == NOT_MEASURABLE
    assert "2 client(s)" in result.reason and "peft_reference_clients = 2" in result.reason
    assert claim("C6", arms(), distill=peft_metrics(500.0, 5.0)).verdict == NOT_MEASURABLE


def test_c6_is_inconclusive_when_peft_is_cheaper_on_some_clients_only() -> None:
    # LoRA's memory is 50%, 100% and 150% of full fine-tuning's on three clients (time always lower)
    lora = [{"peft": "lora", "model": "minilm-l6", "trainable_fraction": 0.01, "peak_memory_mb": m, "seconds": 5.0}
            for m in (400.0, 800.0, 1200.0)]
    full = [{"peft": "full", "model": "minilm-l6", "trainable_fraction": 1.0, "peak_memory_mb": 800.0,
             "seconds": 10.0 + k} for k in range(3)]
    result = claim("C6", arms(), distill=lora, distill_full=full)
    assert result.verdict == INCONCLUSIVE, result.reason


# ---------------------------------------------------------------- C7 text task above majority


@pytest.mark.parametrize(("majority", "verdict"), [(0.6, HOLDS), (0.9, FAILS)])
def test_c7_text_accuracy_above_majority(majority: float, verdict: str) -> None:
    assert claim("C7", arms(), data_kind="text", majority_rate=majority).verdict == verdict


def test_c7_is_inconclusive_when_replicates_straddle_the_majority_rate() -> None:
    runs = arms()
    runs["llm_guided"] = spread("llm_guided", [{"accuracy": [0.5] * 4 + [a]} for a in (0.6, 0.8, 0.95)])
    assert claim("C7", runs, data_kind="text", majority_rate=0.75).verdict == INCONCLUSIVE


# ---------------------------------------------------------------- every claim


@pytest.mark.parametrize(("accuracy", "flagged"), [(0.5, True), (0.85, False)])
def test_guidance_claims_flag_an_uninformative_teacher(accuracy: float, flagged: bool) -> None:
    distill = [{"eval_accuracy": accuracy + 0.01 * k, "majority_rate": 0.5} for k in range(4)]
    results = evaluate_claims(Evidence(runs=arms(), config=config(), distill=distill))
    flags = {r.id: UNINFORMATIVE in r.flags for r in results}
    assert flags["C1"] == flags["C2"] == flags["C3"] == flagged
    assert not flags["C4"] and not flags["C7"]


def test_claims_come_in_order_with_a_p_for_each_decided_one() -> None:
    runs = arms(loss_stopping={"accuracy": FLAT})
    results = evaluate_claims(Evidence(runs=runs, config=config(), data_kind="text", majority_rate=0.6))
    assert [r.id for r in results] == ["C1", "C2", "C3", "C4", "C5", "C6", "C7"]
    for result in results:
        assert math.isnan(result.p_value) == (result.verdict == NOT_MEASURABLE), result
        assert 0 <= result.p_value <= 1 or math.isnan(result.p_value)


def test_one_replicate_decides_nothing_and_unknown_arms_are_rejected() -> None:
    results = evaluate_claims(Evidence(runs={arm: [record(arm, 0)] for arm in ARMS}, config=config()))
    assert [r.id for r in results] == ["C1", "C2", "C3", "C4", "C5", "C6", "C7"]
    assert all(r.verdict == NOT_MEASURABLE for r in results)
    with pytest.raises(ValueError, match="unknown arm"):
        evaluate_claims(Evidence(runs={"oracle": []}, config=config()))
