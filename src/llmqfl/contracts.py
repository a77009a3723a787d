"""The run's shared facts, each defined once: arms, the server id, the history row, the usage counter,
the qubit-fit check and the shot budget.

Writers (``federated.accounting``) and readers (``evaluation.history``) of ``history.parquet`` both
use :data:`HISTORY_DTYPES`; the workflow rules and ``evaluation.claims`` read :data:`ARMS` from here.
See ``docs/architecture.md`` ("where each fact lives").
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import pandas as pd

from llmqfl.errors import ConfigError

# -- arms and participants ------------------------------------------------------------------------
BASELINE, LLM_GUIDED, BUDGET_MATCHED = "baseline", "llm_guided", "budget_matched"
# controls that isolate the LLM (docs/method.md): L's total quantum cost spread evenly, no LLM; and a
# stopping rule of L's kind on the arm's own server loss, no LLM
EQUAL_COST, LOSS_STOPPING = "equal_cost", "loss_stopping"
ARMS: tuple[str, ...] = (BASELINE, LLM_GUIDED, BUDGET_MATCHED, EQUAL_COST, LOSS_STOPPING)
LLM_ARMS: frozenset[str] = frozenset({LLM_GUIDED})  # arms that read the LLM's outputs
SERVER = -1  # the participant id of the server's row in each round


def uses_llm(arm: str) -> bool:
    """True for the arm that reads the fine-tuned LLMs' metrics and teacher outputs."""
    return arm in LLM_ARMS


def check_arm(arm: str) -> str:
    """``arm`` itself, or a :class:`ConfigError` listing the arms."""
    if arm not in ARMS:
        raise ConfigError(f"--arm: {arm!r} is not one of: {', '.join(ARMS)}")
    return arm


def check_arms(arms: Sequence[str]) -> None:
    """A :class:`ConfigError` naming ``arms`` for a name that is not an arm."""
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise ConfigError(f"config error: arms: {unknown[0]!r} is not one of: {', '.join(ARMS)}")


# -- the history row ------------------------------------------------------------------------------
@dataclass
class HistoryRow:
    """One (round, participant) row of ``history.parquet``; the server is ``client == SERVER``."""

    round: int
    client: int
    selected: bool
    n_items: int
    maxiter: int
    nfev: int
    circuits: int
    shots: int
    jobs: int
    loss: float  # client: final local objective; server: loss J_s on server_val
    train_loss: float  # client: CE of its trained weights on its train items (the J of guidance)
    llm_loss: float
    distance: float  # |J_i - J_s|
    train_accuracy: float
    test_accuracy: float
    test_f1: float
    test_loss: float
    bytes_up: int
    bytes_down: int
    compute_seconds: float
    qpu_seconds: float
    idle_seconds: float
    terminated: bool
    stop_reason: str


_DTYPE_OF = {int: "int64", float: "float64", bool: "bool", str: "str"}
_TYPES = {"int": int, "float": float, "bool": bool, "str": str}
HISTORY_DTYPES: dict[str, str] = {f.name: _DTYPE_OF[_TYPES[str(f.type)]] for f in fields(HistoryRow)}
HISTORY_COLUMNS: tuple[str, ...] = tuple(HISTORY_DTYPES)
INT_COLUMNS = tuple(c for c, d in HISTORY_DTYPES.items() if d == "int64")
FLOAT_COLUMNS = tuple(c for c, d in HISTORY_DTYPES.items() if d == "float64")
BOOL_COLUMNS = tuple(c for c, d in HISTORY_DTYPES.items() if d == "bool")
# columns that measure elapsed time: they differ between two otherwise identical runs
TIMING_COLUMNS: tuple[str, ...] = ("compute_seconds", "qpu_seconds", "idle_seconds")
# what the job ledger keeps of each round (llmqfl.quantum.jobs.ledger_rounds): losses and counts, no timings
LEDGER_CLIENT_COLUMNS: tuple[str, ...] = (
    "selected", "maxiter", "nfev", "jobs", "shots", "loss", "train_loss", "test_accuracy", "test_loss")
