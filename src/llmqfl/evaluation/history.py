"""Read and check the QFL stage's outputs (history.parquet, accounting.json) against the file contract.

A contract violation is a :class:`DataError` naming the file and the column, raised before the
evaluate stage writes anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmqfl.contracts import HISTORY_COLUMNS, SERVER, TOTAL_KEYS, coerce_history
from llmqfl.errors import DataError
from llmqfl.file_contract import HISTORY, check_frame, check_shares
from llmqfl.io import read_json, read_parquet


def load_history(path: str | Path) -> pd.DataFrame:
    """Read ``history.parquet`` and check its columns, server rows and round numbering."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"history file not found: {path}")
    return check_history(read_parquet(path), source=str(path))


def check_history(frame: pd.DataFrame, *, source: str = "history") -> pd.DataFrame:
    """Validate a history frame; return a copy sorted by (round, client) with contract dtypes."""
    missing = [c for c in HISTORY_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing column(s): {', '.join(missing)}")
    if frame.empty:
        raise DataError(f"{source}: no rows")
    try:
        frame = coerce_history(frame)
    except ValueError as exc:
        raise DataError(f"{source}: column {exc}: non-integer or missing values") from exc
    check_frame(frame, HISTORY, source)  # types, ranges (an accuracy in [0, 1]), one row per (round, client)
    _check_rounds(frame, source)
    return frame.sort_values(["round", "client"], kind="stable").reset_index(drop=True)


def _check_rounds(frame: pd.DataFrame, source: str) -> None:
    rounds = sorted(frame["round"].unique())
    if rounds != list(range(1, len(rounds) + 1)):
        raise DataError(f"{source}: column round: rounds must run 1..R without gaps, got {rounds}")
    servers = frame[frame["client"] == SERVER].groupby("round").size()
    bad = [r for r in rounds if servers.get(r, 0) != 1]
    if bad:
        raise DataError(
            f"{source}: column client: need exactly one server row (client {SERVER}) per round; rounds {bad}"
        )
    if (frame["client"] < SERVER).any():
        raise DataError(f"{source}: column client: ids must be >= 0 (or {SERVER} for the server)")
    if frame.duplicated(["round", "client"]).any():
        raise DataError(f"{source}: duplicate (round, client) rows")


def load_accounting(path: str | Path) -> dict[str, Any]:
    """Read ``accounting.json`` and check the keys the evaluation needs."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"accounting file not found: {path}")
    payload = read_json(path)
    for key in ("arm", "seed", "rounds_run", "totals"):
        if key not in payload:
            raise DataError(f"{path}: missing key {key}")
    missing = [k for k in TOTAL_KEYS if k not in payload["totals"]]
    if missing:
        raise DataError(f"{path}: totals: missing key(s) {', '.join(missing)}")
    negative = [k for k in TOTAL_KEYS if not _count(payload["totals"][k])]
    if negative:
        raise DataError(f"{path}: totals: {', '.join(negative)} must be numbers >= 0")
    check_shares(payload, str(path))
    return payload


def _count(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def server_rows(history: pd.DataFrame) -> pd.DataFrame:
    """One row per round: the global model's server-side measurements."""
    return history[history["client"] == SERVER].set_index("round").sort_index()


def client_rows(history: pd.DataFrame) -> pd.DataFrame:
    """Every (round, client) row."""
    return history[history["client"] != SERVER]


def client_matrix(history: pd.DataFrame, column: str) -> tuple[np.ndarray, list[int], list[int]]:
    """``column`` as a (round x client) matrix (NaN where a client has no row), with the axis labels."""
    clients = client_rows(history)
    table = clients.pivot(index="round", columns="client", values=column).sort_index()
    table = table.reindex(index=sorted(history["round"].unique()))
    return table.to_numpy(dtype=float), [int(r) for r in table.index], [int(c) for c in table.columns]
