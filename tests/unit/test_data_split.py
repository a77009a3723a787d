"""The server's split (train / test / server_val) and the parse-time data preflight."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmqfl.config import load_settings
from llmqfl.data import check_config_data, load_source, split_data, split_sizes
from llmqfl.data.split import allocate, stratified_holdout
from llmqfl.errors import DataError, OfflineError
from llmqfl.settings import Settings


def test_allocate_splits_proportionally_by_largest_remainder() -> None:
    assert allocate(np.array([50, 30, 20]), 10).tolist() == [5, 3, 2]
    assert allocate(np.array([1, 1, 1]), 2).tolist() == [1, 1, 0]
    assert allocate(np.array([7, 3]), 3).sum() == 3


def test_stratified_holdout_keeps_class_shares() -> None:
    # Prepare
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    # Execute
    held = stratified_holdout(labels, 20, np.random.default_rng(0))
    # Assert
    assert held.sum() == 20
    assert np.bincount(labels[held]).tolist() == [12, 6, 2]


def test_split_sizes_follow_the_fractions() -> None:
    sizes = split_sizes(600, test_fraction=0.2, server_val_fraction=0.1)
    assert (sizes.train, sizes.test, sizes.server_val) == (432, 120, 48)
    assert split_sizes(5, test_fraction=0.01, server_val_fraction=0.0).test == 1
    with pytest.raises(DataError, match="need at least 3"):
        split_sizes(2, test_fraction=0.5, server_val_fraction=0.1)


def test_split_is_stratified_disjoint_and_complete() -> None:
    # Prepare
    data = load_source(load_settings({"data": {"source": "splice", "max_items": 300}}).data, seed=3)
    # Execute
    tables = split_data(data, test_fraction=0.2, server_val_fraction=0.1, seed=11)
    # Assert
    assert [len(tables[s]) for s in ("train", "test", "server_val")] == [216, 60, 24]
    for frame in tables.values():
        assert frame["row"].tolist() == list(range(len(frame)))
        assert list(frame.columns[:3]) == ["row", "item", "label"]
        counts = np.bincount(frame["label"], minlength=3)
        assert counts.max() - counts.min() <= 1
    pooled = pd.concat([tables[s]["item"] for s in tables])
    assert sorted(pooled) == sorted(data.frame["item"])


def test_split_is_seeded() -> None:
    data = load_source(load_settings({"data": {"source": "coding_vs_intergenic", "max_items": 200}}).data, seed=0)
    first = split_data(data, test_fraction=0.25, server_val_fraction=0.1, seed=5)
    again = split_data(data, test_fraction=0.25, server_val_fraction=0.1, seed=5)
    other = split_data(data, test_fraction=0.25, server_val_fraction=0.1, seed=6)
    pd.testing.assert_frame_equal(first["test"], again["test"])
    assert set(first["test"]["item"]) != set(other["test"]["item"])


def test_zero_server_val_fraction_gives_an_empty_server_val() -> None:
    data = load_source(load_settings({"data": {"source": "splice", "max_items": 60}}).data, seed=0)
    tables = split_data(data, test_fraction=0.2, server_val_fraction=0.0, seed=0)
    assert len(tables["server_val"]) == 0 and len(tables["train"]) == 48


def _config(**data: object) -> Settings:
    return load_settings({"data": data, "federation": {"n_clients": 4}})


def test_preflight_accepts_the_default_config() -> None:
    check_config_data(load_settings({}))


def test_preflight_leaves_online_downloads_to_the_data_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: a reachable hub (no download happens at parse time)
    monkeypatch.setattr("llmqfl.data.preflight.hub_reachable", lambda: True)
    # Execute / Assert
    check_config_data(_config(source="tweet_eval", path=None))


def test_preflight_refuses_an_online_source_offline_without_a_local_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match=r"data\.source tweet_eval: .* data\.path is not set"):
        check_config_data(_config(source="tweet_eval", path=None))


def test_preflight_rejects_more_clients_than_items() -> None:
    # Prepare: 45 items (15 per class) leave 32 train items after test (9) and server_val (4);
    # 16 clients need 32, 17 need 34
    ok = load_settings({"data": {"source": "splice", "max_items": 45}, "federation": {"n_clients": 16}})
    too_many = load_settings({"data": {"source": "splice", "max_items": 45}, "federation": {"n_clients": 17}})
    # Execute / Assert
    check_config_data(ok)
    with pytest.raises(DataError, match=r"more clients than items: federation.n_clients=17 needs at least 34"):
        check_config_data(too_many)


@pytest.mark.parametrize(("content", "label_column", "message"), [
    (None, "y", "file not found"),
    ("text,y\na,1\nb,0\n", "label", "no column 'label'"),
    ("text,y\na,1\nb,1\nc,1\n", "y", "single class"),
    ('text,y\n"a,1\nb,0\n', "y", "cannot read"),
])
def test_preflight_rejects_bad_csv(tmp_path: Path, content: str | None, label_column: str, message: str) -> None:
    # Prepare
    path = tmp_path / "user.csv"
    if content is not None:
        path.write_text(content)
    config = _config(source="csv", path=str(path), item_column="text", label_column=label_column)
    # Execute / Assert
    with pytest.raises(DataError, match=message):
        check_config_data(config)
