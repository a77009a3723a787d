"""User data: a CSV file with an item column, a label column and optional numeric feature columns.

Every cell is read as text: only an empty cell is missing, so items such as ``NA``, ``null`` or
``None`` (a gene, a word) stay items unless ``data.na_values`` names them as missing. Labels are
normalised by :func:`llmqfl.data.labelled.label_name`; the kind by :mod:`llmqfl.data.kinds`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from llmqfl.data.labelled import LabelledData, class_names, from_named_labels
from llmqfl.errors import DataError


def load_csv(
    path: str | Path,
    *,
    item_column: str,
    label_column: str,
    feature_columns: Sequence[str] | None = None,
    kind: str = "auto",
    na_values: Sequence[str] = (),
) -> LabelledData:
    """Read and check a user CSV; every problem is a one-line :class:`DataError` naming the file or column.

    ``kind`` is ``data.kind`` (auto, dna, text); ``na_values`` the strings that mean a missing cell
    (besides an empty one).
    """
    path = Path(path)
    frame = _read(path, na_values)
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
    missing = labels.isna() | (labels.astype(str).str.strip() == "")
    if missing.any():
        raise DataError(f"{path}: column {label_column!r} has {int(missing.sum())} missing label(s), "
                        f"first at data row {int(missing.to_numpy().nonzero()[0][0]) + 1}")
    if len(class_names(labels.tolist())) < 2:
        raise DataError(f"{path}: label column {label_column!r} has a single class "
                        f"('{labels.iloc[0]}'); a classifier needs at least 2")
    features = _features(path, frame, feature_columns or [])
    return from_named_labels(items.astype(str).str.strip().tolist(), labels.tolist(), source=f"csv:{path.name}",
                             kind_setting=kind, features=features)


def _read(path: Path, na_values: Sequence[str]) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"data.path: file not found: {path}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=list(na_values) or None)
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
