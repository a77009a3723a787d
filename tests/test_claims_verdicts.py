"""Every claim can come out either way: one synthetic case where it holds and one where it does not.

Verdicts come from 95% intervals over replicates (holds / does not hold / inconclusive), never from
means alone; guidance claims are flagged when the teacher is no better than the majority rate.
"""

from __future__ import annotations

from typing import Any

import pytest

from llmqfl.config import validate_config
from llmqfl.evaluation.claims import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    NOT_MEASURABLE,
    UNINFORMATIVE,
    Evidence,
    evaluate_claims,
)
from llmqfl.evaluation.stats import summarise
from llmqfl.evaluation.verdicts import Criterion, decide

ARMS = ("baseline", "llm_guided", "budget_matched")
SEEDS = (0, 1, 2)
CURVE = [0.5, 0.6, 0.7, 0.75, 0.8]


def record(arm: str, seed: int, *, idle: float = 10.0, accuracy: list[float] | None = None,
           rounds_run: int | None = None, slope: float | None = -1.0, uplink: float = 1.0) -> dict[str, Any]:
    """An eval record; ``seed`` jitters the numbers a little so that intervals have width."""
    jitter = 0.001 * seed
    accuracy = [a + jitter for a in (accuracy or CURVE)]
    rounds_run = rounds_run or len(accuracy)
    return {
        "arm": arm, "seed": seed, "rounds_run": rounds_run, "stop_reason": "llm_threshold" if rounds_run < 5 else "",
        "per_round": {"test_accuracy": accuracy[:rounds_run],
                      "idle_circuits": [idle * (1 + jitter * (1 + r)) / rounds_run for r in range(rounds_run)]},
        "final": {"test_accuracy": accuracy[rounds_run - 1]},
        "best": {"test_accuracy": max(accuracy[:rounds_run])},
        "totals": {"idle_circuits": idle * (1 + jitter), "idle_seconds": 2 * idle},
        "selection": {"uplink_fraction": uplink + jitter},
        "convergence": None if slope is None else {"slope": slope + jitter},
    }


def config(weight: float = 0.5, **federation: Any) -> dict[str, Any]:
    return validate_config({
        "experiment": "unit",
        "federation": {"n_clients": 4, "rounds": 5, **federation},
        "qfl": {"termination": {"llm_threshold": 0.4}, "distillation": {"weight": weight}},
        "seeds": list(SEEDS),
    })


def claim(claim_id: str, runs: dict[str, list[dict]], cfg: dict | None = None, **evidence: Any):
    results = evaluate_claims(Evidence(runs=runs, config=cfg or config(), **evidence))
    return next(r for r in results if r.id == claim_id)


def arms(**per_arm: dict[str, Any]) -> dict[str, list[dict]]:
    return {arm: [record(arm, s, **per_arm.get(arm, {})) for s in SEEDS] for arm in ARMS}


def test_an_interval_decides_holds_fails_or_inconclusive() -> None:
    def position(values: tuple[float, ...]) -> str:
        return decide([Criterion("x", summarise(values), 0.7, "below")])

    assert position((0.5, 0.51, 0.52)) == HOLDS
    assert position((0.9, 0.91, 0.92)) == FAILS
    assert position((0.2, 0.69, 1.1)) == INCONCLUSIVE  # mean 0.66 < 0.7, but the interval straddles


@pytest.mark.parametrize(("ratio", "verdict"), [(0.5, HOLDS), (0.95, FAILS)])
def test_c1_idle_work_per_round(ratio: float, verdict: str) -> None:
    result = claim("C1", arms(llm_guided={"idle": 10.0 * ratio}))
    assert result.verdict == verdict
    assert result.numbers["idle_ratio"] == pytest.approx(ratio, rel=0.01)


def test_c1_an_arm_that_stops_early_does_not_save_idle_work() -> None:
    # L runs 2 of 5 rounds with 60% of B0's total idle work: 1.5x B0's idle work per round
    result = claim("C1", arms(llm_guided={"idle": 6.0, "rounds_run": 2, "accuracy": [0.8] * 5}))
    assert result.verdict == FAILS and result.numbers["idle_ratio"] == pytest.approx(1.5, rel=0.01)


