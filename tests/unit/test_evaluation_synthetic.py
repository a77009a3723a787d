"""Synthetic QFL outputs that follow the file contract, for the evaluation tests.

``write_results`` writes ``results/{exp}/qfl/{arm}/seed_{s}/{history.parquet, accounting.json}`` for
3 arms x 3 seeds (plus distill metrics and data files), shaped like a real run: the LLM-guided arm
raises maxiter per client, stops early on the LLM threshold, and the budget-matched arm replays its
schedule. ``synthetic_history`` also shapes the two controls (:data:`ALL_ARMS`): equal_cost runs every
round at one even maxiter, loss_stopping is the baseline stopped one round early on its loss change.
The numbers are closed-form, so tests can recompute what they expect.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from synthetic_runs import ARMS, synthetic_history, write_results

from llmqfl.evaluation.history import HISTORY_COLUMNS, check_history


def test_synthetic_histories_keep_the_contract(tmp_path: Path) -> None:
    # Prepare / Execute
    results = write_results(tmp_path)
    # Assert
    for arm in ARMS:
        history = pd.read_parquet(results / "qfl" / arm / "seed_0" / "history.parquet")
        assert list(history.columns[: len(HISTORY_COLUMNS)]) == list(HISTORY_COLUMNS)
        assert (history.groupby("round")["client"].apply(lambda c: (c == -1).sum()) == 1).all()
    guided = pd.read_parquet(results / "qfl" / "llm_guided" / "seed_0" / "history.parquet")
    matched = pd.read_parquet(results / "qfl" / "budget_matched" / "seed_0" / "history.parquet")
    assert guided["round"].max() == 4 and matched["round"].max() == 6
    shared = matched[matched["round"] <= 4]
    assert (shared["maxiter"].to_numpy() == guided["maxiter"].to_numpy()).all()


@pytest.mark.parametrize("column", ["round", "loss"])
def test_a_history_without_a_contract_column_is_rejected(column: str) -> None:
    from llmqfl.errors import DataError

    frame = synthetic_history("baseline", 0).drop(columns=[column])
    with pytest.raises(DataError, match=column):
        check_history(frame)
