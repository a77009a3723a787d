"""Data hygiene before any split: exact duplicates go, one item under two labels is refused or resolved.

A duplicated item that lands in train and test inflates test accuracy; the same item under two
labels is noise the learner cannot fit. Both are settled here, on the whole source, before the
subsample and the train/test/server_val split, so no split can share an item with another.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd

from llmqfl.data.labelled import LabelledData
from llmqfl.errors import DataError

ConflictPolicy = Literal["refuse", "drop", "majority"]
CONFLICT_POLICIES: tuple[str, ...] = ("refuse", "drop", "majority")


@dataclass(frozen=True)
class QualityReport:
    """What :func:`deduplicate` removed; written into the data stage's meta.json and log."""

    items_in: int
    items_out: int
    duplicates_dropped: int  # extra copies of an item under one label
    conflicting_items: int  # distinct items seen under more than one label
    conflicts_dropped: int  # rows removed to settle those (every copy for drop/ties, the minority for majority)
    conflicts: str

    def as_dict(self) -> dict[str, int | str]:
        return asdict(self)


def deduplicate(data: LabelledData, *, conflicts: ConflictPolicy = "refuse") -> tuple[LabelledData, QualityReport]:
    """Keep the first copy of every item; settle items seen under several labels by ``conflicts``.

    ``refuse`` raises a :class:`DataError` naming how many items conflict and the first one;
    ``drop`` removes every copy of such an item; ``majority`` keeps the item under its most frequent
    label (a tie drops it). Kept rows stay in source order.
    """
    if conflicts not in CONFLICT_POLICIES:
        raise DataError(f"data.conflicts: {conflicts!r} is not one of: {', '.join(CONFLICT_POLICIES)}")
    frame = data.frame
    items, labels = frame["item"].astype(str), frame["label"].to_numpy()
    n_labels = pd.Series(labels).groupby(items.to_numpy()).nunique()
    conflicting = n_labels[n_labels > 1].index
    keep = np.ones(len(frame), dtype=bool)
    if len(conflicting):
        in_conflict = items.isin(conflicting).to_numpy()
        if conflicts == "refuse":
            first = str(conflicting[0])
            shown = first if len(first) <= 60 else first[:57] + "..."
            names = sorted({data.classes[c] for c in labels[(items == first).to_numpy()]})
            raise DataError(f"data.source {data.source}: {len(conflicting)} item(s) appear under more than one "
                            f"label (first: {shown!r} as {', '.join(names)}); fix the data or set data.conflicts "
                            f"to drop or majority")
        if conflicts == "drop":
            keep &= ~in_conflict
        else:
            keep &= ~in_conflict | _majority_rows(items, labels, in_conflict)
    dropped_conflicts = int((~keep).sum())
    first_copy = ~items[keep].duplicated().to_numpy()
    rows = np.flatnonzero(keep)[first_copy]
    report = QualityReport(
        items_in=len(frame),
        items_out=len(rows),
        duplicates_dropped=int(keep.sum()) - len(rows),
        conflicting_items=len(conflicting),
        conflicts_dropped=dropped_conflicts,
        conflicts=conflicts,
    )
    return (data if len(rows) == len(frame) else data.subset(rows)), report


def _majority_rows(items: pd.Series, labels: np.ndarray, in_conflict: np.ndarray) -> np.ndarray:
    """Rows of conflicting items whose label is that item's strict majority label (ties: none kept)."""
    keep = np.zeros(len(items), dtype=bool)
    positions = np.flatnonzero(in_conflict)
    groups = pd.DataFrame({"item": items.to_numpy()[positions], "label": labels[positions], "pos": positions})
    for _, group in groups.groupby("item", sort=False):
        counts = group["label"].value_counts()
        if len(counts) > 1 and counts.iloc[0] == counts.iloc[1]:
            continue
        keep[group.loc[group["label"] == counts.index[0], "pos"].to_numpy()] = True
    return keep
