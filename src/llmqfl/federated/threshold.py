"""The LLM-termination threshold tau set from the data rather than by hand.

``qfl.termination.llm_threshold_quantile: q`` makes the llm_guided arm stop when its server loss is
closer to the teachers' loss level l_s than the baseline (B0, same replicate, no LLM) is in a share
q of its rounds: tau = quantile_q over B0's rounds t of |J_s,t - l_s| (natural log, like l_s). With
q = 0.25, L stops once it is as close to the teachers as B0's best quarter of rounds; an L that is no
better than B0 stops late or never, so early termination still has to be earned. When set, it
replaces ``qfl.termination.llm_threshold``.

The ``loss_stopping`` arm (no LLM) gets a test of the same kind from its own server loss:
tau_delta = quantile_q over B0's consecutive rounds of |J_s,t - J_s,t-1|, and it stops once its
server loss moves by less than that (``qfl.termination.loss_delta_quantile``, q = 0.25 by default).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from llmqfl.contracts import SERVER
from llmqfl.errors import DataError
from llmqfl.file_contract import HISTORY
from llmqfl.io import read_checked_parquet
from llmqfl.settings import Settings

MIN_TAU = 1e-9


def tau_from_reference(server_losses: np.ndarray, llm_loss: float, quantile: float) -> float:
    """tau = the ``quantile`` of |J_s,t - l_s| over the reference run's rounds (> 0)."""
    losses = np.asarray(server_losses, dtype=float)
    losses = losses[np.isfinite(losses)]
    if not losses.size or not math.isfinite(llm_loss):
        raise ValueError("tau needs finite reference server losses and a finite LLM loss")
    return max(float(np.quantile(np.abs(losses - llm_loss), quantile)), MIN_TAU)


def resolve_threshold(
    settings: Settings, reference: Path | None, llm_loss: float
) -> tuple[Settings, float | None]:
    """The settings with ``llm_threshold`` set from the reference history when a quantile is configured.

    Returns (settings, tau); tau is None when no quantile is configured. A missing or unreadable
    reference is a one-line DataError.
    """
    quantile = settings.qfl.termination.llm_threshold_quantile
    if quantile is None:
        return settings, None
    if reference is None:
        raise DataError("qfl.termination.llm_threshold_quantile needs --tau-reference (the baseline's history.parquet)")
    try:
        tau = tau_from_reference(reference_server_losses(reference), llm_loss, float(quantile))
    except ValueError as exc:
        raise DataError(f"{reference}: {exc}") from exc
    return settings.with_values({"qfl.termination.llm_threshold": tau}), tau


def delta_tau_from_reference(server_losses: np.ndarray, quantile: float) -> float:
    """tau_delta = the ``quantile`` of |J_s,t - J_s,t-1| over the reference run's rounds (> 0)."""
    losses = np.asarray(server_losses, dtype=float)
    losses = losses[np.isfinite(losses)]
    if losses.size < 2:
        raise ValueError("tau_delta needs at least 2 finite reference server losses")
    return max(float(np.quantile(np.abs(np.diff(losses)), quantile)), MIN_TAU)


def reference_server_losses(reference: Path) -> np.ndarray:
    """The reference run's server loss J_s per round, in round order (a one-line DataError if unreadable)."""
    history = read_checked_parquet(reference, ("round", "client", "loss"), HISTORY)
    return history[history["client"] == SERVER].sort_values("round")["loss"].to_numpy(dtype=float)


def loss_delta_tau(settings: Settings, reference: Path | None) -> float:
    """tau_delta of the loss_stopping arm from the baseline's history (``termination.loss_delta_quantile``)."""
    if reference is None:
        raise DataError("the loss_stopping arm needs --tau-reference (the baseline's history.parquet)")
    try:
        return delta_tau_from_reference(reference_server_losses(reference),
                                        float(settings.qfl.termination.loss_delta_quantile))
    except ValueError as exc:
        raise DataError(f"{reference}: {exc}") from exc
