"""Mean-pooled embeddings from the BASE model (not fine-tuned): the quantum features for text tasks.

The base model is shared by every client and the server, so these features leak nothing about
any client's fine-tuning and are the same whatever the partition. With added DNA tokens
(``llm.dna_tokens`` kmer/frames) the base model's new rows are the seeded draw every client starts
from (``llmqfl.llm.dna.add_dna_tokens``), so the embedding is a fixed random projection of k-mers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from llmqfl.llm import dna, finetune, token_inputs
from llmqfl.llm.model_assets import DEFAULT_MODELS_ROOT, load_kwargs, resolve_model
from llmqfl.llm.modeling import load_tokenizer


def base_embeddings(
    items: Sequence[str],
    *,
    model: str,
    kind: str,
    max_length: int,
    kmer: int = 6,
    batch_size: int = 64,
    models_root: str | Path = DEFAULT_MODELS_ROOT,
    dna_tokens: str = "overlap",
    seed: int = 0,
) -> np.ndarray:
    """(n, hidden) float32: attention-masked mean of the last hidden state, one row per item, in order."""
    if kind not in {"dna", "text"}:
        raise ValueError(f"kind must be dna or text, got {kind!r}")
    if len(items) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    dna.check_scheme(dna_tokens, kmer)
    source = resolve_model(model, models_root=models_root)
    return _embed(list(items), source, kind, max_length, kmer, batch_size, dna_tokens, seed)


def _embed(items: list[str], source: str, kind: str, max_length: int, kmer: int, batch_size: int,
           scheme: str, seed: int) -> np.ndarray:
    from transformers import AutoModel

    tokenizer = load_tokenizer(source)
    encoder = AutoModel.from_pretrained(source, dtype=torch.float32, **load_kwargs(source))
    encoder.eval()
    vocab = None
    if kind == "dna" and scheme in dna.ADDED_SCHEMES:
        vocab = dna.DnaVocab(kmer, dna.vocab_offset(tokenizer, encoder.config))
        dna.add_dna_tokens(encoder, vocab, seed=seed)
    features = token_inputs.encode_items(tokenizer, items, None, kind=kind, scheme=scheme, k=kmer,
                                         max_length=max_length, vocab=vocab)
    batches, order = token_inputs.length_sorted_loader(features, tokenizer, batch_size=batch_size)
    pooled = []
    with torch.no_grad():
        for batch in batches:
            hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            pooled.append(finetune.mean_pool(hidden, batch["attention_mask"]))
    stacked = torch.cat(pooled).numpy()
    return stacked[np.argsort(np.asarray(order))].astype(np.float32)

