"""A round's history rows (:class:`llmqfl.contracts.HistoryRow`), one per client and one for the server."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from llmqfl.contracts import SERVER, HistoryRow, Usage
from llmqfl.federated.accounting import add_idle
from llmqfl.federated.client import Client, ClientUpdate


def client_row(
    r: int,
    client: Client,
    *,
    selected: bool,
    maxiter: int,
    update: ClientUpdate | None,
    test: dict[str, float],
    distance: float,
    model_bytes: int,
) -> HistoryRow:
    """A client's row: its training (when selected) and the global model on its test items."""
    trained = update is not None
    return HistoryRow(
        round=r,
        client=client.id,
        selected=selected,
        n_items=client.data.n_train,
        maxiter=int(maxiter),
        nfev=update.nfev if update else 0,
        circuits=update.usage.circuits if update else 0,
        shots=update.usage.shots if update else 0,
        jobs=update.usage.jobs if update else 0,
        loss=update.objective if update else math.nan,
        train_loss=update.train_loss if update else math.nan,
        llm_loss=float(client.data.llm_loss),
        distance=distance,
        train_accuracy=update.train_accuracy if update else math.nan,
        test_accuracy=test["accuracy"],
        test_f1=test["f1"],
        test_loss=test["loss"],
        bytes_up=model_bytes if trained else 0,
        bytes_down=model_bytes if trained else 0,
        compute_seconds=update.compute_seconds if update else 0.0,
        qpu_seconds=update.usage.seconds if update else 0.0,
        idle_seconds=0.0,
        terminated=False,
        stop_reason="",
    )


def server_row(
    r: int,
    *,
    n_items: int,
    usage: Usage,
    val: dict[str, float],
    test: dict[str, float],
    llm_loss: float,
    seconds: float,
) -> HistoryRow:
    """The server's row: aggregation + evaluation work, J_s on server_val and the held-out test metrics."""
    return HistoryRow(
        round=r,
        client=SERVER,
        selected=False,
        n_items=n_items,
        maxiter=0,
        nfev=0,
        circuits=usage.circuits,
        shots=usage.shots,
        jobs=usage.jobs,
        loss=val["loss"],
        train_loss=math.nan,
        llm_loss=float(llm_loss),
        distance=math.nan,
        train_accuracy=math.nan,
        test_accuracy=test["accuracy"],
        test_f1=test["f1"],
        test_loss=test["loss"],
        bytes_up=0,
        bytes_down=0,
        compute_seconds=seconds,
        qpu_seconds=usage.seconds,
        idle_seconds=0.0,
        terminated=False,
        stop_reason="",
    )


def round_rows(client_rows: list[HistoryRow], server: HistoryRow) -> list[dict[str, Any]]:
    """The round's rows as plain dicts (what checkpoints store), idle time filled in."""
    rows = [asdict(row) for row in client_rows]
    last = asdict(server)
    add_idle(rows, last)
    return [*rows, last]
