"""The claims' verdict logic: holds / does not hold / not measurable here, each for its reason."""

from __future__ import annotations

from typing import Any

import pytest

from llmqfl.config import validate_config
from llmqfl.evaluation.claims import FAILS, HOLDS, NOT_MEASURABLE, Evidence, evaluate_claims

ARMS = ("baseline", "llm_guided", "budget_matched")


def record(arm: str, seed: int, *, idle: float = 10.0, accuracy: list[float] | None = None,
           rounds_run: int | None = None, slope: float | None = -1.0, uplink: float = 1.0) -> dict[str, Any]:
    accuracy = accuracy or [0.5, 0.6, 0.7, 0.75, 0.8]
    rounds_run = rounds_run or len(accuracy)
    return {
        "arm": arm, "seed": seed, "rounds_run": rounds_run, "stop_reason": "llm_threshold" if rounds_run < 5 else "",
        "per_round": {"test_accuracy": accuracy[:rounds_run]},
        "final": {"test_accuracy": accuracy[rounds_run - 1]},
        "best": {"test_accuracy": max(accuracy[:rounds_run])},
        "totals": {"idle_circuits": idle, "idle_seconds": 2 * idle},
        "selection": {"uplink_fraction": uplink},
        "convergence": None if slope is None else {"slope": slope},
    }


def config(**federation: Any) -> dict[str, Any]:
    return validate_config({
        "experiment": "unit",
        "federation": {"n_clients": 10, "rounds": 5, **federation},
        "qfl": {"termination": {"llm_threshold": 0.4}},
        "seeds": [0, 1, 2],
    })


def by_id(evidence: Evidence) -> dict[str, Any]:
    return {r.id: r for r in evaluate_claims(evidence)}


def test_idle_claim_holds_fails_and_needs_two_seeds() -> None:
    # Prepare: L idles 60% (holds) or 90% (fails) of B0, same accuracy
    def runs(ratio: float, seeds: tuple[int, ...] = (0, 1, 2)) -> dict[str, list[dict]]:
        return {
            "baseline": [record("baseline", s, idle=10.0 + s) for s in seeds],
            "llm_guided": [record("llm_guided", s, idle=ratio * (10.0 + s)) for s in seeds],
            "budget_matched": [record("budget_matched", s, idle=12.0) for s in seeds],
        }

    # Execute
    holds = by_id(Evidence(runs=runs(0.6), config=config()))["C1"]
    fails = by_id(Evidence(runs=runs(0.9), config=config()))["C1"]
    single = by_id(Evidence(runs=runs(0.6, seeds=(0,)), config=config()))["C1"]
    # Assert
    assert holds.verdict == HOLDS and holds.numbers["idle_ratio"] == pytest.approx(0.6)
    assert holds.numbers["idle_seconds_ratio"] == pytest.approx(0.6) and "wall-clock" in holds.reason
    assert fails.verdict == FAILS and "0.9" in fails.reason
    assert single.verdict == NOT_MEASURABLE and "n=1" in single.reason
    assert single.values["llm_guided"].n == 1 and not single.values["llm_guided"].has_interval


def test_idle_claim_fails_when_accuracy_drops_more_than_one_point() -> None:
    worse = [0.5, 0.6, 0.7, 0.75, 0.78]
    evidence = Evidence(config=config(), runs={
        "baseline": [record("baseline", s) for s in (0, 1)],
        "llm_guided": [record("llm_guided", s, idle=5.0, accuracy=worse) for s in (0, 1)],
    })
    result = by_id(evidence)["C1"]
    assert result.verdict == FAILS
    assert result.numbers["accuracy_gap"] == pytest.approx(-0.02)


def test_idle_claim_when_baseline_clients_do_equal_work() -> None:
    # Prepare: B0 has no idle work; L either has none either, or adds some
    def runs(guided_idle: float) -> dict[str, list[dict]]:
        return {"baseline": [record("baseline", s, idle=0.0) for s in (0, 1)],
                "llm_guided": [record("llm_guided", s, idle=guided_idle) for s in (0, 1)]}

    # Execute
    none = by_id(Evidence(runs=runs(0.0), config=config()))["C1"]
    more = by_id(Evidence(runs=runs(40.0), config=config()))["C1"]
    # Assert
    assert none.verdict == NOT_MEASURABLE and "neither" in none.reason
    assert more.verdict == FAILS and "L adds 40" in more.reason


def test_rounds_claim_needs_termination_switched_on() -> None:
    runs = {"baseline": [record("baseline", s) for s in (0, 1)],
            "llm_guided": [record("llm_guided", s, rounds_run=3, accuracy=[0.7, 0.8, 0.81, 0.8, 0.8]) for s in (0, 1)]}
    on = by_id(Evidence(runs=runs, config=config()))["C2"]
    off_config = config()
    off_config["qfl"]["termination"]["llm_threshold"] = None
    off = by_id(Evidence(runs=runs, config=off_config))["C2"]
    assert on.verdict == HOLDS and on.numbers["rounds_saved"] == pytest.approx(2.0)
    assert off.verdict == NOT_MEASURABLE and "termination is off" in off.reason


