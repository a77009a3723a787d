"""Client partitioners (iid, label skew, size skew), local splits and their errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmqfl.data import build_partitions, partition_dirichlet, partition_iid, partition_indices, partition_quantity
from llmqfl.data.partitioners import local_split
from llmqfl.errors import DataError

LABELS = np.repeat(np.arange(3), 100)  # 300 items, 3 balanced classes


def _label_skew(parts: list[np.ndarray], labels: np.ndarray) -> float:
    """Mean total-variation distance between each client's label mix and the global one."""
    overall = np.bincount(labels) / len(labels)
    mixes = [np.bincount(labels[p], minlength=len(overall)) / len(p) for p in parts]
    return float(np.mean([0.5 * np.abs(m - overall).sum() for m in mixes]))


def _check_is_partition(parts: list[np.ndarray], n: int) -> None:
    joined = np.concatenate(parts)
    assert len(joined) == n and len(np.unique(joined)) == n


def test_iid_gives_near_equal_sizes() -> None:
    # Execute
    parts = partition_iid(LABELS, n_clients=7, rng=np.random.default_rng(0))
    # Assert
    _check_is_partition(parts, len(LABELS))
    assert {len(p) for p in parts} == {42, 43}
    assert _label_skew(parts, LABELS) < 0.15


def test_dirichlet_skews_labels_more_at_small_alpha() -> None:
    # Execute
    skews = {
        alpha: np.mean([_label_skew(partition_indices(LABELS, kind="dirichlet", n_clients=5, alpha=alpha, seed=s),
                                    LABELS) for s in range(10)])
        for alpha in (0.1, 1.0, 100.0)
    }
    # Assert: small alpha concentrates each client on few classes; large alpha is near iid
    assert skews[0.1] > 0.4 > skews[1.0] > skews[100.0]
    assert skews[100.0] < 0.1
    _check_is_partition(partition_dirichlet(LABELS, n_clients=5, alpha=0.1, rng=np.random.default_rng(0)), 300)


def test_quantity_skews_sizes_not_labels() -> None:
    # Execute
    parts = partition_quantity(LABELS, n_clients=6, alpha=0.3, rng=np.random.default_rng(2))
    # Assert
    _check_is_partition(parts, len(LABELS))
    sizes = sorted(len(p) for p in parts)
    assert sizes[-1] > 3 * sizes[0]
    big = max(parts, key=len)
    assert _label_skew([big], LABELS) < 0.15


@pytest.mark.parametrize("kind", ["iid", "dirichlet", "quantity"])
def test_every_client_gets_at_least_two_items(kind: str) -> None:
    labels = np.arange(60) % 3
    for seed in range(5):
        parts = partition_indices(labels, kind=kind, n_clients=8, alpha=0.5, seed=seed)
        assert min(len(p) for p in parts) >= 2


def test_more_clients_than_items_is_an_error() -> None:
    with pytest.raises(DataError, match=r"more clients than items: federation.n_clients=11 needs at least 22"):
        partition_indices(LABELS[:21], kind="iid", n_clients=11, alpha=0.5, seed=0)


def test_hopeless_label_skew_fails_after_bounded_redraws() -> None:
    # Prepare: tiny alpha, 20 clients, 43 items: each class goes almost whole to one client
    # Execute / Assert
    with pytest.raises(DataError, match=r"dirichlet partition: no draw in \d+ gave each of federation.n_clients=20 "
                                        r"clients at least 2 items \(federation.partition.alpha=0.01"):
        partition_indices(LABELS[::7], kind="dirichlet", n_clients=20, alpha=0.01, seed=0)


def test_quantity_skew_reserves_the_minimum_even_at_tiny_alpha() -> None:
    parts = partition_indices(LABELS[:40], kind="quantity", n_clients=20, alpha=0.01, seed=0)
    _check_is_partition(parts, 40)
    assert min(len(p) for p in parts) == 2


def test_local_split_keeps_a_train_and_a_test_item() -> None:
    rng = np.random.default_rng(0)
    for labels in (np.array([0, 1]), np.array([2, 2, 2]), np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 1])):
        held = local_split(labels, test_fraction=0.9, rng=rng)
        assert 1 <= held.sum() <= len(labels) - 1
    held = local_split(np.array([0] * 10 + [1] * 10), test_fraction=0.2, rng=rng)
    assert np.bincount(np.array([0] * 10 + [1] * 10)[held]).tolist() == [2, 2]


def _train(n: int = 120) -> pd.DataFrame:
    labels = np.arange(n) % 2
    return pd.DataFrame({"row": np.arange(n), "item": [f"item{i}" for i in range(n)], "label": labels})


def test_build_partitions_tables_and_summary() -> None:
    # Prepare
    train = _train()
    # Execute
    tables, summary = build_partitions(train, kind="dirichlet", n_clients=4, alpha=0.5, client_test_fraction=0.25,
                                       root_seed=3, n_classes=2)
    # Assert
    assert summary["kind"] == "dirichlet" and summary["alpha"] == 0.5 and summary["n_clients"] == 4
    assert sorted(np.concatenate([t["row"] for t in tables]).tolist()) == list(range(120))
    for table, client in zip(tables, summary["clients"], strict=True):
        assert list(table.columns) == ["row", "item", "label", "split"]
        assert (table["item"] == train["item"].iloc[table["row"]].to_numpy()).all()
        assert client["size"] == len(table) == client["n_train"] + client["n_test"]
        assert client["n_test"] == (table["split"] == "test").sum() >= 1
        assert client["label_histogram"] == np.bincount(table["label"], minlength=2).tolist()


def test_build_partitions_is_seeded() -> None:
    def run(seed: int) -> list[pd.DataFrame]:
        return build_partitions(_train(), kind="quantity", n_clients=3, alpha=1.0, client_test_fraction=0.2,
                                root_seed=seed, n_classes=2)[0]

    first, again, other = run(0), run(0), run(1)
    for a, b in zip(first, again, strict=True):
        pd.testing.assert_frame_equal(a, b)
    assert any(not a["row"].equals(b["row"]) for a, b in zip(first, other, strict=True))
