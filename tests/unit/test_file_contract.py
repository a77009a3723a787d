"""Every file checked where it is read against the stage file contract: types, ranges, unique rows, probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmqfl.contracts import HISTORY_COLUMNS, SERVER, history_frame
from llmqfl.errors import DataError
from llmqfl.evaluation.history import load_history
from llmqfl.file_contract import EMBEDDINGS, PARTITION, TEACHER, check_frame
from llmqfl.io import read_checked_parquet


def _history(tmp_path: Path, **server_values: object) -> Path:
    """A two-round, one-client history as the qfl stage writes it; ``server_values`` overwrite round 2's server row."""
    rows = []
    for r in (1, 2):
        for client in (SERVER, 0):
            row = {c: 0 for c in HISTORY_COLUMNS}
            row.update(round=r, client=client, selected=client == 0, terminated=False, stop_reason="",
                       loss=0.6, test_accuracy=0.7, test_f1=0.7, train_accuracy=0.7, llm_loss=float("nan"))
            rows.append(row)
    frame = history_frame(rows)
    for column, value in server_values.items():
        frame.loc[(frame["round"] == 2) & (frame["client"] == SERVER), column] = value
    path = tmp_path / "history.parquet"
    frame.to_parquet(path, index=False)
    return path


def test_a_history_within_the_contract_is_read(tmp_path: Path) -> None:
    assert len(load_history(_history(tmp_path))) == 4


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("test_accuracy", 2.8, "column test_accuracy: values must lie in [0, 1]; got 2.8 in file row(s) 2"),
        ("test_f1", -0.1, "column test_f1: values must lie in [0, 1]"),
        ("shots", -5, "column shots: values must lie in [0, inf]"),
        ("compute_seconds", -1.0, "column compute_seconds: values must lie in [0, inf]"),
    ],
)
def test_a_history_outside_the_contract_is_refused_in_one_line(
    tmp_path: Path, column: str, value: float, expected: str
) -> None:
    path = _history(tmp_path, **{column: value})
    with pytest.raises(DataError) as caught:
        load_history(path)
    assert str(caught.value).startswith(f"{path}: ") and expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_teacher_file_with_a_duplicated_item_is_refused(tmp_path: Path) -> None:
    # Prepare: row 7 twice, with different probabilities (the last copy used to win)
    path = tmp_path / "teacher.parquet"
    pd.DataFrame({"row": [5, 7, 7], "probs": [[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]}).to_parquet(path, index=False)
    # Execute / Assert
    with pytest.raises(DataError, match=r"teacher\.parquet: teacher outputs: row must be unique; repeated: 7$"):
        read_checked_parquet(path, ("row", "probs"), TEACHER)


@pytest.mark.parametrize(
    ("probs", "expected"),
    [
        ([[0.5, 0.5], [0.7, 0.7]], "rows must be probability distributions .* not in file row\\(s\\) 1"),
        ([[0.5, 0.5], [1.2, -0.2]], "rows must be probability distributions"),
        ([[0.5, 0.5], [np.nan, 1.0]], "non-finite values in file row\\(s\\) 1"),
        ([[0.5, 0.5], [1.0]], "vectors of one length needed"),
    ],
    ids=["sum", "negative", "nan", "ragged"],
)
def test_teacher_probabilities_must_be_distributions(probs: list, expected: str) -> None:
    frame = pd.DataFrame({"row": [0, 1], "probs": [np.asarray(p) for p in probs]})
    with pytest.raises(DataError, match=expected):
        check_frame(frame, TEACHER, "teacher.parquet")


def test_partition_and_embedding_rows_are_checked() -> None:
    with pytest.raises(DataError, match="column split: values must be one of train, test; got 'valid'"):
        check_frame(pd.DataFrame({"row": [0, 1], "label": [0, 1], "split": ["train", "valid"]}), PARTITION, "p")
    with pytest.raises(DataError, match=r"column label: values must be integers; got 0\.5"):
        check_frame(pd.DataFrame({"row": [0, 1], "label": [0.5, 1], "split": ["train", "test"]}), PARTITION, "p")
    with pytest.raises(DataError, match=r"split and row must be unique; repeated: \('test', 3\)"):
        check_frame(pd.DataFrame({"split": ["test", "test"], "row": [3, 3], "embedding": [[0.1], [0.2]]}),
                    EMBEDDINGS, "e")


def test_json_records_with_an_accuracy_outside_0_1_are_refused(tmp_path: Path) -> None:
    # Prepare: an eval record whose final accuracy was edited to 2.8
    import json

    from llmqfl.evaluation.collect import load_runs

    record = {"arm": "baseline", "seed": 0, "final": {"test_accuracy": 2.8, "test_loss": 0.4},
              "per_round": {"test_accuracy": [0.5, 2.8]}}
    path = tmp_path / "baseline" / "seed_0.json"
    path.parent.mkdir()
    path.write_text(json.dumps(record))
    # Execute / Assert
    with pytest.raises(DataError, match=r"seed_0\.json: final\.test_accuracy: 2\.8 is not in \[0, 1\]"):
        load_runs(tmp_path, arms=["baseline"], seeds=[0])
