"""Per-round, per-participant accounting: the ``history.parquet`` columns and ``accounting.json``.

One history row per (round, participant) (:class:`llmqfl.contracts.HistoryRow`); the server is
participant ``contracts.SERVER``. Wall time is split the way
a synchronous round spends it: each selected client's local compute, the server's compute
(aggregation + evaluation), and idle time, max(selected client compute) - own compute, which is
what a fast client waits for the straggler. The server row's idle is the sum over clients. Bytes
are n_params x 8 (float64) per model: one down (global weights) and one up (local weights) per
selected client per round; the server row carries no bytes, so a column sum never double counts.
``wall_seconds`` of a round is the synchronous wall time max(client compute) + server compute.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from llmqfl.contracts import COUNT_TOTALS, HISTORY_COLUMNS, SERVER, TIMING_COLUMNS, TOTAL_KEYS, history_frame

__all__ = [
    "HISTORY_COLUMNS",
    "SERVER",
    "TIMING_COLUMNS",
    "accounting_summary",
    "add_idle",
    "history_frame",
    "model_bytes",
    "round_metrics",
    "round_totals",
]

BYTES_PER_PARAM = 8  # weights travel as float64



def model_bytes(n_params: int) -> int:
    """Bytes of one model on the wire."""
    return int(n_params) * BYTES_PER_PARAM


def add_idle(client_rows: list[dict[str, Any]], server_row: dict[str, Any]) -> None:
    """Fill ``idle_seconds`` in place: the synchronous straggler wait."""
    computes = [row["compute_seconds"] for row in client_rows if row["selected"]]
    slowest = max(computes, default=0.0)
    for row in client_rows:
        row["idle_seconds"] = slowest - row["compute_seconds"] if row["selected"] else 0.0
    server_row["idle_seconds"] = float(sum(row["idle_seconds"] for row in client_rows))


def round_totals(history: pd.DataFrame, round_index: int) -> dict[str, Any]:
    """One round's totals over its participants."""
    rows = history[history["round"] == round_index]
    clients = rows[rows["client"] != SERVER]
    server = rows[rows["client"] == SERVER]
    totals: dict[str, Any] = {"round": int(round_index)}
    for key in COUNT_TOTALS:
        totals[key] = int(rows[key].sum())
    client_seconds = clients.loc[clients["selected"], "compute_seconds"]
    server_seconds = float(server["compute_seconds"].sum())
    totals["client_seconds"] = float(client_seconds.sum())
    totals["server_seconds"] = server_seconds
    totals["idle_seconds"] = float(clients["idle_seconds"].sum())
    totals["qpu_seconds"] = float(rows["qpu_seconds"].sum())
    totals["wall_seconds"] = float(client_seconds.max() if len(client_seconds) else 0.0) + server_seconds
    return totals


def accounting_summary(history: pd.DataFrame, *, arm: str, seed: int, stop_reason: str) -> dict[str, Any]:
    """The ``accounting.json`` payload: totals and per-round totals."""
    rounds = sorted(int(r) for r in history["round"].unique())
    per_round = [round_totals(history, r) for r in rounds]
    totals: dict[str, Any] = {}
    for key in TOTAL_KEYS:
        values = [entry[key] for entry in per_round]
        totals[key] = int(sum(values)) if key in COUNT_TOTALS else float(math.fsum(values))
    return {
        "arm": arm,
        "seed": int(seed),
        "rounds_run": len(rounds),
        "totals": totals,
        "per_round": per_round,
        "stop_reason": stop_reason,
    }


def round_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Flat per-round metrics for MLflow (``step=round``): server metrics and client means."""
    server = next(row for row in rows if row["client"] == SERVER)
    clients = [row for row in rows if row["client"] != SERVER]
    trained = [row for row in clients if row["selected"]]
    metrics = {
        "server_val_loss": server["loss"],
        "server_test_accuracy": server["test_accuracy"],
        "server_test_f1": server["test_f1"],
        "server_test_loss": server["test_loss"],
        "server_circuits": server["circuits"],
        "clients_selected": len(trained),
        "client_mean_test_accuracy": _nanmean([row["test_accuracy"] for row in clients]),
        "client_mean_train_loss": _nanmean([row["train_loss"] for row in trained]),
        "client_mean_maxiter": _nanmean([row["maxiter"] for row in trained]),
        "client_mean_distance": _nanmean([row["distance"] for row in clients]),
        "round_nfev": sum(row["nfev"] for row in rows),
        "round_circuits": sum(row["circuits"] for row in rows),
        "round_shots": sum(row["shots"] for row in rows),
        "round_bytes": sum(row["bytes_up"] + row["bytes_down"] for row in rows),
    }
    return {key: float(value) for key, value in metrics.items() if value is not None and math.isfinite(float(value))}


def _nanmean(values: Sequence[float]) -> float:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(finite)) if finite else math.nan
