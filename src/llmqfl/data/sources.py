"""One entry point for every data source named by ``data.source`` in the config."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmqfl.data.csv_source import load_csv
from llmqfl.data.embedded import EMBEDDED, load_embedded
from llmqfl.data.human_or_worm import load_human_or_worm
from llmqfl.data.labelled import LabelledData, balanced_subsample, with_kind_setting
from llmqfl.data.quality import QualityReport, deduplicate
from llmqfl.data.tweet_eval import load_tweet_eval
from llmqfl.errors import ConfigError

ONLINE_SOURCES = ("tweet_eval", "human_or_worm")
LOCAL_SOURCES = (*EMBEDDED, "csv")


def load_source(data_cfg: Mapping[str, Any], *, seed: int = 0) -> LabelledData:
    """Load ``data.source``, drop duplicates, apply ``data.max_items`` (a balanced subsample drawn with ``seed``).

    ``data_cfg`` is the validated ``data`` section of the config.
    """
    return load_checked(data_cfg, seed=seed)[0]


def load_checked(data_cfg: Mapping[str, Any], *, seed: int = 0) -> tuple[LabelledData, QualityReport]:
    """:func:`load_source` plus what deduplication removed (for meta.json and the log).

    Duplicates and conflicting labels are settled on the whole source, before the subsample, so
    ``data.max_items`` counts distinct items and no later split can share an item with another.
    """
    source = data_cfg.get("source")
    if source not in (*LOCAL_SOURCES, *ONLINE_SOURCES):
        known = ", ".join((*LOCAL_SOURCES, *ONLINE_SOURCES))
        raise ConfigError(f"config error: data.source: {source!r} is not one of: {known}")
    if source == "csv":
        for key in ("path", "item_column", "label_column"):
            if not data_cfg.get(key):
                raise ConfigError(f"config error: data.{key}: required when data.source is csv")
    data = with_kind_setting(_load(source, data_cfg), data_cfg.get("kind") or "auto")
    data, report = deduplicate(data, conflicts=data_cfg.get("conflicts") or "refuse")
    return balanced_subsample(data, max_items=data_cfg.get("max_items"), seed=seed), report


def _load(source: str, data_cfg: Mapping[str, Any]) -> LabelledData:
    if source in EMBEDDED:
        return load_embedded(source)
    if source == "csv":
        return load_csv(data_cfg["path"], item_column=data_cfg["item_column"], label_column=data_cfg["label_column"],
                        feature_columns=data_cfg.get("feature_columns"), kind=data_cfg.get("kind") or "auto",
                        na_values=data_cfg.get("na_values") or ())
    if source == "tweet_eval":
        return load_tweet_eval(data_cfg.get("path"))
    return load_human_or_worm(data_cfg.get("path"))


def local_files(data_cfg: Mapping[str, Any]) -> list[str]:
    """Local files the source reads (the Snakemake rule's inputs, so an edit re-runs the data stage)."""
    source = data_cfg.get("source")
    if source in EMBEDDED:
        return [str(EMBEDDED[source].path)]
    path = data_cfg.get("path")
    return [str(path)] if path and Path(path).is_file() else []
