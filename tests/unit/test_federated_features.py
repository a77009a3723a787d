"""Quantum features: one-hot / embedding / column sources, pooled vs client-local angle encoders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmqfl.data.encoders import AngleEncoder, onehot
from llmqfl.errors import ConfigError, DataError
from llmqfl.federated.features import build_features, resolve_source


def _frame(items: list[str], **columns: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"row": np.arange(len(items)), "item": items, "label": np.arange(len(items)) % 2, **columns})


def _dna_data(seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def seqs(n: int) -> list[str]:
        return ["".join(rng.choice(list("ACGT"), size=10)) for _ in range(n)]

    return {"train": _frame(seqs(16)), "test": _frame(seqs(5)), "server_val": _frame(seqs(4))}


def _partitions() -> dict[int, pd.DataFrame]:
    """Two clients of 8 train rows each: rows 0-7 and 8-15; the last two of each are local test."""
    out = {}
    for k in range(2):
        rows = np.arange(8 * k, 8 * (k + 1))
        out[k] = pd.DataFrame({"row": rows, "label": rows % 2, "split": ["train"] * 6 + ["test"] * 2})
    return out


def test_resolve_source_by_kind_and_columns() -> None:
    assert resolve_source("auto", kind="dna", feature_columns=None) == "onehot"
    assert resolve_source("auto", kind="text", feature_columns=None) == "embedding"
    assert resolve_source("auto", kind="text", feature_columns=["a"]) == "columns"
    with pytest.raises(ConfigError, match=r"qfl\.features\.source"):
        resolve_source("onehot", kind="text", feature_columns=None)
    with pytest.raises(ConfigError, match="feature_columns"):
        resolve_source("columns", kind="dna", feature_columns=None)


def test_pooled_fit_uses_every_client_train_item_and_only_those() -> None:
    # Prepare
    data, partitions = _dna_data(), _partitions()
    train_rows = np.r_[0:6, 8:14]
    encoder = AngleEncoder(3).fit(onehot(data["train"]["item"].tolist())[train_rows])
    # Execute
    features = build_features(source="onehot", fit="pooled", n_qubits=3, data=data, partitions=partitions)
    # Assert
    matrix = onehot(data["train"]["item"].tolist())
    np.testing.assert_allclose(features.clients[1].train, encoder.transform(matrix[8:14]))
    np.testing.assert_allclose(features.clients[0].test, encoder.transform(matrix[6:8]))
    np.testing.assert_allclose(features.server_val, encoder.transform(onehot(data["server_val"]["item"].tolist())))
    np.testing.assert_allclose(features.server_test, encoder.transform(onehot(data["test"]["item"].tolist())))
    pooled_train = np.vstack([features.clients[0].train, features.clients[1].train])
    np.testing.assert_allclose(pooled_train.min(axis=0), 0.0)
    np.testing.assert_allclose(pooled_train.max(axis=0), np.pi)


def test_server_fit_uses_only_the_server_val_items() -> None:
    # Prepare: the encoder sites that keep their data agree on, fitted on the server's own items
    data, partitions = _dna_data(), _partitions()
    encoder = AngleEncoder(3).fit(onehot(data["server_val"]["item"].tolist()))
    # Execute
    features = build_features(source="onehot", fit="server", n_qubits=3, data=data, partitions=partitions)
    changed = {**data, "train": data["train"].assign(item=data["train"]["item"].str[::-1])}
    other = build_features(source="onehot", fit="server", n_qubits=3, data=changed, partitions=partitions)
    # Assert: every set through that one encoder; the clients' items change nothing of it
    matrix = onehot(data["train"]["item"].tolist())
    np.testing.assert_allclose(features.clients[1].train, encoder.transform(matrix[8:14]), rtol=0, atol=0)
    np.testing.assert_allclose(features.server_test, encoder.transform(onehot(data["test"]["item"].tolist())))
    np.testing.assert_allclose(other.server_val, features.server_val, rtol=0, atol=0)
    np.testing.assert_allclose(features.server_val.min(axis=0), 0.0)


def test_client_fit_scales_each_client_on_its_own_items() -> None:
    # Prepare
    data, partitions = _dna_data(), _partitions()
    # Execute
    features = build_features(source="onehot", fit="client", n_qubits=3, data=data, partitions=partitions)
    pooled = build_features(source="onehot", fit="pooled", n_qubits=3, data=data, partitions=partitions)
    # Assert: each client's own train items span [0, pi]; the server sets use the pooled encoder
    for k in (0, 1):
        np.testing.assert_allclose(features.clients[k].train.min(axis=0), 0.0)
        np.testing.assert_allclose(features.clients[k].train.max(axis=0), np.pi)
    assert not np.allclose(features.clients[0].train, pooled.clients[0].train)
    np.testing.assert_allclose(features.server_val, pooled.server_val)


def test_embedding_source_reads_rows_by_split_and_names_the_file_when_one_is_missing() -> None:
    # Prepare
    data = {"train": _frame(["t"] * 16), "test": _frame(["t"] * 5), "server_val": _frame(["t"] * 4)}
    rng = np.random.default_rng(1)
    sizes = (("train", 16), ("test", 5), ("server_val", 4))
    rows = [(split, r, list(rng.normal(size=6))) for split, n in sizes for r in range(n)]
    embeddings = pd.DataFrame(rows, columns=["split", "row", "embedding"]).sample(frac=1.0, random_state=0)
    # Execute
    features = build_features(
        source="embedding", fit="pooled", n_qubits=4, data=data, partitions=_partitions(), embeddings=embeddings
    )
    # Assert
    by_key = {(s, r): np.array(e) for s, r, e in rows}
    train_matrix = np.stack([by_key[("train", r)] for r in range(16)])
    encoder = AngleEncoder(4).fit(train_matrix[np.r_[0:6, 8:14]])
    np.testing.assert_allclose(features.clients[0].train, encoder.transform(train_matrix[0:6]))
    server_matrix = np.stack([by_key[("server_val", r)] for r in range(4)])
    np.testing.assert_allclose(features.server_val, encoder.transform(server_matrix))
    with pytest.raises(DataError, match=r"emb\.parquet: split test: no embedding"):
        build_features(
            source="embedding", fit="pooled", n_qubits=4, data=data, partitions=_partitions(),
            embeddings=embeddings[~((embeddings["split"] == "test") & (embeddings["row"] == 2))],
            embeddings_path="emb.parquet",
        )  # fmt: skip
    with pytest.raises(DataError, match="--embeddings"):
        build_features(source="embedding", fit="pooled", n_qubits=4, data=data, partitions=_partitions())


def test_column_source_uses_the_named_columns() -> None:
    # Prepare
    rng = np.random.default_rng(2)
    data = {
        split: _frame(["x"] * n, a=list(rng.normal(size=n)), b=list(rng.normal(size=n)), c=list(rng.normal(size=n)))
        for split, n in (("train", 16), ("test", 5), ("server_val", 4))
    }
    # Execute
    features = build_features(
        source="columns", fit="pooled", n_qubits=2, data=data, partitions=_partitions(), feature_columns=["a", "b"]
    )
    # Assert
    matrix = data["train"][["a", "b"]].to_numpy()
    encoder = AngleEncoder(2).fit(matrix[np.r_[0:6, 8:14]])
    np.testing.assert_allclose(features.clients[1].test, encoder.transform(matrix[14:16]))
    with pytest.raises(DataError, match="feature column"):
        build_features(
            source="columns", fit="pooled", n_qubits=2, data=data, partitions=_partitions(), feature_columns=["z"]
        )


def test_impossible_number_of_components_is_a_config_error() -> None:
    data, partitions = _dna_data(), _partitions()
    with pytest.raises(ConfigError, match=r"qfl.n_qubits: .*min\(12, 40\)"):
        build_features(source="onehot", fit="pooled", n_qubits=13, data=data, partitions=partitions)
    with pytest.raises(ConfigError, match="client 0"):
        build_features(source="onehot", fit="client", n_qubits=7, data=data, partitions=partitions)
    bad = {0: partitions[0].assign(row=partitions[0]["row"] + 100)}
    with pytest.raises(DataError, match=r"outside train\.parquet"):
        build_features(source="onehot", fit="pooled", n_qubits=2, data=data, partitions=bad)
