"""k-mer spectrum quantum features: the counts, fitted on client train items only, deterministic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmqfl.data.encoders import AngleEncoder, kmer_spectrum
from llmqfl.errors import ConfigError
from llmqfl.federated.features import build_features, resolve_source


def _frame(items: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"row": np.arange(len(items)), "item": items, "label": np.arange(len(items)) % 2})


def _dna_data(seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def seqs(n: int) -> list[str]:
        return ["".join(rng.choice(list("ACGT"), size=30)) for _ in range(n)]

    return {"train": _frame(seqs(16)), "test": _frame(seqs(5)), "server_val": _frame(seqs(4))}


def _partitions() -> dict[int, pd.DataFrame]:
    """Two clients of 8 train rows: rows 0-7 and 8-15; the last two of each are local test items."""
    out = {}
    for k in range(2):
        rows = np.arange(8 * k, 8 * (k + 1))
        out[k] = pd.DataFrame({"row": rows, "label": rows % 2, "split": ["train"] * 6 + ["test"] * 2})
    return out


def test_spectrum_counts_overlapping_kmers_and_skips_other_letters() -> None:
    # Execute
    spectrum = kmer_spectrum(["AACGN", "A", "ccc"], k=2)

    # Assert: AA, AC, CG counted (GN skipped), columns in ACGT order; a 1-base item has no 2-mer
    assert spectrum.shape == (3, 16)
    expected = np.zeros(16)
    expected[[0, 1, 6]] = 1 / 3  # AA = 0, AC = 1, CG = 1 * 4 + 2
    np.testing.assert_allclose(spectrum[0], expected)
    assert spectrum[1].sum() == 0
    np.testing.assert_allclose(spectrum[2], np.eye(16)[5])  # CC, lower case read as upper


def test_kmer_source_is_dna_only() -> None:
    assert resolve_source("kmer", kind="dna", feature_columns=None) == "kmer"
    with pytest.raises(ConfigError, match=r"qfl\.features\.source: kmer needs DNA"):
        resolve_source("kmer", kind="text", feature_columns=None)


def test_kmer_features_are_fitted_on_client_train_items_only() -> None:
    # Prepare: the expected encoder sees exactly the clients' train rows
    data, partitions = _dna_data(), _partitions()
    spectrum = kmer_spectrum(data["train"]["item"].tolist(), 3)
    expected = AngleEncoder(3).fit(spectrum[np.r_[0:6, 8:14]])

    # Execute: and again with every non-train item (client test, server_val, test) replaced
    features = build_features(source="kmer", fit="pooled", n_qubits=3, data=data, partitions=partitions, k=3)
    other = {"train": data["train"].copy(), "test": _dna_data(1)["test"], "server_val": _dna_data(2)["server_val"]}
    held = [6, 7, 14, 15]
    other["train"].loc[held, "item"] = _dna_data(3)["train"]["item"].iloc[held].to_numpy()
    changed = build_features(source="kmer", fit="pooled", n_qubits=3, data=other, partitions=partitions, k=3)

    # Assert
    np.testing.assert_allclose(features.clients[1].train, expected.transform(spectrum[8:14]))
    np.testing.assert_allclose(changed.clients[0].train, features.clients[0].train)
    np.testing.assert_allclose(changed.clients[1].train, features.clients[1].train)
    assert not np.allclose(changed.server_test, features.server_test)


def test_kmer_features_are_deterministic_and_depend_on_k() -> None:
    data, partitions = _dna_data(), _partitions()
    first = build_features(source="kmer", fit="client", n_qubits=3, data=data, partitions=partitions, k=2)
    second = build_features(source="kmer", fit="client", n_qubits=3, data=data, partitions=partitions, k=2)
    three = build_features(source="kmer", fit="client", n_qubits=3, data=data, partitions=partitions, k=3)
    for k in partitions:
        np.testing.assert_array_equal(first.clients[k].train, second.clients[k].train)
        np.testing.assert_array_equal(first.clients[k].test, second.clients[k].test)
    assert not np.allclose(first.clients[0].train, three.clients[0].train)


def test_bad_k_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"qfl\.features\.k"):
        build_features(source="kmer", fit="pooled", n_qubits=3, data=_dna_data(), partitions=_partitions(), k=0)
