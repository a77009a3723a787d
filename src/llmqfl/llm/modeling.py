"""Load a model for sequence classification and wrap it for LoRA, QLoRA or full fine-tuning.

Unlike the paper's Llama script (D15 in ``docs/differences.md``), LoRA uses ``task_type=SEQ_CLS`` so that the new
classification head is trained (and saved, and averaged) along with the adapters.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from llmqfl.errors import ConfigError, DataError
from llmqfl.integrity import check_manifest
from llmqfl.llm import dna
from llmqfl.llm.devices import check_qlora_device, device_name, resolve_device
from llmqfl.llm.model_assets import DEFAULT_MODELS_ROOT, load_kwargs, resolve_model
from llmqfl.settings import LlmSettings, LoraSettings

log = logging.getLogger(__name__)

# LoRA targets by architecture (config.model_type): attention query and value projections.
DEFAULT_TARGETS: dict[str, tuple[str, ...]] = {
    "llama": ("q_proj", "v_proj"),
    "mistral": ("q_proj", "v_proj"),
    "qwen2": ("q_proj", "v_proj"),
    "qwen3": ("q_proj", "v_proj"),
    "gemma": ("q_proj", "v_proj"),
    "phi3": ("qkv_proj",),
    "bert": ("query", "value"),
    "roberta": ("query", "value"),
    "xlm-roberta": ("query", "value"),
    "distilbert": ("q_lin", "v_lin"),
    "gpt2": ("c_attn",),
}
# GPT-2 stores its projections as Conv1D (weight is in x out): LoRA must transpose.
FAN_IN_FAN_OUT = frozenset({"gpt2"})
PEFT_KINDS = ("lora", "qlora", "full")
POOLINGS = ("auto", "mean", "model")
# The new classification head's parameter names (BERT-style ``classifier``, decoders' ``score``), with or
# without peft's ``modules_to_save`` wrapper.
HEAD_FRAGMENTS = ("classifier.", "score.")


def head_learning_rates(llm: LlmSettings) -> dict[str, float]:
    """The head's own learning rate (``llm.head_learning_rate``): it starts random, LoRA starts at zero change."""
    rate = llm.head_learning_rate
    return {} if rate is None else {fragment: float(rate) for fragment in HEAD_FRAGMENTS}