@pytest.mark.parametrize(("rounds_run", "accuracy", "verdict"), [
    (3, [0.7, 0.8, 0.81, 0.8, 0.8], HOLDS),
    (1, [0.41, 0.5, 0.6, 0.7, 0.8], FAILS),  # stops after round 1 far below B0: no rounds "saved"
])
def test_c2_rounds_saved_only_without_accuracy_loss(rounds_run: int, accuracy: list[float], verdict: str) -> None:
    result = claim("C2", arms(llm_guided={"rounds_run": rounds_run, "accuracy": accuracy}))
    assert result.verdict == verdict


def test_c2_is_not_measurable_without_termination() -> None:
    cfg = config()
    cfg["qfl"]["termination"]["llm_threshold"] = None
    assert claim("C2", arms(), cfg).verdict == NOT_MEASURABLE


@pytest.mark.parametrize(("b1", "verdict"), [([0.5, 0.6, 0.7, 0.77, 0.8], HOLDS), ([0.5, 0.77, 0.8, 0.8, 0.8], FAILS)])
def test_c3_l_must_beat_b0_and_b1(b1: list[float], verdict: str) -> None:
    # target 0.95 x 0.8 = 0.76: B0 reaches it in round 5, L in round 2, B1 in round 4 or 2
    runs = arms(llm_guided={"accuracy": [0.5, 0.77, 0.8, 0.8, 0.8]}, budget_matched={"accuracy": b1})
    assert claim("C3", runs).verdict == verdict


def test_c3_needs_a_distillation_weight_for_l_to_differ_from_b1() -> None:
    result = claim("C3", arms(), config(weight=0.0))
    assert result.verdict == NOT_MEASURABLE and "identically by construction" in result.reason


@pytest.mark.parametrize(("uplink", "verdict"), [(0.4, HOLDS), (0.7, FAILS)])
def test_c4_cut_against_the_cut_expected_from_the_rounds_with_selection(uplink: float, verdict: str) -> None:
    # closest_to_server, N=4, k=1, 5 rounds: round 1 uploads from all, so the expected cut is 4 x 0.75 / 5 = 60%
    runs = arms(baseline={"uplink": uplink}, llm_guided={"uplink": uplink})
    result = claim("C4", runs, config(selection={"kind": "closest_to_server", "fraction": 0.25}))
    assert result.verdict == verdict and result.numbers["expected_cut"] == pytest.approx(0.6)


@pytest.mark.parametrize(("slope", "verdict"), [(-1.0, HOLDS), (-0.2, FAILS)])
def test_c5_slope_band(slope: float, verdict: str) -> None:
    assert claim("C5", arms(llm_guided={"slope": slope})).verdict == verdict


def peft_metrics(memory: float, seconds: float, peft: str = "lora") -> list[dict[str, Any]]:
    return [{"peft": peft, "model": "minilm-l6", "trainable_params": 1, "total_params": 100,
             "trainable_fraction": 0.01 if peft == "lora" else 1.0, "peak_memory_mb": memory + k,
             "seconds": seconds + 0.1 * k} for k in range(4)]


@pytest.mark.parametrize(("memory", "seconds", "verdict"), [(500.0, 5.0, HOLDS), (900.0, 12.0, FAILS)])
def test_c6_peft_against_full_fine_tuning(memory: float, seconds: float, verdict: str) -> None:
    full = peft_metrics(800.0, 10.0, peft="full")
    result = claim("C6", arms(), distill=peft_metrics(memory, seconds), distill_full=full)
    assert result.verdict == verdict and "trainable" in result.reason


def test_c6_without_a_full_reference_is_not_decided_by_the_trainable_fraction() -> None:
    assert claim("C6", arms(), distill=peft_metrics(500.0, 5.0)).verdict == NOT_MEASURABLE


@pytest.mark.parametrize(("majority", "verdict"), [(0.6, HOLDS), (0.9, FAILS)])
def test_c7_text_accuracy_above_majority(majority: float, verdict: str) -> None:
    assert claim("C7", arms(), data_kind="text", majority_rate=majority).verdict == verdict


