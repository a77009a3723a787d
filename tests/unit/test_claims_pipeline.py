"""The claims on eval records that metrics.run_metrics built from contract-shaped histories of all five arms.

Checks that the claims read what the evaluate stage writes (per-round circuits, server loss, idle
work) and decide C1-C3 against the controls E and S rather than falling back to B0.
"""

from __future__ import annotations

import math

import pytest
from synthetic_runs import ALL_ARMS, accounting_for, synthetic_history

from llmqfl.config import load_settings
from llmqfl.evaluation.claims import HOLDS, NOT_MEASURABLE, Evidence, evaluate_claims
from llmqfl.evaluation.metrics import run_metrics

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def results() -> dict[str, object]:
    runs = {}
    for arm in ALL_ARMS:
        runs[arm] = []
        for seed in SEEDS:
            history = synthetic_history(arm, seed)
            runs[arm].append(run_metrics(history, accounting_for(history, arm, seed), experiment="synth",
                                         rounds_configured=6, selection_kind="all"))
    config = load_settings({"experiment": "synth", "seeds": list(SEEDS), "arms": list(ALL_ARMS),
                              "federation": {"n_clients": 4, "rounds": 6},
                              "qfl": {"termination": {"llm_threshold": 0.4}, "distillation": {"weight": 0.5}}})
    return {r.id: r for r in evaluate_claims(Evidence(runs=runs, config=config))}


def test_the_guidance_claims_are_decided_from_eval_records(results: dict) -> None:
    for claim_id in ("C1", "C2", "C3"):
        assert results[claim_id].verdict != NOT_MEASURABLE, results[claim_id].reason
        assert not math.isnan(results[claim_id].p_value)
    # L stops after 4 of 6 rounds, S after 5, and L's accuracy curve lies above S's
    assert results["C2"].verdict == HOLDS and results["C2"].numbers["rounds_l_minus_s"] == -1
    assert "x E" in results["C1"].reason and "L-E" in results["C3"].reason


def test_rate_and_selection_say_why_they_are_not_measured(results: dict) -> None:
    assert "share 4 round(s)" in results["C5"].reason  # L stops after 4 rounds: two doublings only
    assert "selection kind is all" in results["C4"].reason
    assert results["C5"].values["baseline"] is not None  # B0's 6 rounds do give a rate
