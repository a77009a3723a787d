"""A run's (epsilon, delta) reaches the evaluate record and the claims table; a run without DP says so."""

from __future__ import annotations

from synthetic_runs import accounting_for, synthetic_history

from llmqfl.config import load_settings
from llmqfl.evaluation.claims import Evidence, evaluate_claims
from llmqfl.evaluation.metrics import run_metrics
from llmqfl.evaluation.render import claims_markdown, metrics_payload


def _claims(private: bool) -> tuple[str, dict]:
    runs = {"baseline": []}
    for seed in (0, 1):
        history = synthetic_history("baseline", seed)
        accounting = accounting_for(history, "baseline", seed)
        if private:
            accounting["privacy"] = {"quantum": {"epsilon": 3.5 + seed, "delta": 1e-5, "rounds": []}}
        runs["baseline"].append(run_metrics(history, accounting, experiment="synth", rounds_configured=6,
                                            selection_kind="all"))
    config = load_settings({"experiment": "synth", "seeds": [0, 1], "arms": ["baseline"],
                              "federation": {"n_clients": 4, "rounds": 6}})
    distill = [{"client": 0, "dp_epsilon": 7.25, "dp_delta": 1e-5}] if private else []
    evidence = Evidence(runs=runs, config=config, distill=distill)
    results = evaluate_claims(evidence)
    return claims_markdown(results, evidence), metrics_payload(results, evidence)


def test_epsilon_and_delta_are_in_the_claims_table() -> None:
    text, metrics = _claims(private=True)
    assert "| quantum_dp_epsilon | 4" in text  # the mean over the two runs (3.5, 4.5)
    assert "client-level DP, epsilon up to 4.5 at delta 1e-05" in text
    assert "DP-SGD, epsilon up to 7.25 at delta 1e-05" in text
    assert metrics["arms"]["baseline"]["quantum_dp_epsilon"] == 4.0


def test_a_run_without_dp_says_it_is_not_private() -> None:
    text, _ = _claims(private=False)
    assert "- privacy: none (no differential privacy" in text
