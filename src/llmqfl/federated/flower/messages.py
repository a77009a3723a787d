"""What travels in Flower messages, and how many bytes it takes on the wire.

Server -> client: ``query`` (no content: "who are you?"), ``train`` (global weights + round, maxiter,
seed), ``evaluate`` (global weights + round). Client -> server: its id, train-item count and LLM loss
(the LLM signal of guidance); its trained weights with losses and work counters; the global model's
metrics on its own test items with the work they took. No message carries an item, a label or a teacher output.
"""

from __future__ import annotations

from dataclasses import Field, asdict, fields
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

from llmqfl.contracts import Usage
from llmqfl.federated.client import ClientUpdate

QUERY, TRAIN, EVALUATE = "query", "train", "evaluate"


def wire_bytes(message: Message) -> int:
    """Serialized size of a message and every record and array in it (what the transport carries)."""
    return sum(len(obj.deflate()) for obj in get_all_nested_objects(message).values())


def weights_record(weights: np.ndarray) -> ArrayRecord:
    return ArrayRecord([np.ascontiguousarray(weights, dtype=np.float64)])


def weights_of(content: RecordDict, key: str = "weights") -> np.ndarray:
    return np.asarray(content.array_records[key].to_numpy_ndarrays()[0], dtype=np.float64)


def train_content(weights: np.ndarray, *, round_index: int, maxiter: int, seed: int) -> RecordDict:
    config = ConfigRecord({"round": int(round_index), "maxiter": int(maxiter), "seed": int(seed)})
    return RecordDict({"weights": weights_record(weights), "config": config})


def evaluate_content(weights: np.ndarray, *, round_index: int) -> RecordDict:
    return RecordDict({"weights": weights_record(weights), "config": ConfigRecord({"round": int(round_index)})})


def identity_content(client: int, n_train: int, llm_loss: float) -> RecordDict:
    return RecordDict(
        {"identity": MetricRecord({"client": int(client), "n_train": int(n_train), "llm_loss": float(llm_loss)})}
    )


def update_content(update: ClientUpdate) -> RecordDict:
    """A trained client's reply: its weights, and every other field of its update as a metric."""
    scalars = {f.name: getattr(update, f.name) for f in fields(update) if f.name not in ("weights", "usage")}
    metrics = MetricRecord({**scalars, **usage_metrics(update.usage)})
    return RecordDict({"weights": weights_record(update.weights), "metrics": metrics})


def update_of(content: RecordDict) -> ClientUpdate:
    """The :class:`ClientUpdate` a reply carries, typed as the dataclasses declare."""
    return update_from(content.metric_records["metrics"], weights_of(content))


def update_from(metrics: Any, weights: np.ndarray) -> ClientUpdate:
    """A :class:`ClientUpdate` from its scalars (as :func:`update_content` writes them) and weights."""
    scalars = {f.name: _typed(f, metrics[f.name]) for f in fields(ClientUpdate) if f.name not in ("weights", "usage")}
    return ClientUpdate(weights=weights, usage=usage_of(metrics), **scalars)


def usage_metrics(usage: Usage) -> dict[str, int | float]:
    """A :class:`Usage` as ``usage.*`` metrics (work a client did, counted where the server books it)."""
    return {f"usage.{k}": v for k, v in asdict(usage).items()}


def usage_of(metrics: Any) -> Usage:
    return Usage(**{f.name: _typed(f, metrics[f"usage.{f.name}"]) for f in fields(Usage)})


def _typed(field: Field, value: Any) -> Any:
    return int(value) if field.type in (int, "int") else float(value)