@dataclass
class Classifier:
    """A ready-to-train model, its tokenizer and what it is."""

    model: torch.nn.Module
    tokenizer: Any
    source: str
    model_type: str
    peft: str
    dna_vocab: dna.DnaVocab | None = None  # the added DNA tokens, when llm.dna_tokens adds any
    # what rebuilds this model around a saved adapter (llmqfl.llm.reload): saved in the adapter's manifest
    recipe: dict[str, Any] = field(default_factory=dict)

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, total) parameters, LoRA tensors included in the total."""
        return parameter_counts(self.model)


def parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def load_tokenizer(source: str) -> Any:
    """The model's tokenizer with a pad token (decoder-only models reuse end-of-sequence)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, **load_kwargs(source))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def build_classifier(
    *,
    model: str,
    n_classes: int,
    peft: str = "lora",
    lora: LoraSettings | None = None,
    init_seed: int = 0,
    init_adapter: str | Path | None = None,
    models_root: str | Path = DEFAULT_MODELS_ROOT,
    dna_tokens: tuple[str, int] | None = None,
    pooling: str = "model",
    device: str = "auto",
) -> Classifier:
    """Load ``model`` for ``n_classes``-way classification, wrapped for ``peft``.

    ``dna_tokens`` = (scheme, k) of ``llmqfl.llm.dna``: for ``kmer``/``frames`` the k-mer tokens are
    added to the vocabulary (rows seeded by ``init_seed``) and trained as peft trainable tokens.

    ``pooling``: what the head sees: ``model`` = the architecture's own (BERT: the [CLS] pooler, decoders:
    the last token), ``mean`` = the mean of the last hidden states over the non-padding tokens (models
    with a BERT-style pooler only), ``auto`` = ``mean`` where the model has such a pooler, else ``model``.

    ``device`` (``llm.device``, :func:`resolve_device`): where the model trains; training and inference
    follow the model's parameters (``llmqfl.llm.finetune``). QLoRA needs a CUDA GPU.

    ``lora`` (``llm.lora``): rank, alpha, dropout and target modules; None takes the schema's defaults.

    ``init_seed`` seeds the new head and the LoRA matrices (shared by all clients so that
    federated averaging starts from one model); ``init_adapter`` continues from a saved adapter.
    Raises :class:`ConfigError` for a bad peft kind, a target module the model lacks, or QLoRA
    without CUDA, before anything is trained or written.
    """
    if pooling not in POOLINGS:
        raise ConfigError(f"config error: llm.pooling: {pooling!r} is not one of: {', '.join(POOLINGS)}")
    if peft not in PEFT_KINDS:
        raise ConfigError(f"config error: llm.peft: {peft!r} is not one of: {', '.join(PEFT_KINDS)}")
    if n_classes < 2:
        raise ConfigError(f"config error: n_classes: need at least 2 classes, got {n_classes}")
    target = resolve_device(device)
    if peft == "qlora":
        check_qlora_device(target)
    if init_adapter is not None and peft == "full":
        raise ConfigError("config error: llm.peft: continuing from an adapter needs lora or qlora, not full")
    added = None
    if dna_tokens is not None:
        dna.check_scheme(*dna_tokens)
        added = dna_tokens[1] if dna_tokens[0] in dna.ADDED_SCHEMES else None
    source = resolve_model(model, models_root=models_root)
    classifier = _build(source, n_classes, peft, lora, init_seed, init_adapter, added, pooling, target)
    if peft != "qlora":  # a 4-bit model is placed on its GPU as it loads (device_map)
        classifier.model.to(target)
    log.info("fine-tuning %s (%s) on %s", model, peft, device_name(target))
    classifier.recipe = {"model": model, "n_classes": int(n_classes), "peft": peft, "init_seed": int(init_seed),
                         "dna_tokens": list(dna_tokens) if dna_tokens is not None else None, "pooling": pooling}
    return classifier


def _build(source: str, n_classes: int, peft: str, lora: LoraSettings | None, init_seed: int,
           init_adapter: str | Path | None, dna_k: int | None = None, pooling: str = "model",
           device: torch.device | None = None) -> Classifier:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    tokenizer = load_tokenizer(source)
    config = AutoConfig.from_pretrained(source, num_labels=n_classes, **load_kwargs(source))
    config.pad_token_id = tokenizer.pad_token_id
    model_type = config.model_type
    kwargs: dict[str, Any] = {"config": config, **load_kwargs(source)}
    if peft == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["device_map"] = {"": (device.index or 0) if device is not None else 0}
    else:
        kwargs["dtype"] = torch.float32
    torch.manual_seed(init_seed)  # the new classification head
    base = AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
    vocab = None
    if dna_k is not None:
        vocab = dna.DnaVocab(dna_k, dna.vocab_offset(tokenizer, config))
        dna.add_dna_tokens(base, vocab, seed=init_seed)
    use_mean_pooling(base, pooling)
    if peft == "full":
        for parameter in base.parameters():
            parameter.requires_grad_(True)
        return Classifier(base, tokenizer, source, model_type, peft, vocab)
    if peft == "qlora":
        from peft import prepare_model_for_kbit_training

        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
    torch.manual_seed(init_seed)  # the LoRA A matrices
    wrapped = _wrap_lora(base, model_type, lora, init_adapter, vocab)
    return Classifier(wrapped, tokenizer, source, model_type, peft, vocab)


@functools.cache
def default_lora() -> LoraSettings:
    """The schema's ``llm.lora`` defaults (r 8, alpha 16, dropout 0.05, targets by architecture)."""
    from llmqfl.config import load_settings

    return load_settings({}).llm.lora


