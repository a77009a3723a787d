"""DP-SGD in a client's LoRA fine-tuning (``privacy.llm``, docs/privacy.md), through Opacus.

Opacus wraps the model, the optimizer and the loader: batches are Poisson-sampled (rate q = 1 / the
number of batches of the plain loader, so llm.batch_size is the expected batch size), every example's
gradient over the trainable parameters (LoRA factors, the head, the added DNA token rows) is clipped to
``max_grad_norm`` and Gaussian noise of std ``noise_multiplier x max_grad_norm`` is added to their sum.
The reported epsilon is the privacy engine's own accountant after the steps taken (example-level, per
client; a federated run's rounds each add their steps to the same client's account). The learning-rate
schedule of the plain loop is dropped (constant rates): Opacus's optimizer is stepped directly.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch.utils.data import DataLoader

from llmqfl.errors import ConfigError
from llmqfl.llm.finetune import StepCallback, TrainResult, param_groups
from llmqfl.privacy_accounting import checked_epsilon
from llmqfl.settings import DpSgdSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DpSgd:
    """``privacy.llm`` when enabled."""

    noise_multiplier: float
    max_grad_norm: float
    delta: float = 1e-5
    accountant: str = "rdp"
    grad_sample_mode: str = "hooks"

    @classmethod
    def from_settings(cls, settings: DpSgdSettings | None) -> DpSgd | None:
        """The mechanism of ``privacy.llm``, or None when it is off (or not given)."""
        if settings is None or not settings.enabled:
            return None
        return cls(float(settings.noise_multiplier), float(settings.max_grad_norm), float(settings.delta),
                   str(settings.accountant), str(settings.grad_sample_mode))


@dataclass(frozen=True)
class PrivateResult:
    """The plain loop's result and the run's privacy: (epsilon, delta) and what the accountant composed."""

    train: TrainResult
    epsilon: float
    delta: float
    sample_rate: float
    steps: int

    def metrics(self, dp: DpSgd) -> dict[str, Any]:
        """The client's ``metrics.json`` entries (``dp_*``)."""
        return {"dp_epsilon": self.epsilon, "dp_delta": self.delta, "dp_noise_multiplier": dp.noise_multiplier,
                "dp_max_grad_norm": dp.max_grad_norm, "dp_sample_rate": self.sample_rate, "dp_steps": self.steps,
                "dp_accountant": dp.accountant}


def check_model(model: torch.nn.Module) -> None:
    """Parameters Opacus gives no per-example gradient (peft's trainable token rows) are one line, up front."""
    tokens = [name for name, p in model.named_parameters() if p.requires_grad and "trainable_tokens" in name]
    if tokens:
        raise ConfigError("config error: privacy.llm: Opacus computes no per-example gradients for the added DNA "
                          "token rows (llm.dna_tokens kmer or frames); use llm.dna_tokens overlap with DP-SGD")


def federated_metrics(metrics: Mapping[str, Any], rounds: int, dp: DpSgd) -> dict[str, Any]:
    """A client's ``dp_*`` after ``rounds`` federated rounds of the same steps each: one account over all of them."""
    steps = int(metrics["dp_steps"]) * int(rounds)
    eps = checked_epsilon("privacy.llm", noise_multiplier=dp.noise_multiplier,
                          sample_rate=float(metrics["dp_sample_rate"]), steps=steps, delta=dp.delta,
                          accountant=dp.accountant)
    return {**metrics, "dp_steps": steps, "dp_epsilon": eps}


def make_private(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: DataLoader, dp: DpSgd, *,
                 seed: int) -> tuple[Any, Any, Any, Any]:
    """Opacus's (engine, model, optimizer, loader); a model Opacus cannot give per-example gradients is one line."""
    from opacus import PrivacyEngine

    engine = PrivacyEngine(accountant=dp.accountant)
    try:
        with warnings.catch_warnings():  # secure_mode off: Opacus warns that its RNG is not a CSPRNG
            warnings.simplefilter("ignore")
            private_model, private_optimizer, loader = engine.make_private(
                module=model, optimizer=optimizer, data_loader=batches, noise_multiplier=dp.noise_multiplier,
                max_grad_norm=dp.max_grad_norm, poisson_sampling=True, grad_sample_mode=dp.grad_sample_mode,
                noise_generator=torch.Generator(device=_device(model)).manual_seed(int(seed)),
            )
    except (NotImplementedError, ValueError) as exc:  # opacus.validators' UnsupportedModuleError is a ValueError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"config error: privacy.llm.grad_sample_mode: Opacus cannot apply DP-SGD to this model "
                          f"with mode {dp.grad_sample_mode!r}: {first}") from exc
    return engine, private_model, private_optimizer, loader


