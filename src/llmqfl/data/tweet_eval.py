"""TweetEval ``sentiment`` (Barbieri et al. 2020; the paper's language task): 3 classes, tweets.

Online it comes from the hub (``cardiffnlp/tweet_eval``, config ``sentiment``). ``data.path`` may
point to a ``save_to_disk`` folder, a hub snapshot (``sentiment/<split>-*.parquet``), or the
TweetEval GitHub layout (``datasets/sentiment/{train,val,test}_{text,labels}.txt`` + ``mapping.txt``).
All splits are pooled: the data stage makes its own seeded split.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from llmqfl.data.hub import load_hub_splits, read_local, read_parquet_snapshot, read_saved_dataset
from llmqfl.data.labelled import LabelledData, from_named_labels
from llmqfl.errors import DataError

REPO, CONFIG = "cardiffnlp/tweet_eval", "sentiment"
CLASSES = ("negative", "neutral", "positive")  # the dataset's label ids 0, 1, 2
SPLIT_ORDER = ("train", "validation", "val", "test")
FORMATS = "a save_to_disk folder, a hub snapshot with sentiment/*.parquet, or TweetEval's datasets/sentiment/*.txt"


def load_tweet_eval(path: str | Path | None = None) -> LabelledData:
    """Pooled TweetEval sentiment, from ``path`` when given, else from the hub."""
    if path is None:
        splits = load_hub_splits(REPO, CONFIG, source="tweet_eval", local_hint=FORMATS)
    else:
        readers = [read_saved_dataset, lambda p: read_parquet_snapshot(p, (CONFIG,)), read_github_layout]
        splits = read_local(path, readers, source="tweet_eval", formats=FORMATS)
    frame = _pool(splits)
    for column in ("text", "label"):
        if column not in frame.columns:
            raise DataError(f"tweet_eval: the data has no column {column!r} (columns {list(frame.columns)})")
    labels = frame["label"].astype(int)
    if not labels.between(0, len(CLASSES) - 1).all():
        raise DataError(f"tweet_eval: labels must be 0..{len(CLASSES) - 1} ({', '.join(CLASSES)})")
    return from_named_labels(frame["text"].astype(str).tolist(), [CLASSES[i] for i in labels], source="tweet_eval",
                             classes=CLASSES, kind="text")


def read_github_layout(path: Path) -> dict[str, pd.DataFrame] | None:
    """TweetEval's own files: ``<split>_text.txt`` (one tweet a line) and ``<split>_labels.txt``."""
    for folder in (path, path / CONFIG, path / "datasets" / CONFIG):
        if not (folder / "train_text.txt").is_file():
            continue
        _check_mapping(folder)
        splits = {}
        for split in ("train", "val", "test"):
            text_file, label_file = folder / f"{split}_text.txt", folder / f"{split}_labels.txt"
            if not text_file.is_file():
                continue
            texts = text_file.read_text(encoding="utf-8").splitlines()
            labels = [int(line) for line in label_file.read_text().split()]
            if len(texts) != len(labels):
                raise ValueError(f"{text_file.name} has {len(texts)} lines but {label_file.name} has {len(labels)}")
            splits[split] = pd.DataFrame({"text": texts, "label": labels})
        return splits
    return None


def _check_mapping(folder: Path) -> None:
    """TweetEval's mapping.txt (``0<TAB>negative`` ...) must agree with CLASSES."""
    mapping = folder / "mapping.txt"
    if mapping.is_file():
        names = [line.split()[1] for line in mapping.read_text().splitlines() if line.strip()]
        if tuple(names) != CLASSES:
            raise ValueError(f"{mapping} maps labels to {names}, expected {list(CLASSES)}")


def _pool(splits: dict[str, pd.DataFrame]) -> pd.DataFrame:
    order = sorted(splits, key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER), s))
    return pd.concat([splits[s] for s in order], ignore_index=True)
