"""C2's threshold from the data: tau = a quantile of the baseline's server-vs-teacher gap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmqfl.config import load_settings
from llmqfl.errors import DataError
from llmqfl.federated.threshold import resolve_threshold, tau_from_reference


def baseline_history(path: Path, server_losses: list[float]) -> Path:
    rows = [{"round": r + 1, "client": -1, "loss": loss} for r, loss in enumerate(server_losses)]
    rows += [{"round": r + 1, "client": 0, "loss": 9.9} for r in range(len(server_losses))]  # clients: ignored
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def test_tau_is_the_quantile_of_the_baseline_gap_to_the_teacher(tmp_path: Path) -> None:
    config = load_settings({"qfl": {"termination": {"llm_threshold_quantile": 0.25}}})
    history = baseline_history(tmp_path / "history.parquet", [0.70, 0.65, 0.60, 0.55, 0.50])
    resolved, tau = resolve_threshold(config, history, llm_loss=0.40)
    # gaps 0.30, 0.25, 0.20, 0.15, 0.10: the 25% quantile is 0.15
    assert tau == pytest.approx(0.15) and resolved.qfl.termination.llm_threshold == pytest.approx(0.15)
    assert config.qfl.termination.llm_threshold is None  # the caller's settings are not changed


def test_without_a_quantile_the_configured_threshold_stands(tmp_path: Path) -> None:
    config = load_settings({"qfl": {"termination": {"llm_threshold": 0.4}}})
    assert resolve_threshold(config, None, llm_loss=0.4) == (config, None)


def test_a_missing_reference_is_one_line(tmp_path: Path) -> None:
    config = load_settings({"qfl": {"termination": {"llm_threshold_quantile": 0.5}}})
    with pytest.raises(DataError, match="needs --tau-reference"):
        resolve_threshold(config, None, llm_loss=0.4)
    with pytest.raises(DataError, match="input file not found"):
        resolve_threshold(config, tmp_path / "absent.parquet", llm_loss=0.4)


def test_tau_is_positive_even_when_the_baseline_touches_the_teacher() -> None:
    assert tau_from_reference(np.array([0.4, 0.4]), 0.4, 0.5) > 0
