"""Inputs of the qfl stage run in process: a small DNA data set, its partitions, a config and argv builders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmqfl.federated.accounting import TIMING_COLUMNS

N_CLIENTS, PER_CLIENT, LENGTH = 3, 12, 8
ROOT = Path(__file__).resolve().parents[1]


def _dna(rng: np.random.Generator, label: int) -> str:
    """Class 1 is GC-rich, class 0 AT-rich: one-hot + PCA can see it."""
    weights = [0.1, 0.4, 0.4, 0.1] if label else [0.4, 0.1, 0.1, 0.4]
    return "".join(rng.choice(list("ACGT"), size=LENGTH, p=weights))


def _split(rng: np.random.Generator, n: int) -> pd.DataFrame:
    labels = np.arange(n) % 2
    return pd.DataFrame({"row": np.arange(n), "item": [_dna(rng, int(y)) for y in labels], "label": labels})


def make_results(tmp_path: Path) -> Path:
    """Write results/tiny/{data, partitions, distill} under ``tmp_path``; its path."""
    rng = np.random.default_rng(0)
    base = tmp_path / "results" / "tiny"
    data_dir, part_dir, distill_dir = base / "data", base / "partitions", base / "distill"
    for folder in (data_dir, part_dir, distill_dir):
        folder.mkdir(parents=True)
    splits = {"train": _split(rng, N_CLIENTS * PER_CLIENT), "test": _split(rng, 8), "server_val": _split(rng, 6)}
    for name, frame in splits.items():
        frame.to_parquet(data_dir / f"{name}.parquet", index=False)
    counts = {name: {"total": len(f)} for name, f in splits.items()}
    meta = {"source": "csv", "kind": "dna", "classes": ["at", "gc"], "n_classes": 2, "counts": counts, "seed": 0}
    (data_dir / "meta.json").write_text(json.dumps(meta))
    clients = []
    for k in range(N_CLIENTS):
        part = splits["train"].iloc[k * PER_CLIENT : (k + 1) * PER_CLIENT].copy()
        part["split"] = ["test" if i % 4 == 3 else "train" for i in range(PER_CLIENT)]
        part.to_parquet(part_dir / f"client_{k}.parquet", index=False)
        clients.append({"client": k, "size": PER_CLIENT, "n_train": 9, "n_test": 3})
        probs = np.where(np.eye(2)[part["label"].to_numpy()] > 0, 0.8, 0.2)
        teacher = pd.DataFrame({"row": part["row"], "probs": list(probs)})
        (distill_dir / f"client_{k}").mkdir()
        teacher.to_parquet(distill_dir / f"client_{k}" / "teacher.parquet", index=False)
        metrics = {"train_loss": 0.2, "eval_loss": 0.25 + 0.05 * k, "eval_accuracy": 0.9, "eval_f1": 0.9}
        (distill_dir / f"client_{k}" / "metrics.json").write_text(json.dumps(metrics))
    summary = {"kind": "iid", "alpha": 0.5, "seed": 0, "n_clients": N_CLIENTS, "clients": clients}
    (part_dir / "partitions.json").write_text(json.dumps(summary))
    return base


def _config(**qfl: Any) -> dict[str, Any]:
    base_qfl = {
        "n_qubits": 3,
        "ansatz_reps": 1,
        "optimizer": {"maxiter": 2, "max_maxiter": 6},
        "guidance": {"rule": "adaptive"},
        "distillation": {"weight": 0.5},
    }
    return {
        "experiment": "tiny",
        "seed": 3,
        "federation": {"n_clients": N_CLIENTS, "rounds": 2, "selection": {"kind": "all"}},
        "qfl": {**base_qfl, **qfl},
    }


def _argv(results: Path, arm: str, config: dict[str, Any], *extra: str, out: str | None = None) -> list[str]:
    out_dir = out or str(results / "qfl" / arm / "seed_0")
    return [
        "--config", json.dumps(config), "--arm", arm, "--seed", "0",
        "--data-dir", str(results / "data"), "--partitions-dir", str(results / "partitions"),
        "--distill-dir", str(results / "distill"), "--out-dir", out_dir, *extra,
    ]  # fmt: skip


def _history(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path).drop(columns=list(TIMING_COLUMNS))
