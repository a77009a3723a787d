"""The stage file contract's tables as schemas, checked where a file is read (``io.read_checked_parquet``).

Why: intermediate files were trusted too far. A history whose accuracy was 2.8 went into the evaluation,
and a teacher file with one item twice (different probabilities) was used with the last copy winning.
Each schema names a file's columns with their type and range, the columns that identify a row (unique),
and the vector columns whose rows are probability distributions; :func:`check_frame` refuses a frame
that breaks it with one :class:`~llmqfl.errors.DataError` line naming the file, the column and the rows.
The tables themselves are in ``docs/architecture.md`` ("The stage file contract").
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from llmqfl.contracts import HISTORY_DTYPES, SERVER
from llmqfl.errors import DataError

SHOWN = 5  # offending rows named in one message
PROBABILITY_TOLERANCE = 1e-4  # teacher probabilities are stored as float32


@dataclass(frozen=True)
class Column:
    """One column: ``kind`` int, float (NaN allowed), str, vector (1-D, finite, one length) or any."""

    kind: str
    low: float | None = None
    high: float | None = None
    values: tuple[str, ...] = ()  # the allowed values of a str column (empty: any)


@dataclass(frozen=True)
class Schema:
    """A file of the contract: its columns, the columns that identify a row, its probability columns."""

    name: str
    columns: Mapping[str, Column]
    unique: tuple[str, ...] = ()
    distributions: tuple[str, ...] = ()


SPLITS = ("train", "test", "server_val")
ROW = Column("int", low=0)
DATA_SPLIT = Schema("data split", {"row": ROW, "item": Column("any"), "label": ROW}, unique=("row",))
PARTITION = Schema("client partition", {"row": ROW, "label": ROW, "split": Column("str", values=("train", "test"))},
                   unique=("row",))
TEACHER = Schema("teacher outputs", {"row": ROW, "probs": Column("vector")}, unique=("row",),
                 distributions=("probs",))
EMBEDDINGS = Schema("embeddings", {"split": Column("str", values=SPLITS), "row": ROW, "embedding": Column("vector")},
                    unique=("split", "row"))
_UNIT = ("train_accuracy", "test_accuracy", "test_f1")
_HISTORY_COLUMNS = {
    name: Column("int" if dtype == "int64" else "float" if dtype == "float64" else "any",
                 low=0.0 if dtype in ("int64", "float64") else None, high=1.0 if name in _UNIT else None)
    for name, dtype in HISTORY_DTYPES.items()
}
_HISTORY_COLUMNS.update(round=Column("int", low=1), client=Column("int", low=SERVER))
HISTORY = Schema("history", _HISTORY_COLUMNS, unique=("round", "client"))


def check_frame(frame: pd.DataFrame, schema: Schema, source: str) -> None:
    """A :class:`DataError` naming ``source`` unless ``frame`` keeps ``schema`` (columns it lacks are not checked:
    the reader asks for the ones it needs)."""
    for name, column in schema.columns.items():
        if name in frame.columns:
            _check_column(frame[name], name, column, source)
    keys = list(schema.unique)
    if keys and all(k in frame.columns for k in keys):
        duplicated = frame.duplicated(keys, keep=False).to_numpy()
        if duplicated.any():
            first = frame.loc[duplicated, keys].drop_duplicates().head(SHOWN)
            shown = ", ".join(str(tuple(v) if len(keys) > 1 else v[0]) for v in first.itertuples(index=False))
            raise DataError(f"{source}: {schema.name}: {' and '.join(keys)} must be unique; repeated: {shown}")
    for name in schema.distributions:
        if name in frame.columns:
            _check_distributions(frame[name], name, source)


def check_shares(payload: Any, source: str) -> None:
    """A :class:`DataError` naming ``source`` and the key where a JSON record holds an accuracy, F1 or
    majority rate (any key with ``accuracy``, ``f1`` or ``rate`` in its name) outside [0, 1]."""
    for path, value in _numbers(payload, ""):
        leaf = path.rsplit(".", 1)[-1]
        if any(word in leaf for word in _SHARE_WORDS) and not (0.0 <= value <= 1.0):
            raise DataError(f"{source}: {path.lstrip('.')}: {value!r} is not in [0, 1]")


_SHARE_WORDS = ("accuracy", "f1", "majority_rate")


def _numbers(payload: Any, path: str) -> Iterator[tuple[str, float]]:
    """(dotted key, value) of every finite number in a JSON record (list items under their key)."""
    if isinstance(payload, Mapping):
        for key, value in payload.items():
            yield from _numbers(value, f"{path}.{key}")
    elif isinstance(payload, list):
        for value in payload:
            yield from _numbers(value, path)
    elif isinstance(payload, int | float) and not isinstance(payload, bool) and math.isfinite(payload):
        yield path, float(payload)


def _check_column(values: pd.Series, name: str, column: Column, source: str) -> None:
    if column.kind == "any" or values.empty:
        return
    if column.kind == "vector":
        _vectors(values, name, source)
        return
    if column.kind == "str":
        bad = ~values.map(lambda v: isinstance(v, str) and (not column.values or v in column.values))
        if bad.any():
            allowed = f" one of {', '.join(column.values)}" if column.values else " text"
            raise DataError(f"{source}: column {name}: values must be{allowed}; got {_values(values[bad])} "
                            f"in file row(s) {_rows(bad)}")
        return
    numbers = pd.to_numeric(values, errors="coerce")
    missing = numbers.isna() & (values.notna() if column.kind == "float" else True)
    if column.kind == "int":
        missing |= numbers.notna() & (numbers % 1 != 0)
    if missing.any():
        expected = "integers" if column.kind == "int" else "numbers"
        raise DataError(f"{source}: column {name}: values must be {expected}; got {_values(values[missing])} "
                        f"in file row(s) {_rows(missing)}")
    outside = pd.Series(False, index=values.index)
    if column.low is not None:
        outside |= numbers < column.low
    if column.high is not None:
        outside |= numbers > column.high
    if outside.any():
        raise DataError(f"{source}: column {name}: values must lie in {_interval(column)}; got "
                        f"{_values(values[outside])} in file row(s) {_rows(outside)}")


def _vectors(values: pd.Series, name: str, source: str) -> np.ndarray:
    try:
        rows = [np.asarray(v, dtype=np.float64) for v in values]
    except (TypeError, ValueError) as exc:
        raise DataError(f"{source}: column {name}: every value must be a vector of numbers") from exc
    lengths = {r.shape for r in rows}
    if len(lengths) != 1 or len(next(iter(lengths))) != 1:
        raise DataError(f"{source}: column {name}: vectors of one length needed, got shapes {sorted(lengths)[:SHOWN]}")
    stacked = np.stack(rows)
    bad = ~np.isfinite(stacked).all(axis=1)
    if bad.any():
        raise DataError(f"{source}: column {name}: non-finite values in file row(s) {_rows(pd.Series(bad))}")
    return stacked


def _check_distributions(values: pd.Series, name: str, source: str) -> None:
    probs = _vectors(values, name, source)
    bad = (probs < 0).any(axis=1) | ~np.isclose(probs.sum(axis=1), 1.0, atol=PROBABILITY_TOLERANCE, rtol=0)
    if bad.any():
        raise DataError(f"{source}: column {name}: rows must be probability distributions (>= 0, summing to 1); "
                        f"not in file row(s) {_rows(pd.Series(bad))}")


def _interval(column: Column) -> str:
    low = "-inf" if column.low is None else f"{column.low:g}"
    high = "inf" if column.high is None else f"{column.high:g}"
    return f"[{low}, {high}]"


def _values(values: pd.Series) -> str:
    return ", ".join(repr(v) for v in values.head(SHOWN).tolist())


def _rows(mask: pd.Series | Sequence[bool]) -> str:
    positions = np.flatnonzero(np.asarray(mask, dtype=bool))
    shown = ", ".join(str(int(p)) for p in positions[:SHOWN])
    return shown + (f" (and {len(positions) - SHOWN} more)" if len(positions) > SHOWN else "")
