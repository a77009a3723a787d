"""Raw feature sources (``llmqfl.registry`` kind ``encoder``): what each item is before PCA to angles.

Each is a small class whose ``raw(frame, context)`` returns the raw matrix of one data split (row i
= the item with ``row == i``); ``qfl.features.source`` names one (``auto`` picks by data kind, see
``federated/features.py``). ``dna_only`` sources refuse text items. The built-ins:

* ``onehot`` (DNA): the one-hot encoding of each sequence (``llmqfl.data.encoders.onehot``);
* ``kmer`` (DNA): each sequence's overlapping k-mer frequencies, k = ``qfl.features.k``;
* ``embedding`` (text): the base LLM's mean-pooled embedding of each item (``--embeddings``);
* ``columns`` (``data.feature_columns``): those numeric columns of the data files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from llmqfl.errors import ConfigError, DataError
from llmqfl.registry import register


@dataclass(frozen=True)
class SourceContext:
    """What a source may need besides the split's data frame."""

    split: str
    embeddings: pd.DataFrame | None = None
    embeddings_path: Path = Path("embeddings.parquet")
    feature_columns: Sequence[str] | None = None
    k: int = 3
    length: int | None = None  # the longest item of every split: one-hot pads each item to it (one width)


@runtime_checkable
class FeatureSource(Protocol):
    """``raw(frame, context)``: the (n_items, n_dims) raw features of one split, rows in ``row`` order."""

    dna_only: bool

    def raw(self, frame: pd.DataFrame, context: SourceContext) -> np.ndarray: ...


def _items(frame: pd.DataFrame) -> list[str]:
    return frame["item"].astype(str).tolist()


@register("encoder", "onehot")
class OneHot:
    dna_only = True

    def raw(self, frame: pd.DataFrame, context: SourceContext) -> np.ndarray:
        from llmqfl.data.encoders import onehot

        return np.asarray(onehot(_items(frame), length=context.length), dtype=np.float64)


@register("encoder", "kmer")
class KmerSpectrum:
    dna_only = True

    def raw(self, frame: pd.DataFrame, context: SourceContext) -> np.ndarray:
        from llmqfl.data.encoders import kmer_spectrum

        if not 1 <= context.k <= 8:
            raise ConfigError(f"config error: qfl.features.k: {context.k} must be 1..8")
        return kmer_spectrum(_items(frame), context.k)


@register("encoder", "columns")
class Columns:
    dna_only = False

    def raw(self, frame: pd.DataFrame, context: SourceContext) -> np.ndarray:
        columns = list(context.feature_columns or ())
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(f"data split {context.split}: feature column(s) {missing} missing")
        values = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            raise DataError(
                f"data split {context.split}: feature columns {columns} have non-numeric or missing values"
            )
        return values


@register("encoder", "embedding")
class Embedding:
    dna_only = False

    def raw(self, frame: pd.DataFrame, context: SourceContext) -> np.ndarray:
        embeddings, path, split = context.embeddings, context.embeddings_path, context.split
        if embeddings is None:
            raise DataError(f"text features need the base-LLM embeddings file {path} (pass --embeddings)")
        missing_cols = {"split", "row", "embedding"} - set(embeddings.columns)
        if missing_cols:
            raise DataError(f"{path}: missing column(s) {sorted(missing_cols)}")
        part = embeddings[embeddings["split"] == split]
        by_row = dict(zip(part["row"].astype(int), part["embedding"], strict=True))
        n_rows = len(frame)
        absent = [r for r in range(n_rows) if r not in by_row]
        if absent:
            raise DataError(f"{path}: split {split}: no embedding for {len(absent)} row(s), e.g. row {absent[0]}")
        vectors = [np.asarray(by_row[r], dtype=np.float64) for r in range(n_rows)]
        if len({v.shape for v in vectors}) != 1:
            raise DataError(f"{path}: split {split}: embeddings of different lengths")
        return np.stack(vectors) if vectors else np.zeros((0, 0))