@pytest.mark.parametrize(("accuracy", "flagged"), [(0.5, True), (0.85, False)])
def test_guidance_claims_flag_an_uninformative_teacher(accuracy: float, flagged: bool) -> None:
    distill = [{"eval_accuracy": accuracy + 0.01 * k, "majority_rate": 0.5} for k in range(4)]
    results = evaluate_claims(Evidence(runs=arms(), config=config(), distill=distill))
    flags = {r.id: UNINFORMATIVE in r.flags for r in results}
    assert flags["C1"] == flags["C2"] == flags["C3"] == flagged
    assert not flags["C4"] and not flags["C7"]


def test_every_claim_is_present_once_and_unknown_arms_are_rejected() -> None:
    results = evaluate_claims(Evidence(runs={"baseline": [record("baseline", 0)]}, config=config()))
    assert [r.id for r in results] == ["C1", "C2", "C3", "C4", "C5", "C6", "C7"]
    assert all(r.verdict == NOT_MEASURABLE for r in results)  # one replicate, one arm
    with pytest.raises(ValueError, match="unknown arm"):
        evaluate_claims(Evidence(runs={"oracle": []}, config=config()))


def spread(arm: str, per_seed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per replicate, each with its own settings: the replicates disagree, so intervals are wide."""
    return [record(arm, s, **kwargs) for s, kwargs in zip(SEEDS, per_seed, strict=True)]


FLAT = [0.8] * 5


@pytest.mark.parametrize(("claim_id", "guided", "cfg", "extra"), [
    # C1: per-round excess L - 0.7 x B0 is -0.8, 0 and +0.8 on the three replicates
    ("C1", [{"idle": 3.0}, {"idle": 7.0}, {"idle": 11.0}], None, {}),
    # C2: L stops after 2 rounds on one replicate and runs all 5 on the others, without losing accuracy
    ("C2", [{"rounds_run": 2, "accuracy": FLAT}, {"accuracy": FLAT}, {"accuracy": FLAT}], None, {}),
    # C3: L reaches the target in round 2 on one replicate, in round 5 (as B0 and B1) on the others
    ("C3", [{"accuracy": [0.5, 0.77, 0.8, 0.8, 0.8]}, {}, {}], None, {}),
    # C4: L's cut is 10 pt above, 5 and 20 pt below the expected 60%
    ("C4", [{"uplink": 0.3}, {"uplink": 0.45}, {"uplink": 0.6}],
     {"selection": {"kind": "closest_to_server", "fraction": 0.25}}, {}),
    # C5: slopes -1.0, -0.4, -1.6 around the band [-1.3, -0.7]
    ("C5", [{"slope": -1.0}, {"slope": -0.4}, {"slope": -1.6}], None, {}),
    # C7: final accuracies 60%, 80% and 95% against a majority rate of 75%
    ("C7", [{"accuracy": [0.5] * 4 + [a]} for a in (0.6, 0.8, 0.95)], None,
     {"data_kind": "text", "majority_rate": 0.75}),
])
def test_a_claim_whose_interval_straddles_its_criterion_is_inconclusive(
    claim_id: str, guided: list[dict[str, Any]], cfg: dict | None, extra: dict[str, Any]
) -> None:
    runs = arms()
    runs["llm_guided"] = spread("llm_guided", guided)
    result = claim(claim_id, runs, config(**cfg) if cfg else None, **extra)
    assert result.verdict == INCONCLUSIVE, result.reason


def test_c6_is_inconclusive_when_peft_is_cheaper_on_some_clients_only() -> None:
    # LoRA's memory is 50%, 100% and 150% of full fine-tuning's on three clients (time always lower)
    lora = [{"peft": "lora", "model": "minilm-l6", "trainable_fraction": 0.01, "peak_memory_mb": m, "seconds": 5.0}
            for m in (400.0, 800.0, 1200.0)]
    full = [{"peft": "full", "model": "minilm-l6", "trainable_fraction": 1.0, "peak_memory_mb": 800.0,
             "seconds": 10.0 + k} for k in range(3)]
    result = claim("C6", arms(), distill=lora, distill_full=full)
    assert result.verdict == INCONCLUSIVE, result.reason
