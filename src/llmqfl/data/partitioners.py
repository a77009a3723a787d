"""Split the server's training pool over federated clients: iid, label skew, or size skew.

Each partitioner maps training labels to one index array per client. Every client must get at
least ``min_size`` items: the quantity partitioner reserves them up front; a label-skewed draw that
starves a client is redrawn a bounded number of times, then fails with a :class:`DataError` that
names ``n_clients`` and ``alpha``.

Each client's local train/test carve keeps a group of related sequences (train.parquet's ``group``
column, :mod:`llmqfl.data.sequence_groups`) on one side; a group whose items went to several
clients stays in train everywhere, so no client's test item is a near-copy of any training item.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from llmqfl.config import derive_seed
from llmqfl.data.split import grouped_holdout
from llmqfl.errors import ConfigError, DataError
from llmqfl.settings import Settings

MIN_CLIENT_ITEMS = 2
MAX_ATTEMPTS = 200


def partition_iid(labels: np.ndarray, *, n_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A random permutation cut into ``n_clients`` nearly equal parts (sizes differ by at most one)."""
    return [np.sort(part) for part in np.array_split(rng.permutation(len(labels)), n_clients)]


def partition_dirichlet(
    labels: np.ndarray, *, n_clients: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Label skew (Hsu et al. 2019): each class is shared out by proportions drawn from Dir(alpha).

    Small ``alpha`` gives each client few classes; large ``alpha`` tends to iid.
    """
    parts: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        cuts = (np.cumsum(rng.dirichlet(np.full(n_clients, alpha))) * len(members)).astype(np.int64)[:-1]
        for k, chunk in enumerate(np.split(members, cuts)):
            parts[k].append(chunk)
    return [np.sort(np.concatenate(chunks)) for chunks in parts]


def partition_quantity(
    labels: np.ndarray, *, n_clients: int, alpha: float, rng: np.random.Generator, min_size: int = MIN_CLIENT_ITEMS
) -> list[np.ndarray]:
    """Size skew (Li et al. 2022, NIID-Bench): client shares of a random permutation drawn from Dir(alpha).

    Every client first gets ``min_size`` items and the rest is shared by the Dirichlet proportions,
    so a small ``alpha`` skews sizes strongly without ever starving a client (no redraws needed).
    """
    order = rng.permutation(len(labels))
    spare = len(labels) - min_size * n_clients
    shares = (np.cumsum(rng.dirichlet(np.full(n_clients, alpha))) * spare).astype(np.int64)
    sizes = np.diff(np.concatenate([[0], shares[:-1], [spare]])) + min_size
    return [np.sort(part) for part in np.split(order, np.cumsum(sizes)[:-1])]


Partitioner = Callable[..., list[np.ndarray]]
PARTITIONERS: dict[str, Partitioner] = {
    "iid": partition_iid,
    "dirichlet": partition_dirichlet,
    "quantity": partition_quantity,
}


def partition_indices(
    labels: np.ndarray, *, kind: str, n_clients: int, alpha: float, seed: int, min_size: int = MIN_CLIENT_ITEMS
) -> list[np.ndarray]:
    """Client index arrays for ``kind``, each with at least ``min_size`` items, drawn with ``seed``."""
    labels = np.asarray(labels)
    if kind not in PARTITIONERS:
        raise ConfigError(f"config error: federation.partition.kind: {kind!r} is not one of: {', '.join(PARTITIONERS)}")
    if n_clients < 1:
        raise ConfigError("config error: federation.n_clients: must be >= 1")
    if len(labels) < min_size * n_clients:
        raise DataError(f"more clients than items: federation.n_clients={n_clients} needs at least "
                        f"{min_size * n_clients} training items ({min_size} each), the training set has {len(labels)}")
    return _draw(labels, kind=kind, n_clients=n_clients, alpha=alpha, seed=seed, min_size=min_size)


def _draw(labels: np.ndarray, *, kind: str, n_clients: int, alpha: float, seed: int, min_size: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    kwargs: dict[str, Any] = {"n_clients": n_clients, "rng": rng}
    if kind != "iid":
        kwargs["alpha"] = alpha
    if kind == "quantity":
        kwargs["min_size"] = min_size
    for _ in range(MAX_ATTEMPTS):
        parts = PARTITIONERS[kind](labels, **kwargs)
        if min(len(p) for p in parts) >= min_size:
            return parts
    raise DataError(f"{kind} partition: no draw in {MAX_ATTEMPTS} gave each of federation.n_clients={n_clients} "
                    f"clients at least {min_size} items (federation.partition.alpha={alpha}, {len(labels)} training "
                    f"items); raise alpha or lower n_clients")


def local_split(
    labels: np.ndarray,
    *,
    test_fraction: float,
    rng: np.random.Generator,
    groups: np.ndarray | None = None,
    eligible: np.ndarray | None = None,
) -> np.ndarray:
    """A client's local test mask: stratified where possible, whole ``groups`` of ``eligible`` items only,
    >= 1 train item, and >= 1 test item (else a :class:`DataError`: every candidate group is too large)."""
    n = len(labels)
    n_test = min(max(round(test_fraction * n), 1), n - 1)
    held = grouped_holdout(labels, n_test, rng, groups=groups, eligible=eligible)
    if not held.any():
        raise DataError(f"a client with {n} items has no test item that shares no group of related sequences "
                        f"(data.leakage) with a training item; raise federation.client_test_fraction or lower "
                        f"federation.n_clients")
    return held


def shared_groups(groups: np.ndarray, parts: list[np.ndarray]) -> np.ndarray:
    """Per training item: True when its group has items on more than one client (so it must stay in train)."""
    owner = np.zeros(len(groups), dtype=np.int64)
    for k, rows in enumerate(parts):
        owner[rows] = k
    ids = np.unique(groups, return_inverse=True)[1].ravel()
    low = np.full(ids.max(initial=-1) + 1, len(parts), dtype=np.int64)
    high = np.full_like(low, -1)
    np.minimum.at(low, ids, owner)
    np.maximum.at(high, ids, owner)
    return (low != high)[ids]


def build_partitions(
    train: pd.DataFrame,
    *,
    kind: str,
    n_clients: int,
    alpha: float,
    client_test_fraction: float,
    root_seed: int,
    n_classes: int,
) -> tuple[list[pd.DataFrame], dict[str, Any]]:
    """Client tables (train.parquet's columns, ``split``) and the ``partitions.json`` summary.

    ``row`` is the item's row in train.parquet; without a ``group`` column each item is its own
    group. Seeds: ``derive_seed(root, "partition")`` for the assignment,
    ``derive_seed(root, "partition", "local_split", k)`` for client k's local split.
    """
    seed = derive_seed(root_seed, "partition")
    labels = train["label"].to_numpy()
    parts = partition_indices(labels, kind=kind, n_clients=n_clients, alpha=alpha, seed=seed)
    groups = train["group"].to_numpy() if "group" in train.columns else np.arange(len(train))
    pinned = shared_groups(groups, parts)
    tables, summaries = [], []
    for k, rows in enumerate(parts):
        table = train.iloc[rows].reset_index(drop=True)
        held = local_split(table["label"].to_numpy(), test_fraction=client_test_fraction,
                           rng=np.random.default_rng(derive_seed(root_seed, "partition", "local_split", k)),
                           groups=groups[rows], eligible=~pinned[rows])
        table["split"] = np.where(held, "test", "train")
        tables.append(table)
        summaries.append({
            "client": k,
            "size": len(table),
            "n_train": int((~held).sum()),
            "n_test": int(held.sum()),
            "label_histogram": np.bincount(table["label"], minlength=n_classes).tolist(),
        })
    summary = {
        "kind": kind,
        "alpha": None if kind == "iid" else alpha,
        "seed": root_seed,
        "partition_seed": seed,
        "n_clients": n_clients,
        "min_client_items": MIN_CLIENT_ITEMS,
        "client_test_fraction": client_test_fraction,
        "items_kept_in_train": int(pinned.sum()),  # their group of related sequences spans clients
        "clients": summaries,
    }
    return tables, summary


def partition_as_configured(
    train: pd.DataFrame, settings: Settings, n_classes: int
) -> tuple[list[pd.DataFrame], dict[str, Any]]:
    """:func:`build_partitions` with the config's federation settings: the partition stage's draw, which
    the cost plan replays without files."""
    federation = settings.federation
    return build_partitions(
        train,
        kind=federation.partition.kind,
        n_clients=federation.n_clients,
        alpha=federation.partition.alpha,
        client_test_fraction=federation.client_test_fraction,
        root_seed=settings.seed,
        n_classes=n_classes,
    )
