"""Atomic file output: a stage that fails leaves no partial file behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from llmqfl.errors import DataError
from llmqfl.file_contract import Schema, check_frame

OUTPUT_MARKER = ".llmqfl-output"


def _refuse_foreign_directory(target: Path) -> None:
    """Raise unless ``target`` is absent, a file, holds no file (Snakemake pre-creates the empty folders
    of a rule's outputs, e.g. ``report/figures/``), or is a folder an llmqfl stage wrote."""
    if target.is_symlink() or not target.is_dir():
        return
    if (target / OUTPUT_MARKER).exists() or not any(p.is_file() or p.is_symlink() for p in target.rglob("*")):
        return
    raise DataError(f"{target}: refusing to replace a folder that no llmqfl stage wrote (no {OUTPUT_MARKER} in it)")


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success.

    Works for files and directories (the caller creates whichever it needs at the yielded path).
    A directory written here carries an :data:`OUTPUT_MARKER` file; an existing directory is only
    ever replaced when it carries one, so a stage can never delete a folder it did not create
    (say, the committed ``data/`` under a mistyped output path).
    """
    target = Path(target)
    _refuse_foreign_directory(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp = tmp_dir / target.name
    try:
        yield tmp
        if tmp.is_dir():
            (tmp / OUTPUT_MARKER).write_text("written by llmqfl; the next run of its stage replaces this folder\n")
        _refuse_foreign_directory(target)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_json(target: str | Path, payload: Any) -> None:
    """Write JSON atomically, keys sorted so that equal content is equal bytes."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_to_builtin) + "\n")


def write_parquet(target: str | Path, frame: pd.DataFrame) -> None:
    """Write a DataFrame atomically, without the index."""
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False)


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; a corrupt one is a :class:`DataError` naming the file."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON: {exc}") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or type(exc).__name__}") from exc


def read_parquet(path: str | Path) -> pd.DataFrame:
    """Read a parquet file; a corrupt one is a :class:`DataError` naming the file."""
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise DataError(f"{path}: cannot read parquet: {exc}") from exc


def read_checked_parquet(path: str | Path, columns: Sequence[str], schema: Schema | None = None) -> pd.DataFrame:
    """The parquet file at ``path`` with at least ``columns``, kept to its contract ``schema`` (types, ranges,
    unique rows, probabilities: ``llmqfl.file_contract``); anything else is a one-line DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"input file not found: {path}")
    frame = read_parquet(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    if schema is not None:
        check_frame(frame, schema, str(path))
    return frame


def _to_builtin(value: Any) -> Any:
    """JSON fallback for numpy scalars and arrays."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
