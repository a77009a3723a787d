"""The in-memory form every data source returns: items, integer labels, class names, kind.

Labels are normalised one way for every source (:func:`label_name`): surrounding spaces go, and a
label that reads as a decimal number is written as that number's shortest form, so ``"1"``,
``"1.0"``, ``" 01 "`` and ``1.0`` are one class ``1`` whether or not every label is numeric;
any other label is its text. The kind (DNA or text) is decided in :mod:`llmqfl.data.kinds`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

import numpy as np
import pandas as pd

from llmqfl.data.kinds import Kind, decide_kind
from llmqfl.errors import DataError

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class LabelledData:
    """A labelled dataset: ``frame`` has ``item`` (str), ``label`` (int 0..C-1) and any feature columns.

    ``classes[label]`` is the class name; ``kind`` tells later stages whether items are DNA (k-mers,
    one-hot) or text (LLM embeddings).
    """

    frame: pd.DataFrame
    classes: tuple[str, ...]
    kind: Kind
    source: str
    feature_columns: tuple[str, ...] = field(default=())
    kind_reason: str = ""  # why ``kind`` (llmqfl.data.kinds): meta.json and the data stage's log

    def __post_init__(self) -> None:
        missing = {"item", "label", *self.feature_columns} - set(self.frame.columns)
        if missing:
            raise ValueError(f"LabelledData frame lacks columns {sorted(missing)}")
        labels = self.frame["label"].to_numpy()
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise ValueError("LabelledData labels must lie in 0..n_classes-1")

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> list[int]:
        """Items per class, in class order."""
        return np.bincount(self.frame["label"].to_numpy(), minlength=self.n_classes).tolist()

    def subset(self, rows: np.ndarray) -> LabelledData:
        """The rows at positions ``rows`` (kept in the given order), re-indexed from 0."""
        frame = self.frame.iloc[np.asarray(rows, dtype=np.int64)].reset_index(drop=True)
        return replace(self, frame=frame)


def label_name(value: object) -> str:
    """The class name of one label value: stripped text; a decimal number in its shortest form (1.0 -> 1)."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    text = repr(float(value)) if isinstance(value, (float, np.floating)) else str(value).strip()
    if not _NUMBER.match(text):
        return text
    number = Decimal(text)
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


def class_names(values: Sequence[object]) -> tuple[str, ...]:
    """Sorted distinct normalised labels (:func:`label_name`); all-numeric names sort as numbers (2 < 10)."""
    names = set(label_name(v) for v in values)
    if all(_NUMBER.match(name) for name in names):
        return tuple(sorted(names, key=Decimal))
    return tuple(sorted(names))


def from_named_labels(
    items: Sequence[str],
    labels: Sequence[object],
    *,
    source: str,
    classes: Sequence[str] | None = None,
    kind: Kind | None = None,
    kind_setting: str = "auto",
    features: pd.DataFrame | None = None,
) -> LabelledData:
    """Build :class:`LabelledData` from items and label values (names or numbers).

    ``classes`` fixes the class order (a label outside it is a :class:`DataError`); by default the
    sorted distinct values. ``kind`` is the kind the source fixes, ``kind_setting`` the config's
    ``data.kind`` (:func:`llmqfl.data.kinds.decide_kind`). DNA items are upper-cased so that k-mers
    and one-hot agree.
    """
    items = [str(item) for item in items]
    names = class_names(labels) if classes is None else tuple(classes)
    index = {name: i for i, name in enumerate(names)}
    try:
        codes = np.array([index[label_name(v)] for v in labels], dtype=np.int64)
    except KeyError as exc:
        raise DataError(f"{source}: label {exc.args[0]!r} is not one of the classes {list(names)}") from exc
    decision = decide_kind(items, setting=kind_setting, declared=kind, source=source)
    kind = decision.kind
    if kind == "dna":
        items = [item.upper() for item in items]
    frame = pd.DataFrame({"item": pd.Series(items, dtype=object), "label": codes})
    columns: tuple[str, ...] = ()
    if features is not None:
        columns = tuple(str(c) for c in features.columns)
        for column in columns:
            frame[column] = features[column].to_numpy(dtype=np.float64)
    return LabelledData(frame, names, kind, source, columns, decision.reason)


def with_kind_setting(data: LabelledData, setting: str) -> LabelledData:
    """``data`` under ``data.kind`` = ``setting``: a source's fixed kind gives way to an explicit setting."""
    if setting == "auto":
        return data
    decision = decide_kind(data.frame["item"].astype(str).tolist(), setting=setting, source=data.source)
    frame = data.frame
    if decision.kind == "dna" and data.kind != "dna":
        frame = frame.assign(item=frame["item"].astype(str).str.upper())
    return replace(data, frame=frame, kind=decision.kind, kind_reason=decision.reason)


def balanced_subsample(data: LabelledData, *, max_items: int | None, seed: int) -> LabelledData:
    """At most ``max_items`` rows, as equal per class as the class sizes allow, drawn with ``seed``.

    Classes smaller than their share give all their items and the rest is spread over the larger
    classes (water-filling). Kept rows stay in source order.
    """
    if max_items is None or max_items >= len(data.frame):
        return data
    counts = np.array(data.class_counts())
    quota = _water_fill(counts, max_items)
    rng = np.random.default_rng(seed)
    labels = data.frame["label"].to_numpy()
    chosen = [rng.choice(np.flatnonzero(labels == c), size=q, replace=False) for c, q in enumerate(quota) if q]
    return data.subset(np.sort(np.concatenate(chosen)))


def _water_fill(counts: np.ndarray, total: int) -> np.ndarray:
    """Per-class quotas summing to ``min(total, counts.sum())``, as equal as ``counts`` allow."""
    quota = np.zeros_like(counts)
    remaining = min(total, int(counts.sum()))
    while remaining > 0:
        open_classes = np.flatnonzero(quota < counts)
        share, extra = divmod(remaining, len(open_classes))
        for rank, c in enumerate(open_classes):
            add = min(share + (1 if rank < extra else 0), counts[c] - quota[c])
            quota[c] += add
            remaining -= add
    return quota
