"""A plain training loop (AdamW, linear decay, clipping: Trainer's defaults) and batched inference.

Why not ``transformers.Trainer``: the loop below does the same optimisation with less per-step
overhead (benchmarks/distill_throughput.py measures the ratio) and makes seeding explicit.
"""

from __future__ import annotations

import logging
import math
import resource
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from llmqfl.errors import ConfigError

StepCallback = Callable[[int, dict[str, float]], None]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    train_loss: float  # mean loss over the last epoch's items
    steps: int
    seconds: float
    items_per_second: float
    privacy: dict | None = None  # DP-SGD's dp_* metrics (llmqfl.llm.dp_sgd) when privacy.llm is on


@dataclass(frozen=True)
class Predictions:
    logits: np.ndarray  # (n, C)
    embeddings: np.ndarray  # (n, hidden) mean-pooled last hidden state
    losses: np.ndarray | None  # (n,) natural-log cross-entropy, when labels were given


def train(
    model: torch.nn.Module,
    batches: DataLoader,
    *,
    epochs: int,
    learning_rate: float,
    weight_decay: float = 0.0,
    max_grad_norm: float = 1.0,
    on_step: StepCallback | None = None,
    progress: bool = True,
    group_learning_rates: Mapping[str, float] | None = None,
) -> TrainResult:
    """Fine-tune the trainable parameters of ``model`` in place.

    ``group_learning_rates`` maps a parameter-name fragment to its own learning rate (new token
    embeddings start from random rows and need larger steps than LoRA's small corrections).
    """
    if epochs < 1:
        raise ConfigError(f"config error: llm.epochs: {epochs} is less than the minimum of 1")
    if len(batches) == 0:
        raise ConfigError("config error: no training batches (empty training set)")
    groups = param_groups(model, learning_rate, group_learning_rates or {})
    return _train(model, groups, batches, epochs, weight_decay, max_grad_norm, on_step, progress)


def param_groups(model: torch.nn.Module, learning_rate: float, special: Mapping[str, float]) -> list[dict]:
    """Trainable parameters grouped by learning rate: the first matching name fragment wins."""
    groups: dict[float, list[torch.nn.Parameter]] = {float(learning_rate): []}  # first: the logged rate
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            rate = next((r for fragment, r in special.items() if fragment in name), learning_rate)
            groups.setdefault(float(rate), []).append(parameter)
    return [{"params": params, "lr": rate} for rate, params in groups.items() if params]


def _train(model: torch.nn.Module, groups: list[dict], batches: DataLoader, epochs: int, weight_decay: float,
           max_grad_norm: float, on_step: StepCallback | None, progress: bool) -> TrainResult:
    from tqdm.auto import tqdm

    device = _device(model)
    parameters = [p for group in groups for p in group["params"]]
    optimizer = torch.optim.AdamW(groups, weight_decay=weight_decay)
    total_steps = epochs * len(batches)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, (total_steps - s) / total_steps))
    model.train()
    step, items, epoch_loss, epoch_items = 0, 0, 0.0, 0
    start = time.perf_counter()
    bar = tqdm(total=total_steps, desc="fine-tune", disable=not progress, mininterval=2.0)
    for epoch in range(epochs):
        epoch_loss, epoch_items = 0.0, 0
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            loss = model(**batch).loss
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            size = int(batch["input_ids"].shape[0])
            value = float(loss.detach())
            epoch_loss += value * size
            epoch_items += size
            items += size
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}", refresh=False)
            if on_step is not None:
                on_step(step, {"train_loss_step": value, "grad_norm": float(grad_norm),
                               "learning_rate": scheduler.get_last_lr()[0], "epoch": epoch + 1})
        # one line per epoch: the workflow shows it on the console (workflow/rules/common.smk progress)
        log.info("epoch %d/%d: train loss %.4f, %d steps, %.0f s", epoch + 1, epochs,
                 epoch_loss / max(epoch_items, 1), step, time.perf_counter() - start)
    bar.close()
    seconds = time.perf_counter() - start
    train_loss = epoch_loss / max(epoch_items, 1)
    if not math.isfinite(train_loss):
        raise ConfigError(f"config error: llm.learning_rate: training diverged (loss {train_loss}); lower it")
    return TrainResult(train_loss, step, seconds, items / seconds if seconds > 0 else float("nan"))


@torch.no_grad()
def predict(model: torch.nn.Module, batches: DataLoader, order: list[int]) -> Predictions:
    """Logits, pooled embeddings and per-item losses, returned in the original item order."""
    device = _device(model)
    model.eval()
    logits, pooled, losses = [], [], []
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        labels = batch.pop("labels", None)
        output = model(**batch, output_hidden_states=True)
        batch_logits = output.logits.float()
        logits.append(batch_logits.cpu())
        pooled.append(mean_pool(output.hidden_states[-1], batch["attention_mask"]).cpu())
        if labels is not None:
            losses.append(torch.nn.functional.cross_entropy(batch_logits, labels, reduction="none").cpu())
    inverse = np.argsort(np.asarray(order))
    stacked_losses = torch.cat(losses).numpy()[inverse] if losses else None
    return Predictions(torch.cat(logits).numpy()[inverse], torch.cat(pooled).numpy()[inverse], stacked_losses)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states that are not padding."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden.float() * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def peak_memory_mb() -> float:
    """CUDA max allocated when on a GPU, else this process's peak resident set size."""
    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device
