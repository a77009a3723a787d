"""A config's data, prepared in memory: the three split tables and meta.json's content.

The data stage writes exactly this (``llmqfl.stages.data``); the cost planner (``llmqfl.planning``) and
the config's parse-time checks size a run from it without writing anything.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llmqfl.config import derive_seed
from llmqfl.data.labelled import LabelledData
from llmqfl.data.sequence_groups import Leakage, group_summary
from llmqfl.data.sources import load_checked
from llmqfl.data.split import split_data
from llmqfl.settings import Settings


def item_lengths(data: LabelledData) -> dict[str, Any]:
    """Shortest and longest item (characters) and whether they differ: one-hot DNA features pad every
    item with zeros (unknown bases) to the longest of the whole data set, so every split has one width."""
    lengths = data.frame["item"].astype(str).str.len()
    low, high = (int(lengths.min()), int(lengths.max())) if len(lengths) else (0, 0)
    return {"min": low, "max": high, "variable": low != high}


def prepare(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """The three split tables and meta.json's content for a config (no file output)."""
    section, root = settings.data, settings.seed
    seeds = {"subsample": derive_seed(root, "data", "subsample"), "split": derive_seed(root, "data", "split")}
    data: LabelledData
    data, quality = load_checked(section, seed=seeds["subsample"])
    leakage = Leakage.from_settings(section.leakage)
    tables = split_data(data, test_fraction=section.test_fraction,
                        server_val_fraction=section.server_val_fraction, seed=seeds["split"], leakage=leakage)
    groups = np.concatenate([frame["group"].to_numpy() for frame in tables.values()])
    counts = {
        name: {"total": len(frame), "per_class": np.bincount(frame["label"], minlength=data.n_classes).tolist()}
        for name, frame in tables.items()
    }
    meta = {
        "source": section.source,
        "dataset": data.source,
        "kind": data.kind,
        "kind_reason": data.kind_reason,
        "lengths": item_lengths(data),
        "classes": list(data.classes),
        "n_classes": data.n_classes,
        "feature_columns": list(data.feature_columns),
        "counts": counts,
        "seed": root,
        "derived_seeds": seeds,
        "test_fraction": section.test_fraction,
        "server_val_fraction": section.server_val_fraction,
        "max_items": section.max_items,
        "quality": quality.as_dict(),
        "groups": group_summary(groups, leakage if data.kind == "dna" else None),
    }
    return tables, meta
