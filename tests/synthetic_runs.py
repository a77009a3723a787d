"""Synthetic histories and accounting that keep the stage file contract, for evaluation and claims tests."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmqfl.evaluation.history import HISTORY_COLUMNS, check_history

ARMS = ("baseline", "llm_guided", "budget_matched")
ALL_ARMS = (*ARMS, "equal_cost", "loss_stopping")
N_PARAMS = 16


def maxiter_schedule(n_clients: int, rounds: int) -> np.ndarray:
    """(round x client) maxiter the guided arm chooses: 10 in round 1, then x1.5 per round (cap 100)."""
    schedule = np.zeros((rounds, n_clients), dtype=int)
    for client in range(n_clients):
        m = 10
        for r in range(rounds):
            schedule[r, client] = m
            m = min(100, math.floor(m * (1.5 + 0.1 * client)))
    return schedule


def synthetic_history(arm: str, seed: int, *, n_clients: int = 4, rounds: int = 6, stop_at: int | None = 4,
                      selected_k: int | None = None) -> pd.DataFrame:
    """A contract-shaped history: server loss F_t = F* + c/t, accuracy a - b/t (arm- and seed-dependent)."""
    guided, stops_on_loss = arm == "llm_guided", arm == "loss_stopping"
    run_rounds = stop_at if guided and stop_at else rounds - 1 if stops_on_loss else rounds
    schedule = {"baseline": np.full((rounds, n_clients), 10), "loss_stopping": np.full((rounds, n_clients), 10),
                "equal_cost": np.full((rounds, n_clients), 15)}.get(arm, maxiter_schedule(n_clients, rounds))
    f_star = 0.35 + 0.01 * seed
    c = {"baseline": 0.8, "llm_guided": 0.5, "budget_matched": 0.6, "equal_cost": 0.55, "loss_stopping": 0.8}[arm]
    acc_inf, b = {"baseline": (0.80, 0.30), "llm_guided": (0.84, 0.10), "budget_matched": (0.82, 0.2),
                  "equal_cost": (0.83, 0.15), "loss_stopping": (0.80, 0.30)}[arm]
    rows: list[dict[str, Any]] = []
    for r in range(1, run_rounds + 1):
        server_loss = f_star + c / r
        chosen = set(range(n_clients)) if selected_k is None else set(range((r - 1) % n_clients, n_clients))
        if selected_k is not None:
            chosen = set(sorted(chosen)[:selected_k] or [0])
        maxiter = schedule[r - 1]
        compute = {k: 0.002 * maxiter[k] * (1 + 0.25 * k) + 0.001 * seed for k in range(n_clients)}
        slowest = max(compute[k] for k in chosen)
        client_idle = {k: (slowest - compute[k]) if k in chosen else 0.0 for k in range(n_clients)}
        for k in range(n_clients):
            sel = k in chosen
            n_items = 20 + k
            nfev = int(maxiter[k]) if sel else 0
            loss = server_loss + 0.05 * (k + 1)
            rows.append({
                "round": r, "client": k, "selected": sel, "n_items": n_items, "maxiter": int(maxiter[k]),
                "nfev": nfev, "circuits": nfev * n_items, "shots": 0, "jobs": nfev, "loss": loss,
                "llm_loss": 0.6 if guided else math.nan, "distance": abs(loss - server_loss),
                "train_accuracy": acc_inf - b / r, "test_accuracy": acc_inf - b / r - 0.01 * k,
                "test_f1": acc_inf - b / r - 0.02, "test_loss": server_loss + 0.02,
                "bytes_up": N_PARAMS * 8 if sel else 0, "bytes_down": N_PARAMS * 8,
                "compute_seconds": compute[k] if sel else 0.0, "qpu_seconds": 0.5 * compute[k] if sel else 0.0,
                "idle_seconds": client_idle[k], "terminated": False, "stop_reason": "",
            })
        stop = (guided or stops_on_loss) and r == run_rounds and run_rounds < rounds
        reason = "llm_threshold" if guided else "loss_delta"
        rows.append({
            "round": r, "client": -1, "selected": False, "n_items": 40, "maxiter": 0, "nfev": 0,
            "circuits": 40 + 30, "shots": 0, "jobs": 2, "loss": server_loss,
            "llm_loss": 0.6 if guided else math.nan, "distance": math.nan,
            "train_accuracy": math.nan, "test_accuracy": acc_inf - b / r + 0.001 * seed,
            "test_f1": acc_inf - b / r - 0.01, "test_loss": server_loss + 0.03, "bytes_up": 0, "bytes_down": 0,
            "compute_seconds": 0.004, "qpu_seconds": 0.002, "idle_seconds": sum(client_idle.values()),
            "terminated": stop, "stop_reason": reason if stop else "",
        })
    frame = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS) + [c for c in rows[0] if c not in HISTORY_COLUMNS])
    return check_history(frame)


def accounting_for(history: pd.DataFrame, arm: str, seed: int) -> dict[str, Any]:
    """accounting.json totals consistent with ``history`` (what the QFL stage must write)."""
    clients, server = history[history["client"] >= 0], history[history["client"] == -1]

    def block(rows: pd.DataFrame, crow: pd.DataFrame, srow: pd.DataFrame) -> dict[str, Any]:
        out = {k: int(rows[k].sum()) for k in ("nfev", "circuits", "shots", "jobs", "bytes_up", "bytes_down")}
        out.update(client_seconds=float(crow["compute_seconds"].sum()),
                   server_seconds=float(srow["compute_seconds"].sum()),
                   idle_seconds=float(srow["idle_seconds"].sum()), qpu_seconds=float(rows["qpu_seconds"].sum()))
        out["wall_seconds"] = out["client_seconds"] + out["server_seconds"] + 0.5
        return out

    per_round = [
        {"round": int(r), **block(history[history["round"] == r], clients[clients["round"] == r],
                                  server[server["round"] == r])}
        for r in sorted(history["round"].unique())
    ]
    reasons = [s for s in server["stop_reason"] if s]
    return {"arm": arm, "seed": seed, "rounds_run": int(server["round"].max()),
            "totals": block(history, clients, server), "per_round": per_round,
            "stop_reason": reasons[-1] if reasons else ""}


def write_results(root: Path, *, experiment: str = "synth", seeds: tuple[int, ...] = (0, 1, 2), n_clients: int = 4,
                  rounds: int = 6, text: bool = False, selected_k: int | None = None,
                  arms: tuple[str, ...] = ARMS) -> Path:
    """Write qfl/, distill/ and data/ of ``results/{experiment}`` under ``root``; return that folder."""
    results = root / "results" / experiment
    for arm in arms:
        for seed in seeds:
            run = results / "qfl" / arm / f"seed_{seed}"
            run.mkdir(parents=True)
            history = synthetic_history(arm, seed, n_clients=n_clients, rounds=rounds, selected_k=selected_k)
            history.to_parquet(run / "history.parquet", index=False)
            (run / "accounting.json").write_text(json.dumps(accounting_for(history, arm, seed)))
    for k in range(n_clients):
        (results / "distill" / f"client_{k}").mkdir(parents=True)
        metrics = {"train_loss": 0.5, "eval_loss": 0.6, "eval_accuracy": 0.7, "eval_f1": 0.68 + 0.01 * k,
                   "majority_rate": 0.5, "n_train": 40, "n_eval": 10, "trainable_params": 460_800 + 1152,
                   "total_params": 134_977_344, "trainable_fraction": (460_800 + 1152) / 134_977_344,
                   "peak_memory_mb": 900.0 + k, "seconds": 30.0, "model": "smollm2-135m", "peft": "lora"}
        (results / "distill" / f"client_{k}" / "metrics.json").write_text(json.dumps(metrics))
        # the full fine-tuning reference of the same model and data (C6): more memory, more time
        full = {**metrics, "peft": "full", "trainable_params": 134_977_344, "trainable_fraction": 1.0,
                "peak_memory_mb": 1500.0 + 2 * k, "seconds": 45.0 + k}
        (results / "distill_full" / f"client_{k}").mkdir(parents=True)
        (results / "distill_full" / f"client_{k}" / "metrics.json").write_text(json.dumps(full))
    data = results / "data"
    data.mkdir(parents=True)
    labels = [0] * 60 + [1] * 25 + [2] * 15 if text else [0] * 50 + [1] * 50
    pd.DataFrame({"row": range(len(labels)), "item": ["x"] * len(labels), "label": labels}).to_parquet(
        data / "test.parquet", index=False)
    meta = {"source": "rotten_tomatoes" if text else "coding_vs_intergenic", "kind": "text" if text else "dna",
            "n_classes": 3 if text else 2}
    (data / "meta.json").write_text(json.dumps(meta))
    return results


# ---------------------------------------------------------------- the generator keeps the contract
