"""Quantum input features per client and for the server's sets (never random: D10 in ``docs/differences.md``).

Raw features by source (``qfl.features.source``; ``auto`` picks by data kind; each source is a
registered class in :mod:`llmqfl.federated.feature_sources`, and an extension may add one):

* ``onehot`` (DNA): the one-hot encoding of each sequence (``llmqfl.data.encoders.onehot``);
* ``kmer`` (DNA): each sequence's overlapping k-mer frequencies, k = ``qfl.features.k``
  (``llmqfl.data.encoders.kmer_spectrum``): codon usage, which one-hot PCA does not keep
  (docs/teacher.md has the measured comparison);
* ``embedding`` (text): the BASE LLM's mean-pooled embedding of each item, read from
  ``results/{exp}/features/embeddings.parquet`` (columns ``split``, ``row``, ``embedding``);
* ``columns`` (``data.feature_columns``): those numeric columns of the data files.

Then an :class:`~llmqfl.data.encoders.AngleEncoder` (PCA to ``n_qubits`` components, scaled to
angles in [0, pi]). Where it is fitted (``qfl.features.fit``):

* ``pooled`` (default; what the paper does, minus its test-set leakage, D14): one encoder fitted
  on the union of all clients' TRAIN items transforms every client's items and the server's sets;
* ``client``: each client fits its own encoder on its own train items and transforms its own train
  and test items (no client shares data statistics). The server has no train items of its own, so
  its ``server_val`` and test sets are transformed by the pooled encoder; the global model then
  meets slightly different feature maps on the clients and on the server, which is the real cost
  of client-local preprocessing;
* ``server``: one encoder fitted on the server's own ``server_val`` items (no labels) transforms
  every set. It needs no client's items, so it is what sites that keep their data use over Flower
  (``docs/federation.md``): the coordinator fits it and sends every site the fitted parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmqfl.errors import ConfigError, DataError
from llmqfl.federated.feature_sources import SourceContext
from llmqfl.registry import get, names

AUTO_DNA = "onehot"  # what ``auto`` picks for DNA
FITS = ("pooled", "client", "server")


@dataclass(frozen=True)
class ClientFeatures:
    train: np.ndarray  # (n_train, n_qubits), rows in the partition file's order
    test: np.ndarray


@dataclass(frozen=True)
class FeatureSets:
    """Angles for every client and for the server's ``server_val`` and test sets."""

    clients: dict[int, ClientFeatures]
    server_val: np.ndarray
    server_test: np.ndarray
    source: str
    fit: str
    encoder: Any = None  # the fitted AngleEncoder of the server sets (pooled, or server_val's; a saved model's)


def resolve_source(source: str, *, kind: str, feature_columns: Sequence[str] | None) -> str:
    """``auto`` -> ``columns`` when feature columns are configured, else ``onehot`` (DNA) or ``embedding`` (text)."""
    known = ("auto", *names("encoder"))
    if source not in known:
        raise ConfigError(f"config error: qfl.features.source: {source!r} is not one of: {', '.join(known)}")
    if source != "auto":
        if source == "columns" and not feature_columns:
            raise ConfigError("config error: qfl.features.source: columns needs data.feature_columns")
        if get("encoder", source).dna_only and kind != "dna":
            raise ConfigError(f"config error: qfl.features.source: {source} needs DNA items, the data are {kind}")
        return source
    if feature_columns:
        return "columns"
    return AUTO_DNA if kind == "dna" else "embedding"


def build_features(
    *,
    source: str,
    fit: str,
    n_qubits: int,
    data: Mapping[str, pd.DataFrame],
    partitions: Mapping[int, pd.DataFrame],
    embeddings: pd.DataFrame | None = None,
    embeddings_path: str | Path = "embeddings.parquet",
    feature_columns: Sequence[str] | None = None,
    k: int = 3,
) -> FeatureSets:
    """Raw features -> angle features. ``data`` maps split (train, test, server_val) -> data frame.

    ``source`` is already resolved (see :func:`resolve_source`). Raises :class:`ConfigError` when
    ``n_qubits`` components cannot be had, :class:`DataError` when an item has no raw feature.
    """
    if fit not in FITS:
        raise ConfigError(f"config error: qfl.features.fit: {fit!r} is not one of: {', '.join(FITS)}")
    if source == "auto" or source not in names("encoder"):
        raise ConfigError(f"config error: qfl.features.source: unresolved source {source!r}")
    if n_qubits < 1:
        raise ConfigError(f"config error: qfl.n_qubits: must be >= 1, got {n_qubits}")
    if not partitions:
        raise DataError("no client partitions")
    for split in ("train", "test", "server_val"):
        if split not in data:
            raise DataError(f"missing data split {split}")
    if source == "embedding" and embeddings is None:
        raise DataError(f"text features need the base-LLM embeddings file {embeddings_path} (pass --embeddings)")
    # variable-length items: every split pads to the longest item of all, so one encoder fits them all
    length = max((int(frame["item"].astype(str).str.len().max()) for frame in data.values()
                  if "item" in frame.columns and len(frame)), default=0)
    raw = {
        split: _raw(source, frame, split, embeddings, Path(embeddings_path), feature_columns, k, length)
        for split, frame in data.items()
    }
    return _build(raw, partitions, fit=fit, n_qubits=n_qubits, source=source)


