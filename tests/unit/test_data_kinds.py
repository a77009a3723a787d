"""Data kinds decided explicitly, labels normalised one way, NA-like items kept (llmqfl.data.kinds, csv_source)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmqfl.config import load_settings
from llmqfl.data import load_source
from llmqfl.data.kinds import decide_kind
from llmqfl.data.labelled import class_names, label_name
from llmqfl.data.preflight import check_config_data
from llmqfl.data.prepared import prepare
from llmqfl.errors import ConfigError, DataError
from llmqfl.settings import DataSettings

# 120 distinct plain sequences of 12 bases (seeded)
DNA = ["".join(np.random.default_rng(i).choice(list("ACGT"), 12)) for i in range(120)]


def _csv(tmp_path: Path, items: list[str], labels: list[object]) -> dict[str, object]:
    path = tmp_path / "user.csv"
    pd.DataFrame({"item": items, "y": labels}).to_csv(path, index=False)
    return {"source": "csv", "path": str(path), "item_column": "item", "label_column": "y", "max_items": None,
            "conflicts": "drop"}


def _data(fields: dict[str, object]) -> DataSettings:
    """The ``data`` section of a validated config with ``fields`` set."""
    return load_settings({"data": fields}).data


def test_one_iupac_letter_keeps_dna_and_says_so() -> None:
    # Prepare: one R (A or G) in one of 120 sequences used to turn the data set into text
    items = list(DNA)
    items[7] = "ACGRACGTACGT"
    # Execute
    decision = decide_kind(items)
    # Assert
    assert decision.kind == "dna"
    assert "1 item(s) carry IUPAC ambiguity codes" in decision.reason


def test_a_letter_outside_iupac_in_dna_is_refused_with_letters_and_rows() -> None:
    items = list(DNA)
    items[4], items[9] = "ACGTXCGTACGT", "ACGTACGTAZGT"
    with pytest.raises(DataError, match=r"2 item\(s\) have letters outside .*'X', 'Z' in data row\(s\) 5, 10"):
        decide_kind(items, source="csv:x.csv")
    assert decide_kind(items, setting="text").kind == "text"  # data.kind overrides detection


def test_kind_setting_dna_refuses_text_and_text_wins_over_dna() -> None:
    with pytest.raises(DataError, match="data row"):
        decide_kind(["hello world", "ACGT"], setting="dna")
    assert decide_kind(DNA, setting="text").reason == "data.kind is text"
    assert decide_kind(["BAD", "DAD", "ACGT"]).kind == "text"  # mostly not plain DNA: text


def test_labels_normalised_the_same_with_or_without_text_labels(tmp_path: Path) -> None:
    # "1" and "1.0" are one class whether or not every label is numeric
    assert label_name("1.0") == label_name("1") == label_name(1.0) == label_name(" 01 ") == "1"
    assert label_name("0.50") == "0.5" and label_name("nan") == "nan" and label_name("x") == "x"
    assert class_names(["1", "1.0", "10", "2"]) == ("1", "2", "10")
    assert class_names(["1", "1.0", "x"]) == ("1", "x")
    numeric = load_source(_data(_csv(tmp_path, ["a", "b", "c", "d"], ["1", "1.0", "0", "0.0"])))
    mixed = load_source(_data(_csv(tmp_path, ["a", "b", "c", "d"], ["1", "1.0", "x", "x"])))
    assert numeric.classes == ("0", "1") and mixed.classes == ("1", "x")
    assert mixed.frame["label"].tolist() == [0, 0, 1, 1]


def test_na_like_strings_are_items_unless_named(tmp_path: Path) -> None:
    cfg = _csv(tmp_path, ["NA", "null", "None", "word"], ["a", "b", "a", "b"])
    data = load_source(_data(cfg))
    assert sorted(data.frame["item"]) == ["NA", "None", "null", "word"]
    with pytest.raises(DataError, match="1 empty item"):
        load_source(_data({**cfg, "na_values": ["NA"]}))


def test_meta_records_kind_reason_and_lengths(tmp_path: Path) -> None:
    items = [seq[: 10 + i % 3] for i, seq in enumerate(DNA)]  # 10 to 12 bases
    labels = ["p", "q"] * 60
    config = load_settings({"data": _csv(tmp_path, items, labels)})
    _, meta = prepare(config)
    assert meta["kind"] == "dna" and meta["kind_reason"].startswith("every item is DNA")
    assert meta["lengths"] == {"min": 10, "max": 12, "variable": True}


def test_dna_feature_source_on_text_is_refused_at_check_time(tmp_path: Path) -> None:
    items = [f"item number {i}" for i in range(60)]
    config = load_settings({"data": _csv(tmp_path, items, ["p", "q"] * 30),
                            "qfl": {"features": {"source": "kmer"}}, "federation": {"n_clients": 2}})
    with pytest.raises(ConfigError, match=r"qfl\.features\.source: kmer needs DNA items, but the data are text"):
        check_config_data(config)


def test_variable_length_dna_gets_one_onehot_width_in_every_split() -> None:
    from llmqfl.federated.features import build_features

    # the test split's longest item (14) is longer than train's (12): one width for all, no PCA mismatch
    def frame(items: list[str]) -> pd.DataFrame:
        return pd.DataFrame({"row": range(len(items)), "item": items, "label": [i % 2 for i in range(len(items))]})

    train = frame([seq[: 10 + i % 3] for i, seq in enumerate(DNA[:40])])
    data = {"train": train, "test": frame([s + "AC" for s in DNA[40:50]]), "server_val": frame(DNA[50:60])}
    partition = pd.DataFrame({"row": range(40), "split": ["train"] * 30 + ["test"] * 10})
    sets = build_features(source="onehot", fit="pooled", n_qubits=2, data=data, partitions={0: partition})
    assert sets.server_test.shape == (10, 2) and sets.encoder.pca_.n_features_in_ == 4 * 14
