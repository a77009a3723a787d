"""Builders of per-arm evaluation records and claim calls shared by the claims tests."""

from __future__ import annotations

from typing import Any

from llmqfl.config import load_settings
from llmqfl.contracts import ARMS
from llmqfl.evaluation.claims import (
    ClaimResult,
    Evidence,
    evaluate_claims,
)
from llmqfl.settings import Settings

SEEDS = (0, 1, 2)
CURVE = [0.5, 0.6, 0.7, 0.75, 0.8]
FLAT = [0.8] * 5


def falling(rounds: int, order: float = 1.0) -> list[float]:
    """Server loss 0.3 + 1/t^order: its best is its last round."""
    return [0.3 + 1.0 / t**order for t in range(1, rounds + 1)]


def record(arm: str, seed: int, *, idle: float = 10.0, accuracy: list[float] | None = None,
           rounds_run: int | None = None, loss: list[float] | None = None, circuits: float = 100.0,
           uplink: float = 1.0) -> dict[str, Any]:
    """An eval record as metrics.run_metrics writes it; ``seed`` jitters the numbers so that intervals have width."""
    jitter = 0.001 * seed
    accuracy = [a + jitter for a in (accuracy or CURVE)]
    rounds_run = rounds_run or len(accuracy)
    loss = (loss or falling(len(accuracy)))[:rounds_run]
    return {
        "arm": arm, "seed": seed, "rounds_run": rounds_run, "stop_reason": "llm_threshold" if rounds_run < 5 else "",
        "per_round": {"test_accuracy": accuracy[:rounds_run], "server_loss": loss,
                      "circuits": [circuits] * rounds_run,
                      "idle_circuits": [idle * (1 + jitter) / rounds_run] * rounds_run},
        "final": {"test_accuracy": accuracy[rounds_run - 1]},
        "best": {"test_accuracy": max(accuracy[:rounds_run])},
        "totals": {"idle_circuits": idle * (1 + jitter), "idle_seconds": 2 * idle, "circuits": circuits * rounds_run},
        "selection": {"uplink_fraction": uplink + jitter},
    }


def config(weight: float = 0.5, rounds: int = 5, **federation: Any) -> Settings:
    return load_settings({
        "experiment": "unit",
        "federation": {"n_clients": 4, "rounds": rounds, **federation},
        "qfl": {"termination": {"llm_threshold": 0.4}, "distillation": {"weight": weight}},
        "seeds": list(SEEDS),
    })


def claim(claim_id: str, runs: dict[str, list[dict]], cfg: Settings | None = None, **evidence: Any) -> ClaimResult:
    results = evaluate_claims(Evidence(runs=runs, config=cfg or config(), **evidence))
    return next(r for r in results if r.id == claim_id)


def arms(**per_arm: dict[str, Any]) -> dict[str, list[dict]]:
    """All five arms, three replicates each; ``per_arm`` overrides an arm's record settings."""
    return {arm: [record(arm, s, **per_arm.get(arm, {})) for s in SEEDS] for arm in ARMS}


def spread(arm: str, per_seed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per replicate, each with its own settings: the replicates disagree, so intervals are wide."""
    return [record(arm, s, **kwargs) for s, kwargs in zip(SEEDS, per_seed, strict=True)]
