"""(epsilon, delta) of composed Gaussian releases, by Opacus's maintained accountants.

Both mechanisms of the ``privacy:`` block (docs/privacy.md) are compositions of Gaussian releases:
DP-SGD's steps in LoRA fine-tuning (noise multiplier sigma, Poisson sampling rate q, T steps) and the
quantum updates' rounds (client-level, q = 1). One function computes epsilon for both, so the number
a run reports is the accountant's own, and one check turns a setting no accountant can bound into
one line before anything runs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

from llmqfl.errors import ConfigError

ACCOUNTANTS = ("rdp", "prv")


def epsilon(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str = "rdp") -> float:
    """Epsilon at ``delta`` after ``steps`` Gaussian releases (sigma, sampling rate q), by Opacus's accountant."""
    if steps <= 0:
        return 0.0
    from opacus.accountants import create_accountant

    acc = create_accountant(accountant)
    acc.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
    with warnings.catch_warnings():  # numpy overflow warnings inside the accountants' grids
        warnings.simplefilter("ignore")
        return float(acc.get_epsilon(delta=float(delta)))


def checked_epsilon(field: str, *, noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                    accountant: str) -> float:
    """:func:`epsilon`, or one line naming ``field`` when the accountant cannot bound it (no noise, inf, error)."""
    if not noise_multiplier > 0:
        raise ConfigError(f"config error: {field}.noise_multiplier: {noise_multiplier} adds no noise, so no "
                          "accountant can bound epsilon; use a value > 0")
    where = f"noise_multiplier {noise_multiplier}, sample rate {sample_rate:.4g}, {steps} steps, delta {delta:g}"
    try:
        value = epsilon(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps, delta=delta,
                        accountant=accountant)
    except (ArithmeticError, ValueError, MemoryError, RuntimeError) as exc:
        raise ConfigError(f"config error: {field}: the {accountant} accountant cannot bound epsilon for {where} "
                          f"({type(exc).__name__}); raise noise_multiplier or use accountant rdp") from exc
    if not math.isfinite(value):
        raise ConfigError(f"config error: {field}: the {accountant} accountant cannot bound epsilon for {where} "
                          "(it is infinite); raise noise_multiplier or use accountant rdp")
    return value


def check_settings(privacy: Mapping[str, Any]) -> None:
    """The cheap checks of a validated ``privacy`` block (no accountant run): a mechanism that is on adds noise."""
    for part in ("llm", "quantum"):
        mechanism = privacy.get(part) or {}
        if mechanism.get("enabled") and not mechanism.get("noise_multiplier", 1.0) > 0:
            raise ConfigError(f"config error: privacy.{part}.noise_multiplier: {mechanism['noise_multiplier']} adds "
                              "no noise, so no accountant can bound epsilon; use a value > 0")
