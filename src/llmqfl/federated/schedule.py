"""The ``budget_matched`` arm's input: the per-round, per-client compute that ``llm_guided`` used.

Guidance only ever raises ``maxiter``, so "LLM guidance helps" is confounded with "more optimizer
steps help" (D3 in ``docs/differences.md``). ``budget_matched`` replays, for the same seed, exactly who trained in each
round and with which ``maxiter``, for as many rounds as ``llm_guided`` ran, without any LLM signal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from llmqfl.errors import DataError
from llmqfl.file_contract import HISTORY
from llmqfl.io import read_checked_parquet


@dataclass(frozen=True)
class Schedule:
    """``maxiter[(round, client)]`` and ``selected[round]`` for rounds 1..``rounds``."""

    maxiter: dict[tuple[int, int], int]
    selected: dict[int, tuple[int, ...]]

    @property
    def rounds(self) -> int:
        return max(self.selected)


def load_schedule(path: str | Path, *, clients: Sequence[int]) -> Schedule:
    """Read an ``llm_guided`` history.parquet; every round must list every client."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"schedule file not found: {path} (the llm_guided history of the same seed)")
    frame = read_checked_parquet(path, ("round", "client", "selected", "maxiter"), HISTORY)
    return _schedule_from_frame(frame, clients=clients, source=str(path))


def _schedule_from_frame(frame: pd.DataFrame, *, clients: Sequence[int], source: str) -> Schedule:
    frame = frame[frame["client"] >= 0]
    if frame.empty:
        raise DataError(f"schedule file {source}: no client rows")
    expected = set(int(c) for c in clients)
    rounds = sorted(int(r) for r in frame["round"].unique())
    if rounds != list(range(1, len(rounds) + 1)):
        raise DataError(f"schedule file {source}: rounds must be 1..R without gaps, got {rounds}")
    maxiter: dict[tuple[int, int], int] = {}
    selected: dict[int, tuple[int, ...]] = {}
    for round_index in rounds:
        rows = frame[frame["round"] == round_index]
        present = set(int(c) for c in rows["client"])
        if present != expected:
            raise DataError(
                f"schedule file {source}: round {round_index} has clients {sorted(present)}, "
                f"this federation has {sorted(expected)}"
            )
        for row in rows.itertuples(index=False):
            if int(row.maxiter) < 1:
                raise DataError(f"schedule file {source}: maxiter < 1 in round {round_index}, client {row.client}")
            maxiter[(round_index, int(row.client))] = int(row.maxiter)
        chosen = tuple(sorted(int(c) for c in rows.loc[rows["selected"].astype(bool), "client"]))
        if not chosen:
            raise DataError(f"schedule file {source}: round {round_index} selects no client")
        selected[round_index] = chosen
    return Schedule(maxiter=maxiter, selected=selected)
