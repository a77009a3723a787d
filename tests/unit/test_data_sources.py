"""Data sources: embedded CSVs, user CSVs, local copies of the online datasets, offline errors."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmqfl.config import load_settings
from llmqfl.data import load_source
from llmqfl.data.embedded import EMBEDDED
from llmqfl.data.kinds import decide_kind
from llmqfl.data.labelled import balanced_subsample, class_names
from llmqfl.errors import ConfigError, DataError, OfflineError
from llmqfl.settings import DataSettings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


def _csv(tmp_path: Path, frame: pd.DataFrame, name: str = "user.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def _data(fields: dict[str, object]) -> DataSettings:
    """The ``data`` section of a validated config with ``fields`` set."""
    return load_settings({"data": fields}).data


def _csv_cfg(path: Path, **extra: object) -> DataSettings:
    return _data({"source": "csv", "path": str(path), "item_column": "text", "label_column": "y", "max_items": None,
                  **extra})


# Per-class counts after exact duplicates are dropped (the CSVs hold 766 / 765 / 800 rows per class).
@pytest.mark.parametrize(("name", "kind", "classes", "per_class"), [
    ("coding_vs_intergenic", "dna", ("coding", "intergenic"), [766, 730]),
    ("splice", "dna", ("EI", "IE", "N"), [679, 670, 764]),
    ("rotten_tomatoes", "text", ("fresh", "plot", "rotten"), [800, 800, 800]),
])
def test_embedded_sources_are_balanced_and_typed(
    name: str, kind: str, classes: tuple[str, ...], per_class: list[int]
) -> None:
    # Prepare / Execute
    data = load_source(_data({"source": name, "max_items": None}))
    # Assert
    assert data.kind == kind and data.classes == classes
    assert data.class_counts() == per_class
    assert data.frame["item"].map(len).min() > 0
    if kind == "dna":
        lengths = {"coding_vs_intergenic": 200, "splice": 60}[name]
        assert set(data.frame["item"].map(len)) == {lengths}
        assert data.frame["item"].str.fullmatch("[ACGT]+").all()


def test_embedded_csvs_stay_small() -> None:
    for spec in EMBEDDED.values():
        assert spec.path.stat().st_size < 1_000_000, spec.path


def test_splice_junction_consensus_survives_decoding() -> None:
    # Prepare: EI rows have the donor GT right after the 30-base exon side, IE rows the acceptor AG before it
    frame = load_source(_data({"source": "splice", "max_items": None})).frame
    # Execute
    donor = frame[frame["label"] == 0]["item"].str[30:32].eq("GT").mean()
    acceptor = frame[frame["label"] == 1]["item"].str[28:30].eq("AG").mean()
    # Assert
    assert donor > 0.95 and acceptor > 0.95


def test_max_items_draws_a_balanced_seeded_subsample() -> None:
    # Execute
    first = load_source(_data({"source": "splice", "max_items": 301}), seed=7)
    again = load_source(_data({"source": "splice", "max_items": 301}), seed=7)
    other = load_source(_data({"source": "splice", "max_items": 301}), seed=8)
    # Assert
    assert len(first.frame) == 301 and sorted(first.class_counts()) == [100, 100, 101]
    pd.testing.assert_frame_equal(first.frame, again.frame)
    assert not first.frame["item"].equals(other.frame["item"])


def test_balanced_subsample_water_fills_around_a_small_class(tmp_path: Path) -> None:
    # Prepare: class a has 3 items, b and c have 20 each
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(43)], "y": ["a"] * 3 + ["b"] * 20 + ["c"] * 20})
    data = load_source(_csv_cfg(_csv(tmp_path, frame)))
    # Execute
    small = balanced_subsample(data, max_items=21, seed=0)
    # Assert
    assert small.class_counts() == [3, 9, 9]


def test_csv_source_reads_items_labels_and_features(tmp_path: Path) -> None:
    # Prepare
    frame = pd.DataFrame({"text": ["good", "bad", "fine", "awful"], "y": [10, 2, 10, 2], "f1": [0.1, 0.2, 0.3, 0.4]})
    path = _csv(tmp_path, frame)
    # Execute
    data = load_source(_csv_cfg(path, feature_columns=["f1"]))
    # Assert: numeric classes sort numerically (2 before 10)
    assert data.classes == ("2", "10") and data.kind == "text"
    assert data.frame["label"].tolist() == [1, 0, 1, 0]
    assert data.frame["f1"].tolist() == [0.1, 0.2, 0.3, 0.4] and data.feature_columns == ("f1",)


def test_csv_of_dna_is_detected_and_upper_cased(tmp_path: Path) -> None:
    path = _csv(tmp_path, pd.DataFrame({"text": ["acgtn", "ACGGT", "ttta"], "y": ["x", "y", "x"]}))
    data = load_source(_csv_cfg(path))
    assert data.kind == "dna" and data.frame["item"].tolist() == ["ACGTN", "ACGGT", "TTTA"]
    assert decide_kind(["ACGT", "hello"]).kind == "text"
    assert class_names([3.0, 1.0, 2.0]) == ("1", "2", "3")


@pytest.mark.parametrize(("frame", "cfg", "message"), [
    (pd.DataFrame({"text": ["a", "b"], "y": [1, 0]}), {"label_column": "nope"}, "no column 'nope'"),
    (pd.DataFrame({"text": ["a", "b"], "y": [1, 1]}), {}, "label column 'y' has a single class"),
    (pd.DataFrame({"text": ["a", " ", "c"], "y": [1, 0, 1]}), {},
     "column 'text' has 1 empty item(s), first at data row 2"),
    (pd.DataFrame({"text": ["a", "b", "c"], "y": [1, None, 0]}), {}, "column 'y' has 1 missing label(s)"),
    (pd.DataFrame({"text": ["a", "b"], "y": [1, 0], "f": ["x", 1]}), {"feature_columns": ["f"]},
     "feature column 'f' must be numeric"),
])
def test_csv_errors_name_the_file_and_column(tmp_path: Path, frame: pd.DataFrame, cfg: dict, message: str) -> None:
    # Prepare
    path = _csv(tmp_path, frame)
    # Execute / Assert
    with pytest.raises(DataError) as info:
        load_source(_csv_cfg(path, **cfg))
    assert message in str(info.value) and str(path) in str(info.value)


def test_missing_and_unreadable_csv_files_are_data_errors(tmp_path: Path) -> None:
    # Prepare
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage\x00\n\x9c")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    # Execute / Assert
    with pytest.raises(DataError, match=r"file not found: .*absent\.csv"):
        load_source(_csv_cfg(tmp_path / "absent.csv"))
    with pytest.raises(DataError, match=r"cannot read .*binary\.csv"):
        load_source(_csv_cfg(binary))
    with pytest.raises(DataError, match=r"cannot read .*empty\.csv"):
        load_source(_csv_cfg(empty))


def test_csv_source_needs_its_columns_named() -> None:
    with pytest.raises(ConfigError, match=r"data\.item_column"):  # config validation (the source's required trait)
        _data({"source": "csv", "path": "x.csv", "item_column": None, "label_column": "y"})
    valid = _data({"source": "csv", "path": "x.csv", "item_column": "x", "label_column": "y"})
    with pytest.raises(ConfigError, match=r"data\.item_column"):  # the source itself, on settings changed after
        load_source(dataclasses.replace(valid, item_column=None))


@pytest.mark.parametrize("folder", ["tweet_eval_github", "tweet_eval_hub", "tweet_eval_saved"])
def test_tweet_eval_reads_every_local_format_the_same(folder: str) -> None:
    # Execute
    data = load_source(_data({"source": "tweet_eval", "path": str(FIXTURES / folder), "max_items": None}))
    # Assert: 8 tweets per class over train (4), validation (2), test (2), pooled in that order
    assert data.kind == "text" and data.classes == ("negative", "neutral", "positive")
    assert data.class_counts() == [8, 8, 8]
    assert data.frame["item"].iloc[0] == "@user worst service ever, never again #train0"
    assert data.frame["item"].iloc[-1].endswith("#test1")


@pytest.mark.parametrize("folder", ["human_or_worm_folder", "human_or_worm_hub", "human_or_worm_saved"])
def test_human_or_worm_reads_every_local_format_the_same(folder: str) -> None:
    # Execute
    data = load_source(_data({"source": "human_or_worm", "path": str(FIXTURES / folder), "max_items": None}))
    # Assert
    assert data.kind == "dna" and data.classes == ("human", "worm")
    assert data.class_counts() == [9, 9]
    assert set(data.frame["item"].map(len)) == {200}
    reference = load_source(_data({"source": "human_or_worm", "path": str(FIXTURES / "human_or_worm_hub"),
                             "max_items": None}))
    assert sorted(data.frame["item"]) == sorted(reference.frame["item"])
    by_item = dict(zip(reference.frame["item"], reference.frame["label"], strict=True))
    assert all(by_item[i] == y for i, y in zip(data.frame["item"], data.frame["label"], strict=True))


def test_local_copy_in_an_unknown_layout_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="is not a local copy of tweet_eval"):
        load_source(_data({"source": "tweet_eval", "path": str(tmp_path)}))
    with pytest.raises(DataError, match="does not exist"):
        load_source(_data({"source": "human_or_worm", "path": str(tmp_path / "missing")}))


@pytest.mark.parametrize("source", ["tweet_eval", "human_or_worm"])
@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}])
def test_online_source_without_network_or_copy_is_a_quick_offline_error(
    source: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: no network (offline flag, or an endpoint that refuses connections) and no data.path
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    start = time.monotonic()
    # Execute / Assert
    with pytest.raises(OfflineError, match=f"data.source {source}: .*not reachable.*set data.path"):
        load_source(_data({"source": source, "path": None}))
    assert time.monotonic() - start < 10


def test_labels_are_contiguous_integers() -> None:
    data = load_source(_data({"source": "rotten_tomatoes", "max_items": 30}), seed=1)
    assert data.frame["label"].dtype == np.int64
    assert set(data.frame["label"]) == {0, 1, 2}


@pytest.mark.parametrize(("source", "repo", "config", "saved"), [
    ("tweet_eval", "cardiffnlp/tweet_eval", "sentiment", "tweet_eval_saved"),
    ("human_or_worm", "katarinagresova/Genomic_Benchmarks_demo_human_or_worm", None, "human_or_worm_saved"),
])
def test_online_path_asks_the_hub_for_the_right_dataset(
    source: str, repo: str, config: str | None, saved: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a reachable hub whose load_dataset answers with the saved fixture
    import datasets

    from llmqfl.data import hub

    calls: list[tuple[object, ...]] = []

    def fake_load_dataset(*args: object) -> datasets.DatasetDict:
        calls.append(args)
        return datasets.load_from_disk(str(FIXTURES / saved))

    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    # Execute
    data = load_source(_data({"source": source, "path": None, "max_items": None}))
    # Assert
    assert calls == [(repo, config) if config else (repo,)]
    local = load_source(_data({"source": source, "path": str(FIXTURES / saved), "max_items": None}))
    pd.testing.assert_frame_equal(data.frame, local.frame)


def test_hub_failure_after_the_probe_is_an_offline_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    from llmqfl.data import hub

    def refuse(*args: object) -> None:
        raise ConnectionError("Couldn't reach 'cardiffnlp/tweet_eval' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(datasets, "load_dataset", refuse)
    with pytest.raises(OfflineError, match=r"could not download cardiffnlp/tweet_eval .*Couldn't reach.*data\.path"):
        load_source(_data({"source": "tweet_eval", "path": None}))
