"""Every data source named by ``data.source``: the built-ins, registered by name (``llmqfl.registry`` kind
``data_source``), and one entry point that loads, deduplicates and subsamples whichever the config names.
A new source is one module with one :class:`DataSource` class (docs/extending.md)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

from llmqfl.data.csv_source import load_csv
from llmqfl.data.embedded import EMBEDDED, load_embedded
from llmqfl.data.human_or_worm import load_human_or_worm
from llmqfl.data.labelled import LabelledData, balanced_subsample, with_kind_setting
from llmqfl.data.quality import QualityReport, deduplicate
from llmqfl.data.tweet_eval import load_tweet_eval
from llmqfl.errors import ConfigError
from llmqfl.registry import get, register
from llmqfl.settings import DataSettings


@runtime_checkable
class DataSource(Protocol):
    """A data source (``llmqfl.registry`` kind ``data_source``; ``data.source`` names one).

    Static traits (class attributes, ``registry.DATA_SOURCE_TRAITS``): ``item_kind`` (dna, text, or None when
    the items decide), ``online`` (downloaded by the data stage) and ``required`` (the data keys it needs).
    ``load`` reads the labelled items; ``local_files`` names the files it reads (the data rule's inputs: an
    edit re-runs the data stage). Both get the config's ``data`` section (:class:`~llmqfl.settings.DataSettings`:
    ``data.path``, ``data.item_column``, ...).
    """

    item_kind: ClassVar[str | None]
    online: ClassVar[bool]
    required: ClassVar[tuple[str, ...]]

    def load(self, data: DataSettings) -> LabelledData: ...

    def local_files(self, data: DataSettings) -> list[str]: ...


def path_if_file(data: DataSettings) -> list[str]:
    """``data.path`` when it names a file (a source's usual ``local_files``)."""
    path = data.path
    return [str(path)] if path and Path(path).is_file() else []


class _Embedded:
    """A dataset committed to ``data/`` (llmqfl.data.embedded)."""

    dataset: ClassVar[str]
    online, required = False, ()

    def load(self, data: DataSettings) -> LabelledData:
        return load_embedded(self.dataset)

    def local_files(self, data: DataSettings) -> list[str]:
        return [str(EMBEDDED[self.dataset].path)]


@register("data_source", "coding_vs_intergenic")
class CodingVsIntergenic(_Embedded):
    dataset, item_kind = "coding_vs_intergenic", "dna"


@register("data_source", "splice")
class Splice(_Embedded):
    dataset, item_kind = "splice", "dna"


@register("data_source", "rotten_tomatoes")
class RottenTomatoes(_Embedded):
    dataset, item_kind = "rotten_tomatoes", "text"


@register("data_source", "csv")
class Csv:
    """A user's CSV (``data.path``, ``item_column``, ``label_column``; optional ``feature_columns``)."""

    item_kind, online = None, False
    required = ("path", "item_column", "label_column")  # checked by config validation

    def load(self, data: DataSettings) -> LabelledData:
        for key in self.required:  # settings changed after validation (dataclasses.replace)
            if not getattr(data, key):
                raise ConfigError(f"config error: data.{key}: required when data.source is csv")
        return load_csv(str(data.path), item_column=str(data.item_column), label_column=str(data.label_column),
                        feature_columns=data.feature_columns, kind=data.kind, na_values=data.na_values)

    def local_files(self, data: DataSettings) -> list[str]:
        return path_if_file(data)


@register("data_source", "tweet_eval")
class TweetEval:
    """TweetEval sentiment from the hub, or its local copy at ``data.path``."""

    item_kind, online, required = "text", True, ()

    def load(self, data: DataSettings) -> LabelledData:
        return load_tweet_eval(data.path)

    def local_files(self, data: DataSettings) -> list[str]:
        return path_if_file(data)


@register("data_source", "human_or_worm")
class HumanOrWorm:
    """DemoHumanOrWorm (genomic benchmarks) from the hub, or its local copy at ``data.path``."""

    item_kind, online, required = "dna", True, ()

    def load(self, data: DataSettings) -> LabelledData:
        return load_human_or_worm(data.path)

    def local_files(self, data: DataSettings) -> list[str]:
        return path_if_file(data)


def load_source(data: DataSettings, *, seed: int = 0) -> LabelledData:
    """Load ``data.source``, drop duplicates, apply ``data.max_items`` (a balanced subsample drawn with ``seed``).

    ``data`` is the config's ``data`` section.
    """
    return load_checked(data, seed=seed)[0]


def load_checked(data: DataSettings, *, seed: int = 0) -> tuple[LabelledData, QualityReport]:
    """:func:`load_source` plus what deduplication removed (for meta.json and the log).

    Duplicates and conflicting labels are settled on the whole source, before the subsample, so
    ``data.max_items`` counts distinct items and no later split can share an item with another.
    """
    source = get("data_source", data.source)()  # an unknown name: one line listing the known ones
    loaded = with_kind_setting(source.load(data), data.kind)
    loaded, report = deduplicate(loaded, conflicts=data.conflicts)
    return balanced_subsample(loaded, max_items=data.max_items, seed=seed), report


def local_files(data: DataSettings) -> list[str]:
    """Local files the source reads (the Snakemake rule's inputs, so an edit re-runs the data stage)."""
    return get("data_source", data.source)().local_files(data)
