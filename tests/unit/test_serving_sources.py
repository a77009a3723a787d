"""A saved model finds its raw features through the feature-source registry the run trained with, given the
source context the run recorded (k, item length, feature columns, embeddings), and the qfl stage records that
context from the run's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from llmqfl import registry
from llmqfl.config import load_settings
from llmqfl.data.encoders import AngleEncoder
from llmqfl.errors import DataError
from llmqfl.serving.bundle import Bundle, save_bundle
from llmqfl.serving.item_checks import items_spec
from llmqfl.serving.record import feature_spec, item_length


def _save(folder: Path, raw: np.ndarray, features: dict[str, Any], kind: str, items: list[str] = ()) -> Bundle:
    from llmqfl.quantum import build_model

    model = build_model(kind="vqc", n_qubits=2, n_classes=2)
    return Bundle(save_bundle(folder, model=model, weights=np.zeros(model.n_params), encoder=AngleEncoder(2).fit(raw),
                              class_names=["a", "b"], features=features, items=items_spec(kind, items)))


def test_feature_spec_records_the_sources_context_from_the_settings() -> None:
    settings = load_settings({"experiment": "s", "qfl": {"features": {"k": 4}},
                              "llm": {"model": "tiny-gpt2", "max_length": 32, "kmer": 5}})
    assert feature_spec(settings, "kmer", None, 12) == {"source": "kmer", "k": 4, "length": 12}
    columns = feature_spec(settings, "columns", ("x", "y"))
    assert columns == {"source": "columns", "k": 4, "feature_columns": ["x", "y"]}
    embedding = feature_spec(settings, "embedding", None)["embedding"]
    assert (embedding["model"], embedding["max_length"], embedding["kmer"]) == ("tiny-gpt2", 32, 5)
    assert feature_spec(settings.with_values({"extensions": ("my_ext",)}), "onehot", None)["extensions"] == ["my_ext"]


def test_item_length_is_the_longest_item_of_every_split() -> None:
    splits = [pd.DataFrame({"item": ["ACG", "ACGTAC"]}), pd.DataFrame({"item": ["ACGTACGT"]}),
              pd.DataFrame({"item": pd.Series([], dtype=object)}), pd.DataFrame({"x": [1.0]})]
    assert item_length(splits) == 8
    assert item_length([pd.DataFrame({"x": [1.0]})]) is None


def test_a_registered_source_gets_the_recorded_k_and_length(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: a source that returns its context's k and length beside each item's length
    class ContextEcho:
        dna_only = True

        def raw(self, frame: pd.DataFrame, context: Any) -> np.ndarray:
            assert context.split == "predict" and context.embeddings is None and context.feature_columns is None
            return np.array([[len(s), context.k, context.length] for s in frame["item"]], dtype=float)

    monkeypatch.setitem(registry._ENTRIES["encoder"], "context_echo", ContextEcho)
    items = ["ACGT", "ACGTACGT", "AC"]
    bundle = _save(tmp_path / "model", np.array([[2.0, 4, 9], [4, 4, 9], [8, 4, 9]]),
                   {"source": "context_echo", "k": 4, "length": 9}, "dna", items)
    # Execute + Assert
    assert bundle.raw_features(bundle.frame(items)).tolist() == [[4, 4, 9], [8, 4, 9], [2, 4, 9]]
    assert len(bundle.predict(items)) == 3


def test_a_columns_model_reads_its_columns_through_the_registered_source(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: count the registered columns source's calls
    columns_source = registry.get("encoder", "columns")
    calls = []
    monkeypatch.setattr(columns_source, "raw", lambda self, frame, context: calls.append(context) or
                        frame[list(context.feature_columns)].to_numpy(dtype=np.float64))
    raw = np.array([[0.0, 1.0], [1.0, 0.5], [2.0, 0.0], [3.0, 2.0]])
    bundle = _save(tmp_path / "model", raw, {"source": "columns", "feature_columns": ["x", "y"]}, "columns")
    frame = pd.DataFrame({"y": raw[:, 1], "x": raw[:, 0], "note": list("abcd")})
    # Execute
    features = bundle.raw_features(frame)
    # Assert: the columns, in the recorded order, from the registered source; a missing one is one line
    assert np.array_equal(features, raw) and calls[0].feature_columns == ["x", "y"]
    assert bundle.feature_columns == ["x", "y"]
    with pytest.raises(DataError, match=r"input: missing feature column\(s\) y"):
        bundle.raw_features(frame.drop(columns="y"))


def test_a_text_model_embeds_its_items_and_hands_them_to_the_registered_embedding_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a stand-in base model (item length and vowel count), as the embed stage would have embedded them
    import llmqfl.llm.embeddings as embeddings

    def fake(items: list[str], **kwargs: Any) -> np.ndarray:
        assert kwargs["model"] == "tiny-gpt2" and kwargs["max_length"] == 16
        return np.array([[len(s), sum(c in "aeiou" for c in s)] for s in items], dtype=np.float32)

    monkeypatch.setattr(embeddings, "base_embeddings", fake)
    spec = {"source": "embedding", "embedding": {"model": "tiny-gpt2", "max_length": 16, "kmer": 3,
                                                 "models_root": str(tmp_path)}}
    items = ["a fine film", "dull", "an utterly odd and overlong tale"]
    bundle = _save(tmp_path / "model", fake(items, model="tiny-gpt2", max_length=16), spec, "text")
    # Execute + Assert
    assert np.array_equal(bundle.raw_features(bundle.frame(items)), fake(items, model="tiny-gpt2", max_length=16))
    assert bundle.raw_features(bundle.frame([])).shape == (0, 2)  # nothing to embed: no base model needed
