"""Data hygiene and parse-time checks: no split shares an item, duplicates are dropped and counted,
conflicting labels are refused or resolved as configured, too-small classes and bad values stop early."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmqfl.config import load_settings, validate_config
from llmqfl.data.embedded import EMBEDDED
from llmqfl.data.labelled import from_named_labels
from llmqfl.data.preflight import check_config_data, check_model
from llmqfl.data.quality import deduplicate
from llmqfl.errors import ConfigError, DataError
from llmqfl.quantum.backends.credentials import find_credentials
from llmqfl.settings import Settings
from llmqfl.stages import data as data_stage


@pytest.fixture(autouse=True)
def _no_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMQFL_TRACKING", "off")


def _csv(tmp_path: Path, rows: list[tuple[str, str]], name: str = "d.csv") -> Path:
    path = tmp_path / name
    pd.DataFrame(rows, columns=["text", "y"]).to_csv(path, index=False)
    return path


def _csv_config(path: Path, **data: object) -> Settings:
    return load_settings({"data": {"source": "csv", "path": str(path), "item_column": "text",
                                   "label_column": "y", "max_items": None, **data},
                          "federation": {"n_clients": 2}})


def _items(n: int, prefix: str) -> list[str]:
    return [f"{prefix} item number {i}" for i in range(n)]


@pytest.mark.parametrize("source", sorted(EMBEDDED))
def test_no_split_shares_an_item_with_another(source: str) -> None:
    # Execute: the data stage's own tables for the default config of each embedded source (all items)
    tables, meta = data_stage.prepare(load_settings({"data": {"source": source, "max_items": None}}))
    # Assert
    sets = {name: set(frame["item"]) for name, frame in tables.items()}
    assert not sets["train"] & sets["test"]
    assert not sets["train"] & sets["server_val"]
    assert not sets["test"] & sets["server_val"]
    for name, frame in tables.items():
        assert frame["item"].is_unique, name
    assert sum(len(s) for s in sets.values()) == meta["quality"]["items_out"]


def test_embedded_duplicates_are_dropped_and_counted_in_meta(tmp_path: Path) -> None:
    # Prepare: splice.csv holds 182 exact duplicate rows (same 60 bp, same label)
    raw = pd.read_csv(EMBEDDED["splice"].path, dtype=str, keep_default_na=False)
    # Execute
    assert data_stage.main(["--config", json.dumps({"data": {"source": "splice", "max_items": None}}),
                            "--out-dir", str(tmp_path / "data")]) == 0
    # Assert
    quality = json.loads((tmp_path / "data" / "meta.json").read_text())["quality"]
    assert quality["duplicates_dropped"] == int(raw.duplicated().sum()) == 182
    assert quality["items_in"] == len(raw) and quality["items_out"] == raw["item"].nunique()
    kept = pd.concat(pd.read_parquet(tmp_path / "data" / f"{s}.parquet") for s in ("train", "test", "server_val"))
    assert kept["item"].is_unique and len(kept) == raw["item"].nunique()


def test_csv_duplicates_are_dropped_before_the_split(tmp_path: Path) -> None:
    # Prepare: every item twice (the "12 of 24 test items also in train")
    rows = [(t, "a") for t in _items(30, "a")] + [(t, "b") for t in _items(30, "b")]
    path = _csv(tmp_path, rows + rows)
    # Execute
    tables, meta = data_stage.prepare(_csv_config(path))
    # Assert
    assert meta["quality"]["duplicates_dropped"] == 60 and meta["quality"]["items_out"] == 60
    items = pd.concat(tables.values())["item"]
    assert items.is_unique and len(items) == 60


@pytest.mark.parametrize(("policy", "kept", "dropped"), [("drop", 58, 5), ("majority", 59, 3)])
def test_conflicting_labels_are_resolved_as_configured(tmp_path: Path, policy: str, kept: int, dropped: int) -> None:
    # Prepare: item x0 under a, a, b (majority a); item y0 under a and b (a tie)
    rows = [(t, "a") for t in _items(30, "x")] + [(t, "b") for t in _items(30, "y")]
    rows += [("x item number 0", "a"), ("x item number 0", "b"), ("y item number 0", "a")]
    data = from_named_labels([r[0] for r in rows], [r[1] for r in rows], source="t")
    # Execute
    clean, report = deduplicate(data, conflicts=policy)  # type: ignore[arg-type]
    # Assert
    assert report.conflicting_items == 2 and report.items_out == kept
    assert report.conflicts_dropped == dropped
    frame = clean.frame
    assert frame["item"].is_unique
    assert "y item number 0" not in set(frame["item"])  # a tie is dropped under both policies
    if policy == "majority":
        assert frame.loc[frame["item"] == "x item number 0", "label"].tolist() == [0]


def test_conflicting_labels_are_refused_by_default_at_parse_time(tmp_path: Path) -> None:
    # Prepare
    rows = [(t, "a") for t in _items(30, "a")] + [(t, "b") for t in _items(30, "b")] + [("a item number 3", "b")]
    config = _csv_config(_csv(tmp_path, rows))
    # Execute / Assert
    with pytest.raises(DataError, match=r"1 item\(s\) appear under more than one label .*'a item number 3'.*a, b"):
        check_config_data(config)


def test_a_class_too_small_for_the_splits_is_refused_with_the_numbers(tmp_path: Path) -> None:
    # Prepare: class b has 1 item (the case: test and server_val then hold one class)
    rows = [(t, "a") for t in _items(40, "a")] + [("lonely", "b")]
    config = _csv_config(_csv(tmp_path, rows))
    # Execute / Assert
    with pytest.raises(DataError, match=r"class 'b' is too small for the splits: 1 item\(s\) of 41 .* test 0"):
        check_config_data(config)


def test_non_finite_feature_values_are_refused_at_parse_time(tmp_path: Path) -> None:
    # Prepare
    frame = pd.DataFrame({"text": _items(40, "t"), "y": ["a", "b"] * 20, "f": np.arange(40, dtype=float)})
    frame.loc[7, "f"] = np.inf
    path = tmp_path / "f.csv"
    frame.to_csv(path, index=False)
    # Execute / Assert
    with pytest.raises(DataError, match=r"feature column 'f' has 1 non-finite value\(s\).*row 8"):
        check_config_data(_csv_config(path, feature_columns=["f"]))


def test_an_impossible_dirichlet_split_is_refused_at_parse_time() -> None:
    config = load_settings({"data": {"source": "coding_vs_intergenic", "max_items": 60},
                            "federation": {"n_clients": 20, "partition": {"kind": "dirichlet", "alpha": 0.01}}})
    with pytest.raises(DataError, match=r"dirichlet partition: no draw .* federation.n_clients=20"):
        check_config_data(config)


@pytest.mark.parametrize(("override", "field"), [
    ({"federation": {"n_clients": 2.0}}, "federation.n_clients: 2.0 is not of type integer"),
    ({"federation": {"rounds": 3.0}}, "federation.rounds: 3.0 is not of type integer"),
    ({"seeds": [0, 1.0]}, "seeds.1"),
    ({"qfl": {"initial_point": float("nan")}}, "qfl.initial_point: nan is not a finite number"),
    ({"backend": {"timeout_s": float("inf")}}, "backend.timeout_s: inf is not a finite number"),
])
def test_floats_for_integers_and_non_finite_numbers_name_the_field(override: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        validate_config(override)


def test_unknown_llm_model_is_refused_without_the_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ConfigError, match=r"llm\.model: 'no such model!' is neither"):
        check_model("no such model!")
    with pytest.raises(ConfigError, match=r"llm\.model: 'someone/absent-model' .* not reachable"):
        check_model("someone/absent-model")
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match=r"no config\.json"):
        check_model(str(tmp_path / "folder"))
    check_model("tiny-gpt2")


@pytest.mark.parametrize("instance", ["crn:v1:bluemix", "crn:", "a:b:c", "\t"])
def test_malformed_ibm_instance_is_one_line_naming_the_variable(instance: str, tmp_path: Path) -> None:
    env = {"QISKIT_IBM_TOKEN": "FAKE-TOKEN-0123456789", "QISKIT_IBM_INSTANCE": instance}
    with pytest.raises(ConfigError, match="QISKIT_IBM_INSTANCE") as caught:
        find_credentials(environ=env, path=tmp_path / "none.json")
    assert "FAKE-TOKEN" not in str(caught.value)


def _online_copy(tmp_path: Path, source: str) -> Path:
    """A local copy of an online source in its own layout, each split's items repeated in the next split."""
    rng = np.random.default_rng(0)
    if source == "tweet_eval":
        items = {c: [f"tweet {c} number {i} #x" for i in range(20)] for c in range(3)}
    else:
        items = {c: ["".join(rng.choice(list("ACGT"), 200)) for _ in range(20)] for c in range(2)}
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    for c, rows in items.items():
        splits["train"] += [(t, c) for t in rows[:12]]
        splits["val"] += [(t, c) for t in rows[12:16]] + [(rows[0], c)]  # train's first item again
        splits["test"] += [(t, c) for t in rows[16:]] + [(rows[1], c), (rows[12], c)]  # train's and val's
    if source == "tweet_eval":
        folder = tmp_path / "datasets" / "sentiment"
        folder.mkdir(parents=True)
        (folder / "mapping.txt").write_text("0\tnegative\n1\tneutral\n2\tpositive\n")
        for split, rows in splits.items():
            (folder / f"{split}_text.txt").write_text("\n".join(t for t, _ in rows) + "\n")
            (folder / f"{split}_labels.txt").write_text("\n".join(str(c) for _, c in rows) + "\n")
        return tmp_path
    # genomic-benchmarks' layout has train and test only: val's rows go into train
    for split, rows in {"train": splits["train"] + splits["val"], "test": splits["test"]}.items():
        for i, (seq, c) in enumerate(rows):
            target = tmp_path / "demo_human_or_worm" / split / ("human", "worm")[c]
            target.mkdir(parents=True, exist_ok=True)
            (target / f"{i}.txt").write_text(seq)
    return tmp_path


@pytest.mark.parametrize("source", ["tweet_eval", "human_or_worm"])
def test_online_sources_are_deduplicated_across_their_own_splits(tmp_path: Path, source: str) -> None:
    # Prepare: a local copy whose val and test files repeat 1 and 2 items per class of earlier files
    path = _online_copy(tmp_path, source)
    n_classes = 3 if source == "tweet_eval" else 2
    # Execute
    tables, meta = data_stage.prepare(load_settings({"data": {"source": source, "path": str(path),
                                                              "max_items": None},
                                                     "federation": {"n_clients": 2}}))
    # Assert: the source's own splits are pooled, duplicates dropped and counted, then split again
    assert meta["quality"]["duplicates_dropped"] == 3 * n_classes
    assert meta["quality"]["items_out"] == 20 * n_classes
    items = pd.concat(tables.values())["item"]
    assert items.is_unique and len(items) == 20 * n_classes