def train_private(model: torch.nn.Module, batches: DataLoader, dp: DpSgd, *, epochs: int, learning_rate: float,
                  seed: int, group_learning_rates: Mapping[str, float] | None = None,
                  on_step: StepCallback | None = None, already_spent: tuple[float, int] | None = None) -> PrivateResult:
    """DP-SGD on the trainable parameters of ``model`` (in place); the result and the accountant's epsilon.

    ``already_spent`` = (sample rate, steps) of earlier rounds of the same client: composed into the epsilon.
    """
    if epochs < 1:
        raise ConfigError(f"config error: llm.epochs: {epochs} is less than the minimum of 1")
    if len(batches) == 0:
        raise ConfigError("config error: no training batches (empty training set)")
    sample_rate = 1.0 / len(batches)
    planned = epochs * len(batches)
    # a noise level the accountant cannot bound stops the job before the first step
    checked_epsilon("privacy.llm", noise_multiplier=dp.noise_multiplier, sample_rate=sample_rate, steps=planned,
                    delta=dp.delta, accountant=dp.accountant)
    check_model(model)
    groups = param_groups(model, learning_rate, group_learning_rates or {})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    engine, private_model, private_optimizer, loader = make_private(model, optimizer, batches, dp, seed=seed)
    if already_spent is not None and already_spent[1] > 0:
        engine.accountant.history.insert(0, (dp.noise_multiplier, float(already_spent[0]), int(already_spent[1])))
    device = next(model.parameters()).device
    private_model.train()
    start, step, items, epoch_loss, epoch_items = time.perf_counter(), 0, 0, 0.0, 0
    for epoch in range(epochs):
        epoch_loss, epoch_items = 0.0, 0
        for batch in loader:
            size = int(batch["input_ids"].shape[0])
            private_optimizer.zero_grad(set_to_none=True)
            if size:
                batch = {k: v.to(device) for k, v in batch.items()}
                loss = private_model(**batch).loss
                loss.backward()
                value = float(loss.detach())
                epoch_loss += value * size
            else:  # an empty Poisson batch: the step still adds noise and counts for the accountant
                value = math.nan
                for group in private_optimizer.param_groups:
                    for p in group["params"]:
                        p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
            private_optimizer.step()
            epoch_items += size
            items += size
            step += 1
            if on_step is not None:
                on_step(step, {"train_loss_step": value, "epoch": epoch + 1})
        log.info("epoch %d/%d (DP-SGD): train loss %.4f, %d steps, %.0f s", epoch + 1, epochs,
                 epoch_loss / max(epoch_items, 1), step, time.perf_counter() - start)
    seconds = time.perf_counter() - start
    train_loss = epoch_loss / max(epoch_items, 1)
    if not math.isfinite(train_loss):
        raise ConfigError(f"config error: llm.learning_rate: training diverged (loss {train_loss}); lower it")
    _unwrap(private_model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        epsilon = float(engine.get_epsilon(delta=dp.delta))
    total_steps = step + (already_spent[1] if already_spent else 0)
    result = TrainResult(train_loss, step, seconds, items / seconds if seconds > 0 else float("nan"))
    private = PrivateResult(result, epsilon, dp.delta, sample_rate, total_steps)
    log.info("DP-SGD: epsilon %.4g at delta %g after %d steps (sample rate %.4g, noise %.3g, clip %.3g)",
             epsilon, dp.delta, total_steps, sample_rate, dp.noise_multiplier, dp.max_grad_norm)
    return replace(private, train=replace(result, privacy=private.metrics(dp)))


def _unwrap(private_model: Any) -> None:
    """Remove Opacus's hooks and per-example gradient buffers from the wrapped model (it is saved next)."""
    remove = getattr(private_model, "_close", None)
    if callable(remove):
        remove()
    for p in private_model.parameters():
        for attr in ("grad_sample", "summed_grad"):
            if hasattr(p, attr):
                setattr(p, attr, None)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device
