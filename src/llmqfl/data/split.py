"""Stratified, seeded splits: the server's test and validation sets, and each client's local test items.

Related DNA items (repeats, reverse complements: :mod:`llmqfl.data.sequence_groups`) form groups,
and every split keeps a group on one side, so no test item is a near-copy of a training item.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from llmqfl.data.labelled import LabelledData
from llmqfl.data.sequence_groups import Leakage, sequence_groups, singleton_groups
from llmqfl.errors import DataError

SPLITS = ("train", "test", "server_val")
# A held-out class takes no group larger than this share of its quota (one item always fits), so a
# repeat family stays in train rather than filling most of a test or server_val class.
MAX_GROUP_SHARE = 0.1


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
    return grouped_holdout(labels, n_held, rng)


def grouped_holdout(
    labels: np.ndarray,
    n_held: int,
    rng: np.random.Generator,
    *,
    groups: np.ndarray | None = None,
    eligible: np.ndarray | None = None,
) -> np.ndarray:
    """A mask of whole ``groups`` holding about ``n_held`` items of the ``eligible`` pool, stratified by class.

    Class quotas are :func:`allocate` over the pool. Per class (in label order) as many groups as
    the quota are drawn (each group once, whatever its size) and taken largest first while they fit
    every class's quota; the class's other groups, in a seeded order, fill any gap. A group larger
    than :data:`MAX_GROUP_SHARE` of a quota (a repeat family), or with an item outside ``eligible``,
    is never held out, and a group that never fits stays out, so a quota may fall short by a few
    items. With one item per group this is exactly the plain stratified draw (same random numbers,
    same items).
    """
    labels = np.asarray(labels)
    n = len(labels)
    groups = np.arange(n) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
    pool = np.ones(n, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    n_groups = int(groups.max()) + 1 if n else 0
    classes, counts = np.unique(labels[pool], return_counts=True)
    quota = allocate(counts, n_held)
    per_group = np.zeros((n_groups, len(classes)), dtype=np.int64)
    np.add.at(per_group, (groups[pool], np.searchsorted(classes, labels[pool])), 1)
    free = np.bincount(groups[~pool], minlength=n_groups) == 0
    first = np.full(n_groups, n, dtype=np.int64)
    np.minimum.at(first, groups, np.arange(n))
    home, size = per_group.argmax(axis=1), per_group.sum(axis=1)
    free &= (per_group <= np.maximum(1, np.floor(MAX_GROUP_SHARE * quota))).all(axis=1)
    taken, held = np.zeros(n_groups, dtype=bool), np.zeros(len(classes), dtype=np.int64)

    def fill(candidates: np.ndarray, c: int) -> None:
        for g in candidates[np.argsort(-size[candidates], kind="stable")]:
            if held[c] >= quota[c]:
                return
            if not taken[g] and (held + per_group[g] <= quota).all():
                taken[g] = True
                held[:] += per_group[g]

    for c in range(len(classes)):
        units = np.sort(first[free & (home == c)])
        if not len(units):
            continue
        fill(groups[rng.choice(units, size=min(int(quota[c] - held[c]), len(units)), replace=False)], c)
        if held[c] < quota[c]:
            rest = groups[units]
            fill(rng.permutation(rest[~taken[rest]]), c)
    return taken[groups]


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


def item_groups(data: LabelledData, leakage: Leakage | None = None) -> np.ndarray:
    """Group ids of ``data``'s items: related DNA sequences share one; any other item is its own group."""
    if data.kind == "dna":
        return sequence_groups(data.frame["item"].tolist(), leakage)
    return singleton_groups(len(data.frame))


def split_data(
    data: LabelledData,
    *,
    test_fraction: float,
    server_val_fraction: float,
    seed: int,
    leakage: Leakage | None = None,
) -> dict[str, pd.DataFrame]:
    """Stratified train/test split, then server_val carved from the rest, by whole groups (:func:`item_groups`).

    Each frame gets a ``row`` id (0..n-1 within its file) and a ``group`` column (ids shared across
    the three files, so the partition stage keeps a group on one side of a client's local split).
    Rows keep source order inside each split. A class too small to reach every split is a
    :class:`DataError` with the numbers (:func:`check_class_sizes`, then the same minimums on the
    grouped draw).
    """
    sizes = split_sizes(len(data.frame), test_fraction=test_fraction, server_val_fraction=server_val_fraction)
    check_class_sizes(data, sizes)
    groups = item_groups(data, leakage)
    rng = np.random.default_rng(seed)
    labels = data.frame["label"].to_numpy()
    test = grouped_holdout(labels, sizes.test, rng, groups=groups)
    val = grouped_holdout(labels, sizes.server_val, rng, groups=groups, eligible=~test)
    masks = {"train": ~test & ~val, "test": test, "server_val": val}
    _check_grouped_counts(data, masks, need_val=sizes.server_val > 0)
    frame = data.frame.copy()
    frame.insert(2, "group", groups)
    return {name: _with_row(frame[mask]) for name, mask in masks.items()}


def _check_grouped_counts(data: LabelledData, masks: dict[str, np.ndarray], *, need_val: bool) -> None:
    """The minimums of :func:`check_class_sizes`, on what the grouped draw gave."""
    labels = data.frame["label"].to_numpy()
    got = {name: np.bincount(labels[mask], minlength=data.n_classes) for name, mask in masks.items()}
    for c, name in enumerate(data.classes):
        if got["test"][c] < 1 or (need_val and got["server_val"][c] < 1) or got["train"][c] < MIN_TRAIN_PER_CLASS:
            raise DataError(
                f"data: class {name!r} cannot reach every split without cutting a group of related sequences "
                f"(data.leakage): test {got['test'][c]}, server_val {got['server_val'][c]}, train "
                f"{got['train'][c]}; add items of that class, raise data.max_items or data.leakage.min_shared_kmers"
            )


def _with_row(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reset_index(drop=True)
    frame.insert(0, "row", np.arange(len(frame), dtype=np.int64))
    return frame
