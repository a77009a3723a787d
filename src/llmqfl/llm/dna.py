"""DNA as model tokens: the paper's overlapping k-mers as text, or k-mers added to the vocabulary.

Why: through a word-piece or BPE tokenizer, overlapping 6-mers cost ~3.3 tokens per base, so at
128 tokens a model sees ~40 of a 200 bp window and learns nothing (eval loss ln 2 on the default).
The ``kmer`` and ``frames`` schemes give every k-mer one new token id of its own, appended after
the model's vocabulary, so a 200 bp window is ceil(200 / k) tokens (67 for k = 3) and the whole
window fits. Their embedding rows start from a seeded draw that matches the pretrained rows'
per-dimension mean and spread, and are trained through peft's ``trainable_token_indices`` (only
those rows are trained and saved with the adapter).

Schemes (``llm.dna_tokens``, k = ``llm.kmer``):

* ``overlap``: overlapping k-mers (stride 1) joined by spaces, through the model's own tokenizer
  (the paper's set-up);
* ``kmer``: non-overlapping k-mers from the first base; a shorter last chunk has its own token;
* ``frames``: the ``kmer`` tokens of all k reading frames (frame f starts at base f), frames
  separated by a new separator token, so every overlapping k-mer occurs once.

A chunk with a letter other than A/C/G/T becomes the new ``N`` token.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llmqfl.errors import ConfigError
from llmqfl.settings import LlmSettings

SCHEMES = ("overlap", "kmer", "frames")
ADDED_SCHEMES = ("kmer", "frames")
log = logging.getLogger(__name__)
BASES = "ACGT"
TRAINABLE_TOKENS = "trainable_tokens_delta"  # peft's parameter name for the trained rows


@dataclass(frozen=True)
class DnaVocab:
    """The added tokens: every A/C/G/T string of length 1..k, then ``N``, then the frame separator."""

    k: int
    offset: int  # id of the first added token: the model's vocabulary size

    @property
    def words(self) -> list[str]:
        return [*("".join(p) for n in range(1, self.k + 1) for p in itertools.product(BASES, repeat=n)), "N", "|"]

    @property
    def size(self) -> int:
        return sum(4**n for n in range(1, self.k + 1)) + 2

    @property
    def ids(self) -> list[int]:
        return list(range(self.offset, self.offset + self.size))

    def chunk_id(self, chunk: str) -> int:
        """The id of one chunk of 1..k bases."""
        index = 0
        for base in chunk:
            code = BASES.find(base)
            if code < 0:
                return self.offset + self.size - 2  # N
            index = index * 4 + code
        # strings of length n start after all shorter ones: 4 + 16 + ... + 4^(n-1)
        return self.offset + sum(4**n for n in range(1, len(chunk))) + index

    @property
    def separator_id(self) -> int:
        return self.offset + self.size - 1


def settings(llm: LlmSettings) -> tuple[str, int]:
    """(scheme, k) from the ``llm`` section (``llm.dna_tokens``, ``llm.kmer``)."""
    scheme, k = str(llm.dna_tokens), int(llm.kmer)
    check_scheme(scheme, k)
    return scheme, k


def token_learning_rates(llm: LlmSettings, vocab: DnaVocab | None) -> dict[str, float]:
    """The added token rows' own learning rate (``llm.token_learning_rate``), when set and in use."""
    rate = llm.token_learning_rate
    if vocab is None or rate is None:
        return {}
    return {TRAINABLE_TOKENS: float(rate)}


def check_scheme(scheme: str, k: int) -> None:
    if scheme not in SCHEMES:
        raise ConfigError(f"config error: llm.dna_tokens: {scheme!r} is not one of: {', '.join(SCHEMES)}")
    if k < 1 or (scheme in ADDED_SCHEMES and k > 6):
        raise ConfigError(f"config error: llm.kmer: {k} must be 1..6 for dna_tokens {scheme} (4^k new tokens)")


def vocab_offset(tokenizer: Any, config: Any) -> int:
    """Where the added ids start: past both the tokenizer's and the embedding matrix's vocabulary."""
    return max(len(tokenizer), int(getattr(config, "vocab_size", 0) or 0))


def chunk_ids(sequence: str, vocab: DnaVocab, *, scheme: str) -> list[int]:
    """The DNA token ids of one sequence (no special tokens)."""
    sequence = sequence.strip().upper()
    k = vocab.k
    frames = range(k) if scheme == "frames" else range(1)
    ids: list[int] = []
    for f in frames:
        if f and len(sequence) > f:
            ids.append(vocab.separator_id)
        ids.extend(vocab.chunk_id(sequence[i : i + k]) for i in range(f, len(sequence), k))
    return ids


def n_dna_tokens(length: int, *, scheme: str, k: int) -> int:
    """How many DNA tokens a ``length`` bp sequence becomes (separators included)."""
    if scheme == "kmer":
        return -(-length // k)
    if scheme == "frames":
        used = [f for f in range(k) if length > f]
        return sum(-(-(length - f) // k) for f in used) + max(len(used) - 1, 0)
    raise ValueError(f"n_dna_tokens: scheme {scheme!r} has no fixed count (it goes through the tokenizer)")


def special_frame(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special ids the tokenizer puts before and after a text ([CLS] ... [SEP], <bos> ..., or nothing)."""
    plain = tokenizer("A", add_special_tokens=False)["input_ids"]
    full = tokenizer("A", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start]), list(full[start + len(plain):])
    return [], []


def encode_added(tokenizer: Any, sequences: Sequence[str], vocab: DnaVocab, *, scheme: str,
                 max_length: int) -> dict[str, list[list[int]]]:
    """Token ids and attention masks like a tokenizer's output; DNA cut to fit ``max_length`` with specials."""
    before, after = special_frame(tokenizer)
    room = max_length - len(before) - len(after)
    if room < 1:
        raise ConfigError(f"config error: llm.max_length: {max_length} leaves no room for DNA tokens")
    chunks = [chunk_ids(str(s), vocab, scheme=scheme) for s in sequences]
    cut = sum(len(c) > room for c in chunks)
    if cut:
        log.warning("llm.max_length %d cuts %d of %d DNA items (longest needs %d tokens): raise it to see whole items",
                    max_length, cut, len(chunks), max(len(c) for c in chunks) + len(before) + len(after))
    input_ids = [before + c[:room] + after for c in chunks]
    return {"input_ids": input_ids, "attention_mask": [[1] * len(ids) for ids in input_ids]}


def add_dna_tokens(model: Any, vocab: DnaVocab, *, seed: int) -> None:
    """Grow the input embeddings by ``vocab.size`` rows drawn (seeded) like the pretrained rows.

    The draw matches each dimension's mean and standard deviation over the pretrained rows, so a new
    token starts in the region the model's first layer expects; the same seed gives the same rows,
    which is what lets an adapter saved without the embedding matrix be reloaded onto a fresh model.
    """
    import torch

    embeddings = model.get_input_embeddings()
    old = embeddings.weight.detach().float()
    n_old = old.shape[0]
    mean, std = old.mean(dim=0), old.std(dim=0)
    generator = torch.Generator().manual_seed(int(seed))
    total = vocab.offset + vocab.size
    rows = mean + std * torch.randn((total - n_old, old.shape[1]), generator=generator)
    model.resize_token_embeddings(total, mean_resizing=False)
    with torch.no_grad():
        model.get_input_embeddings().weight[n_old:] = rows.to(embeddings.weight.dtype)

