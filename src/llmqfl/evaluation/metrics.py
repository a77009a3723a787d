"""Per-run metrics: what the evaluate stage writes to ``results/{exp}/eval/{arm}/seed_{seed}.json``.

Everything is computed from ``history.parquet`` (the per round x participant record); the
accounting totals are cross-checked against it, and any disagreement is recorded rather than
silently preferred, so a bookkeeping bug in the QFL stage shows up in the report.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from llmqfl.evaluation.history import client_rows, server_rows
from llmqfl.evaluation.stats import convergence_slope

LOG = logging.getLogger(__name__)

COUNTERS = ("nfev", "circuits", "shots", "jobs", "bytes_up", "bytes_down", "qpu_seconds")
SERVER_SERIES = {  # eval name -> server-row column
    "test_accuracy": "test_accuracy",
    "test_f1": "test_f1",
    "test_loss": "test_loss",
    "server_loss": "loss",
    "llm_loss": "llm_loss",
}
REL_TOL = 1e-6


def run_metrics(
    history: pd.DataFrame,
    accounting: Mapping[str, Any],
    *,
    experiment: str,
    rounds_configured: int,
    selection_kind: str,
) -> dict[str, Any]:
    """The evaluation record of one (arm, seed) run; ``history`` must have passed ``check_history``."""
    if rounds_configured < 1:
        raise ValueError("rounds_configured must be >= 1")
    return _run_metrics(history, dict(accounting), experiment, rounds_configured, selection_kind)


def _run_metrics(
    history: pd.DataFrame, accounting: dict[str, Any], experiment: str, rounds_configured: int, selection_kind: str
) -> dict[str, Any]:
    server = server_rows(history)
    per_round = _per_round(history, server)
    totals = _totals(per_round, accounting)
    n_clients = int(client_rows(history)["client"].nunique())
    terminated = server.index[server["terminated"]].tolist()
    stop_reason = str(accounting.get("stop_reason") or _last_stop_reason(server))
    slope = convergence_slope(per_round["server_loss"])
    record = {
        "experiment": experiment,
        "arm": str(accounting["arm"]),
        "seed": int(accounting["seed"]),
        "rounds_run": len(server),
        "rounds_configured": rounds_configured,
        "terminated_round": int(terminated[0]) if terminated else None,
        "stop_reason": stop_reason,
        "n_clients": n_clients,
        "n_params": _n_params(history),
        "per_round": per_round,
        "final": {name: per_round[name][-1] for name in ("test_accuracy", "test_f1", "test_loss", "server_loss")},
        "best": _best(per_round["test_accuracy"]),
        "totals": totals,
        "wall_split": _wall_split(totals),
        "selection": _selection(per_round, n_clients, _n_params(history), selection_kind),
        "convergence": None if slope is None else {
            "slope": slope.slope, "intercept": slope.intercept, "r2": slope.r2, "f_star": slope.f_star,
            "n_points": slope.n_points,
        },
        "accounting_check": _check_against_accounting(history, server, totals, accounting),
        # (epsilon, delta) of each private mechanism of the run (privacy.quantum; docs/privacy.md); {} when off
        "privacy": {part: {"epsilon": entry["epsilon"], "delta": entry["delta"]}
                    for part, entry in (accounting.get("privacy") or {}).items()},
    }
    return _json_safe(record)


def _per_round(history: pd.DataFrame, server: pd.DataFrame) -> dict[str, list[Any]]:
    clients = client_rows(history)
    series: dict[str, list[Any]] = {"round": [int(r) for r in server.index]}
    for name, column in SERVER_SERIES.items():
        series[name] = [float(v) for v in server[column]]
    index = server.index
    selected = clients[clients["selected"]].groupby("round")
    series["n_selected"] = [int(v) for v in selected.size().reindex(index, fill_value=0)]
    series["mean_maxiter"] = [float(v) for v in selected["maxiter"].mean().reindex(index)]
    series["max_maxiter"] = [float(v) for v in selected["maxiter"].max().reindex(index)]
    series["mean_client_loss"] = [float(v) for v in selected["loss"].mean().reindex(index)]
    for column in COUNTERS:  # every participant, the server's evaluation circuits included
        series[column] = [_num(v) for v in history.groupby("round")[column].sum().reindex(index, fill_value=0)]
    # selected clients only: a client that is not selected does not train (the accounting counts the same)
    series["client_seconds"] = [float(v) for v in selected["compute_seconds"].sum().reindex(index, fill_value=0.0)]
    series["server_seconds"] = [float(v) for v in server["compute_seconds"]]
    series["idle_seconds"] = [float(v) for v in server["idle_seconds"]]
    series["idle_circuits"] = [float(v) for v in _idle_work(selected_rows=clients[clients["selected"]], index=index)]
    series["slowest_client_seconds"] = [
        float(v) for v in selected["compute_seconds"].max().reindex(index, fill_value=0.0)
    ]
    return series


def _idle_work(*, selected_rows: pd.DataFrame, index: pd.Index) -> pd.Series:
    """Straggler wait in work units: sum over selected clients of (most circuits of the round - own circuits).

    Wall-clock idle depends on the machine's load (two identical runs differ); this does not, so the
    idle claim can be decided deterministically and the seconds reported beside it.
    """
    most = selected_rows.groupby("round")["circuits"].transform("max")
    return (most - selected_rows["circuits"]).groupby(selected_rows["round"]).sum().reindex(index, fill_value=0)


def _num(value: Any) -> int | float:
    number = float(value)
    return int(number) if number.is_integer() else number


def _totals(per_round: Mapping[str, Sequence[Any]], accounting: Mapping[str, Any]) -> dict[str, float]:
    totals = {column: _num(sum(per_round[column])) for column in COUNTERS}
    for column in ("client_seconds", "server_seconds", "idle_seconds"):
        totals[column] = float(sum(per_round[column]))
    totals["idle_circuits"] = _num(sum(per_round["idle_circuits"]))
    # the run's wall clock (LLM loading, transpilation, I/O) is only known to the QFL stage
    totals["wall_seconds"] = float(accounting["totals"]["wall_seconds"])
    return totals


def _wall_split(totals: Mapping[str, float]) -> dict[str, float]:
    """Client compute, server compute and idle as shares of their sum."""
    parts = {k: float(totals[k]) for k in ("client_seconds", "server_seconds", "idle_seconds")}
    whole = sum(parts.values())
    return {f"{k.removesuffix('_seconds')}_share": (v / whole if whole > 0 else math.nan) for k, v in parts.items()}


def _n_params(history: pd.DataFrame) -> int:
    """Model size from the downlink (parameters x 8 bytes per client per round)."""
    down = client_rows(history)["bytes_down"]
    return int(down.max() // 8) if len(down) else 0


def _best(accuracy: Sequence[float]) -> dict[str, Any]:
    values = np.asarray(accuracy, dtype=float)
    if not np.isfinite(values).any():
        return {"test_accuracy": math.nan, "round": None}
    index = int(np.nanargmax(values))
    return {"test_accuracy": float(values[index]), "round": index + 1}


def _selection(per_round: Mapping[str, Sequence[Any]], n_clients: int, n_params: int, kind: str) -> dict[str, Any]:
    """Uplink actually sent as a share of what all-client FedAvg would send (same model, float64)."""
    rounds = len(per_round["round"])
    mean_selected = float(np.mean(per_round["n_selected"])) if rounds else math.nan
    full = 8 * n_params * n_clients * rounds
    uplink = float(sum(per_round["bytes_up"]))
    return {
        "kind": kind,
        "mean_selected": mean_selected,
        "selected_fraction": mean_selected / n_clients if n_clients else math.nan,
        "uplink_fraction": uplink / full if full > 0 else math.nan,
    }


def rounds_to_target(accuracy: Sequence[float], target: float) -> int | None:
    """First 1-based round whose accuracy reaches ``target``; None when never reached."""
    for index, value in enumerate(accuracy):
        if value is not None and math.isfinite(float(value)) and float(value) >= target:
            return index + 1
    return None


def circuits_to_target(accuracy: Sequence[float], circuits: Sequence[float], target: float) -> float | None:
    """Circuit executions spent up to and including the first round whose accuracy reaches ``target``.

    Convergence speed in the currency the arms are budgeted in: an arm that runs more iterations per
    round reaches a target in fewer rounds without converging faster. None when never reached.
    """
    reached = rounds_to_target(accuracy, target)
    return None if reached is None else float(sum(float(c) for c in circuits[:reached]))


def circuits_after_best_loss(server_loss: Sequence[float], circuits: Sequence[float]) -> float:
    """Circuit executions of the rounds after the run's lowest server loss (its first occurrence).

    Work spent once the loss had stopped improving: what a perfect stopping rule would have saved.
    NaN when the run has no finite server loss.
    """
    losses = np.asarray([math.nan if v is None else float(v) for v in server_loss], dtype=float)
    if not np.isfinite(losses).any():
        return math.nan
    best = int(np.nanargmin(losses))
    return float(sum(float(c) for c in circuits[best + 1:]))


def dyadic_rate(losses: Sequence[float], *, min_points: int = 3) -> float | None:
    """Convergence order of a loss curve without knowing its optimum F* (O(1/T) gives -1).

    With m_T the running minimum of F over rounds 1..T and F_T = F* + C T^-a, the decrement over a
    doubling is m_T - m_2T = C (1 - 2^-a) T^-a: the slope of log(m_T - m_2T) against log T is -a
    whatever F* is. Nothing is fitted to F*, so no floor can be chosen to straighten the fit (a floor
    just below the smallest loss makes 1/sqrt(T), 1/T and 1/T^2 curves all look like slope -1.8).
    None when fewer than ``min_points`` doublings fit in the curve, a loss is not finite, or the
    running minimum does not improve over some doubling (a plateau has no power-law rate).
    """
    curve = np.asarray([math.nan if v is None else float(v) for v in losses], dtype=float)
    if not np.isfinite(curve).all():
        return None
    running = np.minimum.accumulate(curve)
    t = np.arange(1, len(running) // 2 + 1)
    if len(t) < min_points:
        return None
    drops = running[t - 1] - running[2 * t - 1]
    if not (drops > 0).all():
        return None
    return float(np.polyfit(np.log(t), np.log(drops), 1)[0])


def _last_stop_reason(server: pd.DataFrame) -> str:
    reasons = [r for r in server["stop_reason"] if r]
    return reasons[-1] if reasons else ""


def _check_against_accounting(
    history: pd.DataFrame, server: pd.DataFrame, totals: Mapping[str, float], accounting: Mapping[str, Any]
) -> dict[str, Any]:
    """Compare history-derived totals with accounting.json; list every disagreement."""
    reported = accounting["totals"]
    mismatches = []
    for key, value in totals.items():
        if key == "wall_seconds" or key not in reported:
            continue
        other = float(reported[key])
        if not math.isclose(float(value), other, rel_tol=REL_TOL, abs_tol=1e-9):
            mismatches.append({"key": key, "history": float(value), "accounting": other})
    if int(accounting["rounds_run"]) != len(server):
        mismatches.append({"key": "rounds_run", "history": len(server), "accounting": int(accounting["rounds_run"])})
    client_idle = float(client_rows(history)["idle_seconds"].sum())
    if not math.isclose(client_idle, float(server["idle_seconds"].sum()), rel_tol=1e-3, abs_tol=1e-6):
        mismatches.append(
            {"key": "idle_seconds(client rows)", "history": client_idle, "accounting": float(totals["idle_seconds"])}
        )
    for item in mismatches:
        LOG.warning("accounting mismatch: %s history=%s accounting=%s", item["key"], item["history"],
                    item["accounting"])
    return {"consistent": not mismatches, "mismatches": mismatches}


def _json_safe(value: Any) -> Any:
    """NaN/inf become None (strict JSON), numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    return value