def test_convergence_claim_must_beat_both_b0_and_b1() -> None:
    # Prepare: target = 0.95 x 0.8 = 0.76; B0 reaches it in round 5, L in round 2, B1 in round 2 or 4
    fast = [0.5, 0.77, 0.8, 0.8, 0.8]
    def runs(b1: list[float]) -> dict[str, list[dict]]:
        return {"baseline": [record("baseline", s) for s in (0, 1, 2)],
                "llm_guided": [record("llm_guided", s, accuracy=fast) for s in (0, 1, 2)],
                "budget_matched": [record("budget_matched", s, accuracy=b1) for s in (0, 1, 2)]}

    # Execute
    beats_both = by_id(Evidence(runs=runs([0.5, 0.6, 0.7, 0.77, 0.8]), config=config()))["C3"]
    ties_b1 = by_id(Evidence(runs=runs(fast), config=config()))["C3"]
    no_b1 = by_id(Evidence(runs={k: v for k, v in runs(fast).items() if k != "budget_matched"}, config=config()))["C3"]
    # Assert
    assert beats_both.verdict == HOLDS
    assert beats_both.numbers["target_accuracy"] == pytest.approx(0.76)
    assert beats_both.values["baseline"].mean == 5 and beats_both.values["llm_guided"].mean == 2
    assert beats_both.values["budget_matched"].mean == 4
    assert ties_b1.verdict == FAILS
    assert no_b1.verdict == NOT_MEASURABLE and "budget_matched" in no_b1.reason


def test_convergence_claim_counts_a_target_never_reached_as_censored() -> None:
    never = [0.1, 0.2, 0.3, 0.4, 0.5]
    result = by_id(Evidence(config=config(), runs={
        "baseline": [record("baseline", s) for s in (0, 1)],
        "llm_guided": [record("llm_guided", s, accuracy=never) for s in (0, 1)],
        "budget_matched": [record("budget_matched", s) for s in (0, 1)],
    }))["C3"]
    assert result.verdict == FAILS
    assert result.values["llm_guided"].mean == 6
    assert "not reached" in result.reason


def test_selection_claim_is_not_measurable_when_every_client_is_aggregated() -> None:
    runs = {a: [record(a, s, uplink=0.1) for s in (0, 1)] for a in ARMS}
    all_clients = by_id(Evidence(runs=runs, config=config(selection={"kind": "all"})))["C4"]
    closest = by_id(Evidence(runs=runs, config=config(selection={"kind": "closest_to_server", "fraction": 0.1})))["C4"]
    leaky = {a: [record(a, s, uplink=0.5) for s in (0, 1)] for a in ARMS}
    half = by_id(Evidence(runs=leaky, config=config(selection={"kind": "closest_to_server", "fraction": 0.1})))["C4"]
    assert all_clients.verdict == NOT_MEASURABLE and "selection kind is all" in all_clients.reason
    assert closest.verdict == HOLDS and closest.numbers["expected_cut"] == pytest.approx(0.9)
    assert half.verdict == FAILS


@pytest.mark.parametrize(("slopes", "verdict"), [((-1.1, -0.9, -1.0), HOLDS), ((-0.3, -0.2, -0.25), FAILS)])
def test_rate_claim_checks_the_slope_band(slopes: tuple[float, ...], verdict: str) -> None:
    runs = {"baseline": [record("baseline", s, slope=-0.5) for s in (0, 1, 2)],
            "llm_guided": [record("llm_guided", s, slope=v) for s, v in enumerate(slopes)]}
    result = by_id(Evidence(runs=runs, config=config()))["C5"]
    assert result.verdict == verdict
    assert "B0 slope" in result.reason and "not O(1/T)" in result.reason


def test_peft_claim_reads_the_distill_metrics() -> None:
    runs = {"llm_guided": [record("llm_guided", 0)]}
    lora = [{"trainable_fraction": 0.0034, "model": "smollm2-135m", "peft": "lora", "trainable_params": 461952,
             "total_params": 134977344, "peak_memory_mb": 900.0}]
    full = [{**lora[0], "peft": "full", "trainable_fraction": 1.0}]
    assert by_id(Evidence(runs=runs, config=config(), distill=lora))["C6"].verdict == HOLDS
    assert by_id(Evidence(runs=runs, config=config(), distill=full))["C6"].verdict == NOT_MEASURABLE
    assert by_id(Evidence(runs=runs, config=config(), distill=()))["C6"].verdict == NOT_MEASURABLE


def test_text_claim_applies_to_text_data_only() -> None:
    runs = {a: [record(a, s) for s in (0, 1)] for a in ARMS}
    text = by_id(Evidence(runs=runs, config=config(), data_kind="text", majority_rate=0.6))["C7"]
    too_hard = by_id(Evidence(runs=runs, config=config(), data_kind="text", majority_rate=0.85))["C7"]
    dna = by_id(Evidence(runs=runs, config=config(), data_kind="dna", majority_rate=0.5))["C7"]
    assert text.verdict == HOLDS and text.numbers["accuracy_over_majority"] == pytest.approx(0.2)
    assert too_hard.verdict == FAILS
    assert dna.verdict == NOT_MEASURABLE and "dna" in dna.reason


def test_every_claim_is_present_once_and_unknown_arms_are_rejected() -> None:
    results = evaluate_claims(Evidence(runs={"baseline": [record("baseline", 0)]}, config=config()))
    assert [r.id for r in results] == ["C1", "C2", "C3", "C4", "C5", "C6", "C7"]
    with pytest.raises(ValueError, match="unknown arm"):
        evaluate_claims(Evidence(runs={"oracle": []}, config=config()))
