"""A finished round on record in the job ledger, so the ledger alone tells a hardware run's story.

Written with each checkpoint (:func:`llmqfl.federated.checkpoint`), read back by
:mod:`llmqfl.quantum.jobs.ledger_report`. Only losses and counts are kept, never items or weights.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmqfl.contracts import LEDGER_CLIENT_COLUMNS, LEDGER_SERVER_COLUMNS, SERVER
from llmqfl.quantum.jobs.job_ledger import LEDGER_NAME
from llmqfl.quantum.jobs.ledger_codec import plain
from llmqfl.quantum.jobs.ledger_file import append_record, parse_record

__all__ = ["record_round"]


def record_round(directory: str | Path, *, fingerprint: str, round_index: int, rows: Sequence[dict[str, Any]],
                 stop_reason: str = "", aborted: dict[str, Any] | None = None) -> bool:
    """Append a finished round's losses to the run's ledger (if it keeps one); True when recorded.

    Called with each checkpoint, before its JSON is written: a round on record in a checkpoint is on
    record in the ledger. Rows are the round's history rows; only losses and counts are kept.
    """
    path = Path(directory) / LEDGER_NAME
    header = _first_record(path)
    if header is None or header.get("type") != "header" or header.get("fingerprint") != fingerprint:
        return False
    mine = [row for row in rows if row.get("round") == round_index]
    server = next((row for row in mine if row.get("client") == SERVER), None)
    record = {
        "type": "round",
        "round": int(round_index),
        "server": plain({k: server.get(k) for k in LEDGER_SERVER_COLUMNS}) if server else {},
        "clients": {str(row["client"]): plain({k: row.get(k) for k in LEDGER_CLIENT_COLUMNS})
                    for row in mine if row.get("client") != SERVER},
        "stop_reason": stop_reason,
        "aborted": plain(aborted or {}),
        "t": time.time(),
    }
    append_record(path, record)
    return True


def _first_record(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as handle:
            return parse_record(handle.readline())
    except OSError:
        return None