def _raw(
    source: str,
    frame: pd.DataFrame,
    split: str,
    embeddings: pd.DataFrame | None,
    embeddings_path: Path,
    feature_columns: Sequence[str] | None,
    k: int = 3,
    length: int | None = None,
) -> np.ndarray:
    """The raw feature matrix of one data split, row i = the item with ``row == i``."""
    frame = frame.sort_values("row", kind="stable")
    if not np.array_equal(frame["row"].to_numpy(), np.arange(len(frame))):
        raise DataError(f"data split {split}: column row must be 0..n-1")
    context = SourceContext(split, embeddings, Path(embeddings_path), feature_columns, k, length or None)
    return get("encoder", source)().raw(frame, context)


def _client_rows(partition: pd.DataFrame, client: int, n_train_rows: int) -> tuple[np.ndarray, np.ndarray]:
    rows = partition["row"].to_numpy(dtype=np.int64)
    if len(rows) and (rows.min() < 0 or rows.max() >= n_train_rows):
        raise DataError(f"partition client_{client}: column row points outside train.parquet")
    split = partition["split"].astype(str).to_numpy()
    return rows[split == "train"], rows[split == "test"]


def _check_components(n_qubits: int, matrix: np.ndarray, what: str) -> None:
    n_items, n_dims = matrix.shape
    if n_qubits > min(n_items, n_dims):
        raise ConfigError(
            f"config error: qfl.n_qubits: PCA to {n_qubits} components needs n_qubits <= min(items, dims) = "
            f"min({n_items}, {n_dims}) for {what}"
        )


def _fit(matrix: np.ndarray, n_qubits: int):
    from llmqfl.data.encoders import AngleEncoder

    return AngleEncoder(n_components=n_qubits).fit(matrix)


def _build(
    raw: Mapping[str, np.ndarray], partitions: Mapping[int, pd.DataFrame], *, fit: str, n_qubits: int, source: str
) -> FeatureSets:
    train_matrix = raw["train"]
    indices = {k: _client_rows(p, k, len(train_matrix)) for k, p in sorted(partitions.items())}
    pooled_rows = np.concatenate([train_rows for train_rows, _ in indices.values()])
    pooled_matrix = train_matrix[pooled_rows]
    _check_components(n_qubits, pooled_matrix, "the pooled client train items")
    if fit == "client":
        for k, (train_rows, _) in indices.items():
            _check_components(n_qubits, train_matrix[train_rows], f"client {k}'s train items (qfl.features.fit=client)")
    if fit == "server":
        _check_components(n_qubits, raw["server_val"], "the server_val items (qfl.features.fit=server)")
    pooled = _fit(raw["server_val"] if fit == "server" else pooled_matrix, n_qubits)
    clients: dict[int, ClientFeatures] = {}
    for k, (train_rows, test_rows) in indices.items():
        encoder = _fit(train_matrix[train_rows], n_qubits) if fit == "client" else pooled
        clients[k] = ClientFeatures(
            train=_transform(encoder, train_matrix[train_rows], n_qubits),
            test=_transform(encoder, train_matrix[test_rows], n_qubits),
        )
    return FeatureSets(
        clients=clients,
        server_val=_transform(pooled, raw["server_val"], n_qubits),
        server_test=_transform(pooled, raw["test"], n_qubits),
        source=source,
        fit=fit,
        encoder=pooled,
    )


def _transform(encoder, matrix: np.ndarray, n_qubits: int) -> np.ndarray:
    if len(matrix) == 0:
        return np.zeros((0, n_qubits))
    return np.asarray(encoder.transform(matrix), dtype=np.float64)
