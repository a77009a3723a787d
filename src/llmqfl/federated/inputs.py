"""Read and check everything one QFL run consumes (the upstream stages' files), then assemble each
client's and the server's data. Nothing is written; every problem is a one-line ``DataError`` or
``ConfigError`` naming the file or the config key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmqfl import layout
from llmqfl.contracts import BUDGET_MATCHED, uses_llm
from llmqfl.errors import ConfigError, DataError
from llmqfl.federated.client import ClientData
from llmqfl.federated.features import FeatureSets, build_features, resolve_source
from llmqfl.federated.schedule import Schedule, load_schedule
from llmqfl.file_contract import DATA_SPLIT, EMBEDDINGS, PARTITION, TEACHER, check_shares
from llmqfl.io import read_checked_parquet, read_json
from llmqfl.settings import Settings

SPLITS = ("train", "test", "server_val")


@dataclass(frozen=True)
class RunPaths:
    """Where a run reads from and writes to (the stage file contract, ``docs/architecture.md``)."""

    data_dir: Path
    partitions_dir: Path
    distill_dir: Path
    out_dir: Path
    embeddings: Path | None = None
    schedule: Path | None = None
    tau_reference: Path | None = None
    cost_reference: Path | None = None  # equal_cost: the llm_guided history whose total cost it spends


@dataclass(frozen=True)
class Inputs:
    """Everything a run reads, loaded and checked."""

    meta: dict[str, Any]
    data: dict[str, pd.DataFrame]
    partitions: dict[int, pd.DataFrame]
    llm_metrics: dict[int, dict[str, Any]]
    teachers: dict[int, pd.DataFrame]
    embeddings: pd.DataFrame | None
    schedule: Schedule | None


def read_checked_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"input file not found: {path}")
    try:
        return read_json(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read JSON: {exc}") from exc


def load_inputs(paths: RunPaths, settings: Settings, arm: str) -> Inputs:
    """Read and check every input file the arm needs; nothing is written.

    teacher.parquet is where the teachers' probabilities enter: its file contract checks them here, once
    (every row a probability distribution: :data:`llmqfl.file_contract.TEACHER`); nothing downstream
    checks them again on their way to the distillation loss.
    """
    qfl = settings.qfl
    meta = read_checked_json(paths.data_dir / layout.META)
    data = {s: read_checked_parquet(paths.data_dir / f"{s}.parquet", ("row", "item", "label"), DATA_SPLIT)
            for s in SPLITS}
    n_clients = settings.federation.n_clients
    summary = read_checked_json(paths.partitions_dir / layout.PARTITION_SUMMARY)
    if int(summary.get("n_clients", -1)) != n_clients:
        raise DataError(
            f"{paths.partitions_dir / 'partitions.json'}: n_clients {summary.get('n_clients')} != "
            f"federation.n_clients {n_clients}"
        )
    partitions = {
        k: read_checked_parquet(paths.partitions_dir / layout.partition_name(k), ("row", "label", "split"), PARTITION)
        for k in range(n_clients)
    }
    llm_metrics: dict[int, dict[str, Any]] = {}
    teachers: dict[int, pd.DataFrame] = {}
    if uses_llm(arm):
        signal = qfl.guidance.signal
        for k in range(n_clients):
            path = paths.distill_dir / layout.client_dir(k) / layout.CLIENT_METRICS
            metrics = read_checked_json(path)
            check_shares(metrics, str(path))
            value = metrics.get(signal)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise DataError(f"{path}: {signal} must be a positive number (qfl.guidance.signal), got {value!r}")
            llm_metrics[k] = metrics
            if qfl.distillation.weight > 0:
                teacher = paths.distill_dir / layout.client_dir(k) / layout.TEACHER
                teachers[k] = read_checked_parquet(teacher, ("row", "probs"), TEACHER)
    embeddings = None
    if paths.embeddings is not None:
        embeddings = read_checked_parquet(paths.embeddings, ("split", "row", "embedding"), EMBEDDINGS)
    schedule = None
    if arm == BUDGET_MATCHED:
        if paths.schedule is None:
            raise ConfigError("budget_matched needs --schedule (the llm_guided history.parquet of the same seed)")
        schedule = load_schedule(paths.schedule, clients=list(range(n_clients)))
    return Inputs(meta, data, partitions, llm_metrics, teachers, embeddings, schedule)


def features_of(inputs: Inputs, settings: Settings, embeddings_path: Path | None) -> FeatureSets:
    """The angle features of every client and of the server's sets (``llmqfl.federated.features``)."""
    features = settings.qfl.features
    feature_columns = settings.data.feature_columns or inputs.meta.get("feature_columns") or None
    kind = inputs.meta.get("kind", "text")
    source = resolve_source(features.source, kind=kind, feature_columns=feature_columns)
    if source == "embedding" and inputs.embeddings is None:
        raise ConfigError(
            "text items need the base-LLM embeddings as quantum features: pass --embeddings "
            "results/{exp}/features/embeddings.parquet"
        )
    return build_features(
        source=source,
        fit=features.fit,
        n_qubits=settings.qfl.n_qubits,
        data=inputs.data,
        partitions=inputs.partitions,
        embeddings=inputs.embeddings,
        embeddings_path=embeddings_path or "embeddings.parquet",
        feature_columns=feature_columns,
        k=features.k,
    )


