"""What a trained model can read: items checked against what it was trained on, before any prediction.

Why: a DNA model classified English text, an empty string, an integer and ``None`` with confident
probabilities, and ``llmqfl predict`` wrote two ``label`` columns. The bundle records the training items
(:func:`items_spec`: kind, and for DNA the alphabet and the length range of the training items);
:func:`check_items` refuses, in one line naming the rows, an item that is not a string, is empty, has
letters outside the alphabet (named, with their rows) or a length outside the training range.

Lengths: both DNA feature sources could take other lengths (one-hot cuts or zero-pads to the training
width, k-mer frequencies are normalised), but neither was trained on them, so items outside the training
items' length range are refused rather than padded; within the range, one-hot zero-pads a shorter item to
the training width, as it padded the shorter training items.

A bundle written before these checks has no record; it stays loadable and its record is inferred from its
feature source (one-hot: DNA of exactly the training width; k-mer: DNA of at least k letters; both over
A, C, G, T and N; embedding: text).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from llmqfl.errors import DataError

log = logging.getLogger(__name__)
ITEMS_KEY = "items"  # bundle.json: the record of the training items
KINDS = ("dna", "text", "columns")
LEGACY_ALPHABET = "ACGTN"  # what the DNA encoders read (N and any other letter: all zeros)
SHOWN = 5  # rows and letters named in one message


def items_spec(kind: str, items: Iterable[Any] = ()) -> dict[str, Any]:
    """The record of the training items: ``kind``; for DNA the alphabet (upper case) and length range."""
    if kind not in KINDS:
        raise ValueError(f"items kind must be one of {KINDS}, got {kind!r}")
    if kind != "dna":
        return {"kind": kind}
    texts = [str(item).strip().upper() for item in items]
    if not texts:
        raise ValueError("a DNA record needs the training items")
    lengths = [len(t) for t in texts]
    return {"kind": "dna", "alphabet": "".join(sorted(set("".join(texts)))), "lengths": [min(lengths), max(lengths)]}


def spec_of(meta: Mapping[str, Any], *, raw_width: int) -> dict[str, Any]:
    """The bundle's record of its training items, or one inferred from an older bundle's feature source."""
    spec = meta.get(ITEMS_KEY)
    if isinstance(spec, Mapping) and spec.get("kind") in KINDS:
        return dict(spec)
    features = meta.get("features") or {}
    source = features.get("source")
    if source == "onehot":
        width = raw_width // 4
        inferred = {"kind": "dna", "alphabet": LEGACY_ALPHABET, "lengths": [width, width]}
    elif source == "kmer":
        inferred = {"kind": "dna", "alphabet": LEGACY_ALPHABET, "lengths": [int(features.get("k", 3)), None]}
    elif source == "columns":
        inferred = {"kind": "columns"}
    else:
        inferred = {"kind": "text"}
    log.info("model written before item checks: assuming its items were %s", _describe(inferred))
    return inferred


def check_items(values: Sequence[Any], spec: Mapping[str, Any]) -> list[str]:
    """The items as strings, or a :class:`DataError` naming the rows the model cannot read and why."""
    kind = spec["kind"]
    if kind == "columns":
        return [str(v) for v in values]
    not_strings = [i for i, v in enumerate(values) if not isinstance(v, str)]
    if not_strings:
        types = sorted({"None" if values[i] is None else type(values[i]).__name__ for i in not_strings})
        raise DataError(f"input: item(s) that are not strings ({', '.join(types)}) in row(s) {_rows(not_strings)}; "
                        f"this model reads {_describe(spec)}")
    empty = [i for i, v in enumerate(values) if not v.strip()]
    if empty:
        raise DataError(f"input: empty item(s) in row(s) {_rows(empty)}; this model reads {_describe(spec)}")
    if kind == "dna":
        _check_dna([v.strip().upper() for v in values], spec)
    return list(values)


def _check_dna(items: list[str], spec: Mapping[str, Any]) -> None:
    alphabet = set(spec.get("alphabet") or LEGACY_ALPHABET)
    outside: dict[str, list[int]] = {}
    for row, item in enumerate(items):
        for letter in sorted(set(item) - alphabet):
            outside.setdefault(letter, []).append(row)
    if outside:
        shown = "; ".join(f"{letter!r} in row(s) {_rows(rows)}" for letter, rows in sorted(outside.items())[:SHOWN])
        more = f" (and {len(outside) - SHOWN} more letters)" if len(outside) > SHOWN else ""
        raise DataError(f"input: letters outside the model's DNA alphabet {''.join(sorted(alphabet))}: "
                        f"{shown}{more}; the model was trained on DNA, not text")
    low, high = (spec.get("lengths") or [None, None])
    bad = [r for r, item in enumerate(items)
           if (low is not None and len(item) < low) or (high is not None and len(item) > high)]
    if bad:
        lengths = ", ".join(str(len(items[r])) for r in bad[:SHOWN])
        raise DataError(f"input: item length(s) {lengths} in row(s) {_rows(bad)} outside the training items' "
                        f"{_range(low, high)} letters; the model was not trained on them")


def distinct_columns(predicted: Sequence[str], inputs: Sequence[str]) -> dict[str, str]:
    """New names for prediction columns that clash with the input's (``label`` -> ``predicted_label``)."""
    taken = set(inputs) | set(predicted)
    renames = {}
    for column in predicted:
        if column in inputs:
            name = f"predicted_{column}"
            while name in taken:
                name = f"predicted_{name}"
            taken.add(name)
            renames[column] = name
    return renames


def _describe(spec: Mapping[str, Any]) -> str:
    if spec["kind"] != "dna":
        return f"{spec['kind']} items"
    low, high = (spec.get("lengths") or [None, None])
    return f"DNA over {spec.get('alphabet') or LEGACY_ALPHABET} of {_range(low, high)} letters"


def _range(low: int | None, high: int | None) -> str:
    if high is None:
        return f"at least {low}"
    return f"{low}" if low == high else f"{low}..{high}"


def _rows(rows: Sequence[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:SHOWN])
    return shown + (f" (and {len(rows) - SHOWN} more)" if len(rows) > SHOWN else "")