def lora_targets(model_type: str, override: Sequence[str] | None) -> list[str]:
    """The configured targets, or this architecture's attention query/value projections."""
    if override:
        return list(override)
    if model_type not in DEFAULT_TARGETS:
        known = ", ".join(sorted(DEFAULT_TARGETS))
        raise ConfigError(
            f"config error: llm.lora.target_modules: no default for architecture {model_type!r} "
            f"(known: {known}); name the modules explicitly"
        )
    return list(DEFAULT_TARGETS[model_type])


def check_targets(model: torch.nn.Module, targets: Sequence[str]) -> None:
    """Every target must name a linear-like module of ``model`` (peft's suffix match)."""
    names = [name for name, _ in model.named_modules()]
    leaves = {name.rsplit(".", 1)[-1] for name in names}
    missing = [t for t in targets if t not in leaves and not any(n.endswith(f".{t}") or n == t for n in names)]
    if missing:
        examples = ", ".join(sorted(leaves - {""})[:12])
        raise ConfigError(
            f"config error: llm.lora.target_modules: model has no module {missing[0]!r} (it has e.g. {examples})"
        )


def _wrap_lora(base: torch.nn.Module, model_type: str, lora: LoraSettings | None,
               init_adapter: str | Path | None, vocab: dna.DnaVocab | None = None) -> torch.nn.Module:
    from peft import LoraConfig, TaskType, get_peft_model

    if init_adapter is not None:
        return load_checked_adapter(base, init_adapter)
    if lora is None:
        lora = default_lora()
    targets = lora_targets(model_type, lora.target_modules)
    check_targets(base, targets)
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=int(lora.r),
        lora_alpha=float(lora.alpha),
        lora_dropout=float(lora.dropout),
        target_modules=targets,
        fan_in_fan_out=model_type in FAN_IN_FAN_OUT,
        bias="none",
        trainable_token_indices=vocab.ids if vocab is not None else None,
    )
    return get_peft_model(base, config)


def load_checked_adapter(base: torch.nn.Module, folder: str | Path) -> torch.nn.Module:
    """``PeftModel.from_pretrained`` after checking the adapter's files against their digests.

    An adapter edited or cut short is one :class:`~llmqfl.errors.IntegrityError` line naming the file; one
    without a manifest (saved elsewhere) that peft cannot load is one :class:`DataError` line, not a traceback.
    """
    from peft import PeftModel

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: adapter folder not found")
    if check_manifest(folder, required=False) is None:
        log.warning("%s: no integrity manifest (not saved by llmqfl); loading it unchecked", folder)
    try:
        return PeftModel.from_pretrained(base, str(folder), is_trainable=True)
    except Exception as exc:  # safetensors, peft and torch raise many types for a damaged or foreign adapter
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{folder}: cannot load the adapter onto {getattr(base.config, 'model_type', 'the model')}: "
                        f"{first[:300]}") from exc


class MeanPooler(torch.nn.Module):
    """Stands in for a BERT pooler: the mean of the non-padding last hidden states.

    Why: sentence-embedding encoders (all-MiniLM-L6-v2) are trained with mean pooling, so their [CLS]
    pooler carries much less of an item (docs/teacher.md: a logistic regression on frozen Rotten
    Tomatoes features, 76% from the mean vs 59% from the pooler, on one client). The encoder's
    forward pre-hook hands the attention mask over, since a pooler only receives the hidden states.
    """

    def __init__(self) -> None:
        super().__init__()
        self.mask: torch.Tensor | None = None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        mask = self.mask if self.mask is not None else hidden.new_ones(hidden.shape[:2])
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def use_mean_pooling(model: torch.nn.Module, pooling: str) -> bool:
    """Replace the encoder's pooler by :class:`MeanPooler` for ``mean`` (and ``auto`` where one exists)."""
    if pooling == "model":
        return False
    encoder = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if getattr(encoder, "pooler", None) is None:
        if pooling == "mean":
            raise ConfigError(f"config error: llm.pooling: mean needs a BERT-style encoder with a pooler "
                              f"(e.g. minilm-l6); {model.config.model_type} has none: use model or auto")
        return False
    pooler = MeanPooler()
    encoder.pooler = pooler

    def keep_mask(_module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        pooler.mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)

    encoder.register_forward_pre_hook(keep_mask, with_kwargs=True)
    return True
