"""Linear probe, then fine-tune (``llm.head_init: probe``): the new head starts from a logistic regression.

Why: the classification head starts random, so the first steps of fine-tuning push LoRA and the new
token rows with gradients from a head that knows nothing. Fitting the head first on what the frozen
model already gives (one forward pass over the train items, a small fraction of one epoch) lets
fine-tuning start from a head that already separates what the features separate (docs/teacher.md).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from llmqfl.errors import ConfigError

HEAD_NAMES = ("classifier", "score")
PROBE_C = 1.0  # inverse L2 strength of the probe's logistic regression (sklearn's default)


def head_module(model: torch.nn.Module) -> torch.nn.Linear:
    """The trainable linear head (peft's ``modules_to_save`` copy under LoRA, the module itself in full)."""
    found = None
    for name, module in model.named_modules():
        parts = name.split(".")
        wrapped = len(parts) >= 3 and parts[-3] in HEAD_NAMES and parts[-2] == "modules_to_save"
        if isinstance(module, torch.nn.Linear) and (wrapped or parts[-1] in HEAD_NAMES) and module.weight.requires_grad:
            found = module
    if found is None:
        raise ConfigError("config error: llm.head_init: probe needs a trainable linear head named classifier or score")
    return found


@torch.no_grad()
def fit_head(model: torch.nn.Module, batches: DataLoader, order: list[int], labels: np.ndarray,
             n_classes: int) -> float:
    """Set the head to a logistic regression on its own inputs over ``batches``; returns its train accuracy."""
    from sklearn.linear_model import LogisticRegression

    head = head_module(model)
    captured: list[torch.Tensor] = []
    handle = head.register_forward_hook(lambda _m, args, _out: captured.append(args[0].detach().float().cpu()))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items() if k != "labels"}
            model(**batch)
            if captured[-1].ndim == 3:  # decoders score every position and keep the last real token's
                last = batch["attention_mask"].sum(1).cpu() - 1
                captured[-1] = captured[-1][torch.arange(len(last)), last]
    finally:
        handle.remove()
        model.train(was_training)
    features = torch.cat(captured).numpy()[np.argsort(np.asarray(order))]
    present = np.unique(labels)
    if len(present) < 2:  # one class only: nothing to separate, keep the random head
        return float("nan")
    fit = LogisticRegression(C=PROBE_C, max_iter=2000).fit(features, labels)
    weight, bias = _softmax_parameters(fit.coef_, fit.intercept_, present, n_classes)
    head.weight.copy_(torch.as_tensor(weight, dtype=head.weight.dtype))
    if head.bias is not None:
        head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))
    return float(fit.score(features, labels))


def _softmax_parameters(coef: np.ndarray, intercept: np.ndarray, present: np.ndarray,
                        n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One row per class: a binary fit split into +-half rows; a class absent from train gets a low bias."""
    if coef.shape[0] == 1:
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    weight = np.zeros((n_classes, coef.shape[1]))
    bias = np.full(n_classes, float(intercept.min()) - 5.0)
    weight[present] = coef
    bias[present] = intercept
    return weight, bias
