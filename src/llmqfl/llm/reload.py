"""A fine-tuned teacher rebuilt from its adapter folder alone, and its class probabilities for new items.

Why a helper and not ``PeftModel.from_pretrained(base, folder)`` alone: a DNA adapter (``llm.dna_tokens``
kmer or frames) trains k-mer tokens added after the base model's vocabulary, so the base model must first be
grown to the vocabulary the adapter was trained with (``adapter_config.json``'s ``trainable_token_indices``),
or peft fails on the token rows it cannot place; the base model needs the training's classes, pad token and
pooling (``llm.pooling`` mean replaces the encoder's pooler); and DNA items become token ids by the training's
scheme, not by the tokenizer. The adapter's manifest (``llmqfl-digest.json``, written with the adapter)
records all of it, with every file's digest: an edited or truncated adapter is one line naming the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from llmqfl.errors import DataError
from llmqfl.integrity import MANIFEST, check_manifest
from llmqfl.llm import finetune, token_inputs
from llmqfl.llm.model_assets import DEFAULT_MODELS_ROOT
from llmqfl.llm.modeling import Classifier, build_classifier

BATCH = 64


def load_adapter(folder: str | Path, *, models_root: str | Path = DEFAULT_MODELS_ROOT) -> Classifier:
    """The classifier saved in ``folder`` (a distill adapter), its files checked against their digests."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: adapter folder not found")
    manifest = check_manifest(folder, required=False)
    recipe = (manifest or {}).get("llmqfl")
    if not recipe:
        raise DataError(f"{folder}: no llmqfl recipe ({MANIFEST}): saved by an older llmqfl or elsewhere; "
                        "reload it with peft as the README shows")
    if recipe["peft"] == "full":
        raise DataError(f"{folder}: a full fine-tuning saves the whole model: "
                        "AutoModelForSequenceClassification.from_pretrained(folder) loads it")
    dna_tokens = recipe.get("dna_tokens")
    classifier = build_classifier(model=recipe["model"], n_classes=int(recipe["n_classes"]), peft=recipe["peft"],
                                  init_seed=int(recipe["init_seed"]), init_adapter=folder, models_root=models_root,
                                  dna_tokens=tuple(dna_tokens) if dna_tokens else None, pooling=recipe["pooling"])
    classifier.recipe = dict(recipe)
    classifier.model.eval()
    return classifier


def predict_proba(classifier: Classifier, items: Sequence[str], *, batch_size: int = BATCH) -> np.ndarray:
    """Class probabilities (items x classes, the recipe's ``classes`` order) of raw items (DNA or text)."""
    recipe = classifier.recipe
    scheme, k = recipe.get("dna_tokens") or ("overlap", int(recipe.get("kmer", 3)))
    features = token_inputs.encode_items(classifier.tokenizer, [str(i) for i in items], None, kind=recipe["kind"],
                                         scheme=scheme, k=int(k), max_length=int(recipe["max_length"]),
                                         vocab=classifier.dna_vocab)
    batches, order = token_inputs.length_sorted_loader(features, classifier.tokenizer, batch_size=batch_size)
    return finetune.softmax(finetune.predict(classifier.model, batches, order).logits)