def labels_of(frame: pd.DataFrame, n_classes: int, source: str) -> np.ndarray:
    labels = frame["label"].to_numpy(dtype=np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"{source}: column label must lie in 0..{n_classes - 1}")
    return labels


def _teacher_probs(teacher: pd.DataFrame, rows: np.ndarray, n_classes: int, source: str) -> np.ndarray:
    """The train rows' teacher probabilities, (n_train, C), from a teacher.parquet its file contract has
    checked (every row a distribution: ``read_checked_parquet(..., TEACHER)``)."""
    by_row = dict(zip(teacher["row"].astype(int), teacher["probs"], strict=True))
    missing = [int(r) for r in rows if int(r) not in by_row]
    if missing:
        raise DataError(f"{source}: no teacher probabilities for train row(s) {missing[:5]}")
    probs = np.stack([np.asarray(by_row[int(r)], dtype=np.float64) for r in rows])
    if probs.shape[1] != n_classes:
        raise DataError(f"{source}: probs have {probs.shape[1]} classes, the data have {n_classes}")
    return probs / probs.sum(axis=1, keepdims=True)  # float32 storage: renormalise in float64


def build_client_data(
    inputs: Inputs, features: FeatureSets, settings: Settings, arm: str, paths: RunPaths
) -> list[ClientData]:
    """Each client's features, labels (from train.parquet by row), and LLM outputs for the LLM arm."""
    n_classes = int(inputs.meta["n_classes"])
    train_labels = labels_of(inputs.data["train"].sort_values("row"), n_classes, "train.parquet")
    signal = settings.qfl.guidance.signal
    out = []
    for k, partition in sorted(inputs.partitions.items()):
        split = partition["split"].astype(str).to_numpy()
        rows = partition["row"].to_numpy(dtype=np.int64)
        train_rows, test_rows = rows[split == "train"], rows[split == "test"]
        if len(train_rows) == 0:
            raise DataError(f"{paths.partitions_dir / layout.partition_name(k)}: client {k} has no train items")
        teacher = None
        if k in inputs.teachers:
            source = str(paths.distill_dir / layout.client_dir(k) / layout.TEACHER)
            teacher = _teacher_probs(inputs.teachers[k], train_rows, n_classes, source)
        out.append(
            ClientData(
                client=k,
                train_x=features.clients[k].train,
                train_y=train_labels[train_rows],
                test_x=features.clients[k].test,
                test_y=train_labels[test_rows],
                teacher_probs=teacher,
                llm_loss=float(inputs.llm_metrics[k][signal]) if uses_llm(arm) else math.nan,
            )
        )
    return out