LEDGER_SERVER_COLUMNS: tuple[str, ...] = ("loss", "test_accuracy", "test_f1", "test_loss", "jobs", "shots")


def history_frame(rows: Sequence[Mapping[str, Any] | HistoryRow]) -> pd.DataFrame:
    """Rows -> the history frame with the contract's column order and dtypes, sorted by (round, client)."""
    records = [vars(r) if isinstance(r, HistoryRow) else dict(r) for r in rows]
    frame = pd.DataFrame(records, columns=list(HISTORY_COLUMNS))
    return _coerce(frame).sort_values(["round", "client"], kind="stable").reset_index(drop=True)


def coerce_history(frame: pd.DataFrame) -> pd.DataFrame:
    """A read frame cast to the contract's dtypes; ``ValueError(column)`` for a non-integer int column."""
    frame = frame.copy()
    for column in INT_COLUMNS:
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.isna().any():
            raise ValueError(column)
        frame[column] = values
    for column in FLOAT_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    for column in BOOL_COLUMNS:
        frame[column] = frame[column].fillna(False)
    frame["stop_reason"] = frame["stop_reason"].fillna("")
    return _coerce(frame)


def _coerce(frame: pd.DataFrame) -> pd.DataFrame:
    for column, dtype in HISTORY_DTYPES.items():
        frame[column] = frame[column].astype(object if dtype == "str" else dtype)
    return frame


# accounting.json "totals": summed counters, then summed seconds (written by federated.accounting)
COUNT_TOTALS: tuple[str, ...] = ("nfev", "circuits", "shots", "jobs", "bytes_up", "bytes_down")
SECONDS_TOTALS: tuple[str, ...] = ("client_seconds", "server_seconds", "idle_seconds", "qpu_seconds", "wall_seconds")
TOTAL_KEYS: tuple[str, ...] = (*COUNT_TOTALS, *SECONDS_TOTALS)


# -- work done ------------------------------------------------------------------------------------
@dataclass
class Usage:
    """Work counters of an evaluator (cumulative) or of a stretch of work (a difference of two).

    ``objective_evaluations`` counts weight sets evaluated; ``circuits`` = items x weight sets;
    ``shots`` = circuits x shots (0 when exact); ``jobs`` = primitive calls (0 when exact);
    ``seconds`` = time spent in the engine or primitive.
    """

    objective_evaluations: int = 0
    circuits: int = 0
    shots: int = 0
    jobs: int = 0
    seconds: float = 0.0

    def reset(self) -> None:
        """Zero every counter."""
        for item in fields(self):
            setattr(self, item.name, type(getattr(self, item.name))(0))

    def snapshot(self) -> Usage:
        """An independent copy (take one before some work, then :meth:`since`)."""
        return copy.copy(self)

    def since(self, before: Usage) -> Usage:
        """Counters accumulated after ``before`` was taken."""
        return self - before

    def __sub__(self, other: Usage) -> Usage:
        return Usage(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    def as_dict(self) -> dict[str, float | int]:
        """Plain dict, for JSON and history rows."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


# -- the quantum device ---------------------------------------------------------------------------
def check_qubit_fit(needed: int | None, available: int | None, device: str) -> None:
    """A :class:`ConfigError` naming ``qfl.n_qubits`` when ``needed`` qubits exceed ``device``'s ``available``
    (None: not known yet, or no fixed width)."""
    if needed is not None and available is not None and int(needed) > int(available):
        raise ConfigError(
            f"config error: qfl.n_qubits: {int(needed)} qubits do not fit {device}, which has {int(available)}"
        )


def remaining_budget(budget: int | None, used: int) -> int | None:
    """Shots still available after ``used`` of ``budget`` (None = unlimited)."""
    return None if budget is None else max(0, int(budget) - int(used))

