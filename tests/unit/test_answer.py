"""answer.json: the primary endpoint (L - E at equal quantum cost) decided either way, secondary claims
after Holm, counts with intervals in their support, and accuracy at cost with stopped runs carried."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmqfl.config import load_settings
from llmqfl.evaluation.answer import (
    accuracy_at_cost,
    build_answer,
    cost_per_arm,
    primary_endpoint,
    secondary_claims,
)
from llmqfl.evaluation.evidence import ClaimResult, Evidence
from llmqfl.evaluation.stats import summarise
from llmqfl.evaluation.verdicts import FAILS, HOLDS, INCONCLUSIVE, Criterion


def _record(seed: int, accuracy: float, rounds: int = 3, circuits: float = 100.0) -> dict:
    curve = list(np.linspace(0.5, accuracy, rounds))
    return {
        "seed": seed, "rounds_run": rounds, "final": {"test_accuracy": accuracy},
        "totals": {"circuits": circuits * rounds},
        "per_round": {"circuits": [circuits] * rounds, "test_accuracy": curve},
    }


def _evidence(effect: float, n: int = 20, noise: float = 0.01) -> Evidence:
    rng = np.random.default_rng(0)
    base = 0.7 + rng.normal(0, 0.02, n)
    guided = base + effect + rng.normal(0, noise, n)
    runs = {"llm_guided": [_record(s, a) for s, a in enumerate(guided)],
            "equal_cost": [_record(s, a) for s, a in enumerate(base)]}
    return Evidence(runs=runs, config=load_settings({"experiment": "synthetic"}), scope="quantum_init")


@pytest.mark.parametrize(("effect", "word"), [(0.05, "L above E"), (-0.05, "L below E"), (0.0, "no difference")])
def test_primary_endpoint_decides_either_way(effect: float, word: str) -> None:
    primary = primary_endpoint(_evidence(effect))
    assert primary["n"] == 20 and primary["scope"] == "quantum_init"
    assert primary["ci"][0] < primary["effect"] < primary["ci"][1]
    assert primary["verdict"].startswith(word)
    assert primary["effect"] == pytest.approx(effect, abs=0.01)


def test_primary_mde_shrinks_with_replicates() -> None:
    few, many = primary_endpoint(_evidence(0.0, n=3)), primary_endpoint(_evidence(0.0, n=40))
    assert few["mde"] > 2 * many["mde"] > 0
    half_width = (many["ci"][1] - many["ci"][0]) / 2
    assert half_width < many["mde"]  # the MDE at 80% power exceeds the interval's half-width


def test_primary_endpoint_without_pairs_is_not_measurable() -> None:
    evidence = Evidence(runs={"llm_guided": [_record(0, 0.7)]}, config=load_settings({"experiment": "x"}))
    primary = primary_endpoint(evidence)
    assert primary["effect"] is None and primary["verdict"].startswith("not measurable")


def _claim(claim_id: str, values: list[float], threshold: float = 0.0) -> ClaimResult:
    criterion = Criterion("gap", summarise(values), threshold, "above")
    from llmqfl.evaluation.verdicts import claim_p_value, decide

    return ClaimResult(claim_id, "c", "m", {}, decide([criterion]), "r", p_value=claim_p_value([criterion]))


def test_criterion_p_agrees_with_the_interval() -> None:
    for values in ([0.01, 0.02, 0.03, 0.015], [0.01, -0.02, 0.03, 0.0], [-0.03, -0.02, -0.01, -0.02]):
        criterion = Criterion("gap", summarise(values), 0.0, "above")
        cleared = criterion.position() == "clears"
        assert (criterion.p_value() < 0.05) == cleared


def test_holm_can_overturn_a_marginal_claim() -> None:
    rng = np.random.default_rng(1)
    strong = _claim("C1", list(0.05 + rng.normal(0, 0.01, 10)))
    marginal = _claim("C2", [0.031, -0.01, 0.04, 0.0, 0.02, 0.035, -0.005, 0.03, 0.01, 0.025])
    failing = _claim("C3", list(-0.05 + rng.normal(0, 0.01, 10)))
    untested = ClaimResult("C7", "c", "m", {}, "not measurable here", "r")
    assert marginal.verdict == HOLDS and failing.verdict == FAILS
    rows = {row["id"]: row for row in secondary_claims([strong, marginal, failing, untested])}
    assert rows["C1"]["holds_after_holm"] and rows["C1"]["p_holm"] < 0.05
    assert rows["C2"]["p"] < 0.05 and rows["C2"]["p_holm"] >= rows["C2"]["p"]
    assert not rows["C3"]["holds_after_holm"] and rows["C7"]["p_holm"] is None
    assert INCONCLUSIVE not in (rows["C1"]["verdict"],)


def test_accuracy_at_cost_carries_a_stopped_run_forward() -> None:
    record = _record(0, 0.8, rounds=2, circuits=100.0)  # accuracy 0.5 after 100, 0.8 after 200, then stopped
    assert np.array_equal(accuracy_at_cost(record, np.array([50.0, 100.0, 150.0, 200.0, 1000.0]))[1:],
                          [0.5, 0.5, 0.8, 0.8])
    assert math.isnan(accuracy_at_cost(record, np.array([50.0]))[0])


def test_counts_get_intervals_inside_their_support() -> None:
    runs = {"llm_guided": [_record(0, 0.7, rounds=7), _record(1, 0.7, rounds=7), _record(2, 0.7, rounds=2)]}
    cost = cost_per_arm(Evidence(runs=runs, config=load_settings({"experiment": "x"})))
    low, high = cost["llm_guided"]["rounds"]["ci"]
    assert 2 <= low <= high <= 7


def test_build_answer_has_the_fields_a_reader_needs() -> None:
    answer = build_answer(_evidence(0.03), [], feature_ceiling=0.78, teacher={"server_test_accuracy": 0.8})
    assert set(answer) >= {"primary", "student", "feature_ceiling", "teacher", "secondary", "cost"}
    assert set(answer["primary"]) >= {"comparison", "effect", "ci", "n", "scope", "mde"}
    assert answer["best_student_gap_to_ceiling"] == pytest.approx(0.78 - max(answer["student"].values()))


def test_the_primary_paragraph_states_interval_half_width_n_scope_and_mde() -> None:
    from llmqfl.evaluation.render import answer_markdown, primary_line

    answer = build_answer(_evidence(0.03), [], feature_ceiling=0.78, teacher={})
    line = primary_line(answer["primary"])
    half = (answer["primary"]["ci"][1] - answer["primary"]["ci"][0]) / 2
    assert f"half-width {half:.1%}" in line and "n = 20 (quantum_init replicates)" in line
    assert f"minimal detectable effect at 80% power {answer['primary']['mde']:.1%}" in line
    assert line in answer_markdown(answer)
