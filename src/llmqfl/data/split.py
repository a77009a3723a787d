"""Stratified, seeded splits: the server's test and validation sets, and each client's local test items."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from llmqfl.data.labelled import LabelledData
from llmqfl.errors import DataError

SPLITS = ("train", "test", "server_val")


def allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` over classes in proportion to ``counts`` (largest remainder; ties to lower class)."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() == 0:
        return np.zeros_like(counts)
    exact = total * counts / counts.sum()
    quota = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[: total - int(quota.sum())]] += 1
    return np.minimum(quota, counts)


def stratified_holdout(labels: np.ndarray, n_held: int, rng: np.random.Generator) -> np.ndarray:
    """A boolean mask of ``n_held`` items, spread over classes in proportion to their sizes."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    quota = allocate(np.array([(labels == c).sum() for c in classes]), n_held)
    held = np.zeros(len(labels), dtype=bool)
    for c, q in zip(classes, quota, strict=True):
        held[rng.choice(np.flatnonzero(labels == c), size=int(q), replace=False)] = True
    return held


@dataclass(frozen=True)
class SplitSizes:
    """How many items each split gets for ``n`` items (computed without touching the data)."""

    train: int
    test: int
    server_val: int


def split_sizes(n: int, *, test_fraction: float, server_val_fraction: float) -> SplitSizes:
    """Sizes of train/test/server_val; test and (when its fraction > 0) server_val get at least one item."""
    if n < 3:
        raise DataError(f"data: {n} item(s) after data.max_items; need at least 3 for train/test/server_val")
    n_test = min(max(round(test_fraction * n), 1), n - 2)
    rest = n - n_test
    n_val = 0 if server_val_fraction == 0 else min(max(round(server_val_fraction * rest), 1), rest - 1)
    return SplitSizes(train=rest - n_val, test=n_test, server_val=n_val)


MIN_TRAIN_PER_CLASS = 2  # so a class can sit in some client's local train and local test


def check_class_sizes(data: LabelledData, sizes: SplitSizes) -> None:
    """Refuse a class the stratified split would leave out of test or server_val, or nearly out of train.

    A test set without a class still reports an accuracy, silently on fewer classes; the quotas are
    the same :func:`allocate` numbers :func:`split_data` draws with, so this check is exact.
    """
    counts = np.asarray(data.class_counts(), dtype=np.int64)
    test = allocate(counts, sizes.test)
    val = allocate(counts - test, sizes.server_val)
    train = counts - test - val
    for c, name in enumerate(data.classes):
        if test[c] < 1 or (sizes.server_val and val[c] < 1) or train[c] < MIN_TRAIN_PER_CLASS:
            raise DataError(
                f"data: class {name!r} is too small for the splits: {counts[c]} item(s) of {int(counts.sum())} "
                f"(after deduplication and data.max_items) give test {test[c]}, server_val {val[c]}, train {train[c]}; "
                f"each class needs >= 1 test, >= 1 server_val (when data.server_val_fraction > 0) and "
                f">= {MIN_TRAIN_PER_CLASS} train items; add items of that class or raise data.max_items"
            )


def split_data(
    data: LabelledData, *, test_fraction: float, server_val_fraction: float, seed: int
) -> dict[str, pd.DataFrame]:
    """Stratified train/test split, then server_val carved from the rest; each frame gets a ``row`` id.

    Rows keep source order inside each split; ``row`` is 0..n-1 within its file. A class too small
    to reach every split is a :class:`DataError` with the numbers (:func:`check_class_sizes`).
    """
    sizes = split_sizes(len(data.frame), test_fraction=test_fraction, server_val_fraction=server_val_fraction)
    check_class_sizes(data, sizes)
    rng = np.random.default_rng(seed)
    labels = data.frame["label"].to_numpy()
    test = stratified_holdout(labels, sizes.test, rng)
    rest = np.flatnonzero(~test)
    val = np.zeros(len(labels), dtype=bool)
    val[rest[stratified_holdout(labels[rest], sizes.server_val, rng)]] = True
    masks = {"train": ~test & ~val, "test": test, "server_val": val}
    return {name: _with_row(data.frame[mask]) for name, mask in masks.items()}


def _with_row(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reset_index(drop=True)
    frame.insert(0, "row", np.arange(len(frame), dtype=np.int64))
    return frame
