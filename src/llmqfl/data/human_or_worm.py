"""DemoHumanOrWorm (Genomic Benchmarks, Grešová et al. 2023; the paper's genomic task): 200 bp, 2 classes.

Online it comes from the hub (``katarinagresova/Genomic_Benchmarks_demo_human_or_worm``: parquet with
columns ``seq``, ``label``). ``data.path`` may point to a ``save_to_disk`` folder, a hub snapshot
(``data/<split>-*.parquet``), or the genomic-benchmarks folder layout that ``download_dataset``
writes (``<split>/<class>/<id>.txt``, one sequence per file). All splits are pooled and the classes
balanced later (the paper took the first rows of a class-sorted listing and got one class: D13 in docs/differences.md).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from llmqfl.data.hub import load_hub_splits, read_local, read_parquet_snapshot, read_saved_dataset
from llmqfl.data.labelled import LabelledData, from_named_labels
from llmqfl.errors import DataError

REPO = "katarinagresova/Genomic_Benchmarks_demo_human_or_worm"
CLASSES = ("human", "worm")  # genomic-benchmarks numbers classes in sorted folder order: human 0, worm 1
FORMATS = "a save_to_disk folder, a hub snapshot with data/*.parquet, or genomic-benchmarks' <split>/<class>/*.txt"


def load_human_or_worm(path: str | Path | None = None) -> LabelledData:
    """Pooled DemoHumanOrWorm, from ``path`` when given, else from the hub."""
    if path is None:
        splits = load_hub_splits(REPO, None, source="human_or_worm", local_hint=FORMATS)
    else:
        readers = [read_saved_dataset, lambda p: read_parquet_snapshot(p, ("data",)), read_folder_layout]
        splits = read_local(path, readers, source="human_or_worm", formats=FORMATS)
    frame = pd.concat([splits[s] for s in sorted(splits, key=lambda s: (s != "train", s))], ignore_index=True)
    for column in ("seq", "label"):
        if column not in frame.columns:
            raise DataError(f"human_or_worm: the data has no column {column!r} (columns {list(frame.columns)})")
    labels = frame["label"]
    if pd.api.types.is_numeric_dtype(labels):
        if not labels.isin(range(len(CLASSES))).all():
            raise DataError(f"human_or_worm: labels must be 0..{len(CLASSES) - 1} ({', '.join(CLASSES)})")
        labels = [CLASSES[int(i)] for i in labels]
    return from_named_labels(frame["seq"].astype(str).tolist(), list(labels), source="human_or_worm",
                             classes=CLASSES, kind="dna")


def read_folder_layout(path: Path) -> dict[str, pd.DataFrame] | None:
    """genomic-benchmarks' layout: ``<split>/<class>/<id>.txt`` under ``path`` (or ``path/demo_human_or_worm``)."""
    for root in (path, path / "demo_human_or_worm"):
        split_dirs = [root / s for s in ("train", "test") if (root / s / CLASSES[0]).is_dir()]
        if not split_dirs:
            continue
        splits = {}
        for split_dir in split_dirs:
            rows = []
            for name in CLASSES:
                files = sorted((split_dir / name).glob("*.txt"), key=lambda f: (len(f.stem), f.stem))
                rows += [("".join(f.read_text().split()), name) for f in files]
            splits[split_dir.name] = pd.DataFrame(rows, columns=["seq", "label"])
        return splits
    return None
