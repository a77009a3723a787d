"""User data: a CSV file with an item column, a label column and optional numeric feature columns."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from llmqfl.data.labelled import LabelledData, from_named_labels
from llmqfl.errors import DataError


def load_csv(
    path: str | Path,
    *,
    item_column: str,
    label_column: str,
    feature_columns: Sequence[str] | None = None,
) -> LabelledData:
    """Read and check a user CSV; every problem is a one-line :class:`DataError` naming the file or column."""
    path = Path(path)
    frame = _read(path)
    wanted = [item_column, label_column, *(feature_columns or [])]
    for column in wanted:
        if column not in frame.columns:
            raise DataError(f"{path}: no column {column!r} (data.item_column/label_column/feature_columns); "
                            f"columns are {list(frame.columns)}")
    items = frame[item_column]
    empty = items.isna() | (items.astype(str).str.strip() == "")
    if empty.any():
        raise DataError(f"{path}: column {item_column!r} has {int(empty.sum())} empty item(s), "
                        f"first at data row {int(empty.to_numpy().nonzero()[0][0]) + 1}")
    labels = frame[label_column]
    if labels.isna().any():
        raise DataError(f"{path}: column {label_column!r} has {int(labels.isna().sum())} missing label(s), "
                        f"first at data row {int(labels.isna().to_numpy().nonzero()[0][0]) + 1}")
    if labels.nunique() < 2:
        raise DataError(f"{path}: label column {label_column!r} has a single class "
                        f"('{labels.iloc[0]}'); a classifier needs at least 2")
    features = _features(path, frame, feature_columns or [])
    return from_named_labels(items.astype(str).str.strip().tolist(), labels.tolist(), source=f"csv:{path.name}",
                             features=features)


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"data.path: file not found: {path}")
    try:
        frame = pd.read_csv(path, keep_default_na=True)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"data.path: cannot read {path} as CSV: {str(exc).splitlines()[0]}") from exc
    if frame.empty:
        raise DataError(f"data.path: {path} has no data rows")
    return frame


def _features(path: Path, frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame | None:
    if not columns:
        return None
    features = frame[list(columns)]
    for column in columns:
        values = pd.to_numeric(features[column], errors="coerce")
        if values.isna().any():
            raise DataError(f"{path}: feature column {column!r} must be numeric without gaps")
        bad = ~np.isfinite(values.to_numpy(dtype=np.float64))
        if bad.any():
            first = int(bad.nonzero()[0][0])
            raise DataError(f"{path}: feature column {column!r} has {int(bad.sum())} non-finite value(s) "
                            f"(inf or nan), first at data row {first + 1}: {values.iloc[first]!r}")
    return features.apply(pd.to_numeric)
