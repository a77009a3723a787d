"""Gather the report's inputs from the results tree (eval records, histories, distill metrics, data meta)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from llmqfl import layout
from llmqfl.errors import DataError
from llmqfl.evaluation.history import load_history
from llmqfl.file_contract import DATA_SPLIT, check_shares
from llmqfl.io import read_checked_parquet, read_json


def eval_path(eval_dir: str | Path, arm: str, seed: int) -> Path:
    return Path(eval_dir) / arm / f"{layout.seed_dir(seed)}.json"


def history_path(qfl_dir: str | Path, arm: str, seed: int) -> Path:
    return Path(qfl_dir) / arm / layout.seed_dir(seed) / layout.HISTORY


def load_runs(eval_dir: str | Path, *, arms: Sequence[str], seeds: Sequence[int]) -> dict[str, list[dict[str, Any]]]:
    """Every configured (arm, seed) eval record; a missing or mislabelled one is a DataError."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for arm in arms:
        records = []
        for seed in sorted(seeds):
            path = eval_path(eval_dir, arm, seed)
            if not path.is_file():
                raise DataError(f"eval record not found: {path} (run the evaluate stage first)")
            record = read_json(path)
            if record.get("arm") != arm or record.get("seed") != seed:
                found = f"arm {record.get('arm')!r} seed {record.get('seed')!r}"
                raise DataError(f"{path}: holds {found}, not arm {arm!r} seed {seed}")
            check_shares(record, str(path))  # accuracies and F1 in [0, 1]
            records.append(record)
        runs[arm] = records
    return runs


def load_histories(
    qfl_dir: str | Path | None, *, arms: Sequence[str], seeds: Sequence[int]
) -> dict[tuple[str, int], pd.DataFrame]:
    """Histories for the per-client figures; none when ``qfl_dir`` is None."""
    if qfl_dir is None:
        return {}
    return {(arm, seed): load_history(history_path(qfl_dir, arm, seed)) for arm in arms for seed in sorted(seeds)}


def load_distill(distill_dir: str | Path | None) -> list[dict[str, Any]]:
    """Each client's distill metrics.json, in client order; empty when the LLM stage did not run."""
    if distill_dir is None or not Path(distill_dir).is_dir():
        return []
    found = []
    for path in Path(distill_dir).glob(f"{layout.client_dir('*')}/{layout.CLIENT_METRICS}"):
        match = re.fullmatch(r"client_(\d+)", path.parent.name)
        if match:
            metrics = read_json(path)
            check_shares(metrics, str(path))
            found.append((int(match.group(1)), metrics))
    return [metrics for _, metrics in sorted(found, key=lambda item: item[0])]


def load_data_info(data_dir: str | Path | None) -> tuple[str | None, float | None]:
    """(data kind, majority-class share of the server test set) from the data stage's outputs."""
    if data_dir is None:
        return None, None
    data_dir = Path(data_dir)
    kind = None
    if (data_dir / layout.META).is_file():
        kind = read_json(data_dir / layout.META).get("kind")
    majority = None
    if (data_dir / layout.split_name("test")).is_file():
        labels = read_checked_parquet(data_dir / layout.split_name("test"), ("label",), DATA_SPLIT)["label"]
        if len(labels):
            majority = float(labels.value_counts(normalize=True).max())
    return kind, majority


def load_feature_ceilings(qfl_dir: str | Path | None, *, arms: Sequence[str], seeds: Sequence[int]) -> list[float]:
    """Each replicate's feature ceiling (``accounting.json`` ``references.feature_ceiling``), once per seed."""
    if qfl_dir is None:
        return []
    ceilings: dict[int, float] = {}
    for arm in arms:
        for seed in seeds:
            path = Path(qfl_dir) / arm / layout.seed_dir(seed) / layout.ACCOUNTING
            if seed not in ceilings and path.is_file():
                value = read_json(path).get("references", {}).get("feature_ceiling")
                if isinstance(value, int | float):
                    ceilings[seed] = float(value)
    return [ceilings[s] for s in sorted(ceilings)]
