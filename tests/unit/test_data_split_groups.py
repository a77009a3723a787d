"""Related DNA sequences (repeats, reverse complements) never straddle a train/test boundary."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmqfl.config import load_config, load_settings
from llmqfl.data.labelled import from_named_labels
from llmqfl.data.partitioners import build_partitions, partition_as_configured
from llmqfl.data.sequence_groups import Leakage, group_summary, reverse_complement, sequence_groups
from llmqfl.data.sources import load_source
from llmqfl.data.split import allocate, grouped_holdout, split_data
from llmqfl.settings import Settings
from llmqfl.stages import data as data_stage

ROOT = Path(__file__).resolve().parents[2]
K, MIN_SHARED = 20, 50


# -- an independent leak count: distinct forward k-mers of a held item found on either strand of a train item --
def _kmers(seq: str, k: int = K) -> set[str]:
    return {seq[i : i + k] for i in range(len(seq) - k + 1)}


def _max_shared(held: list[str], train: list[str], k: int = K) -> list[int]:
    """For each held item, the most distinct k-mers (forward or reverse complement) it shares with one train item."""
    index: defaultdict[str, set[int]] = defaultdict(set)
    for j, item in enumerate(train):
        for kmer in _kmers(item, k) | _kmers(reverse_complement(item), k):
            index[kmer].add(j)
    best = []
    for item in held:
        counts = Counter(j for kmer in _kmers(item, k) for j in index.get(kmer, ()))
        best.append(max(counts.values(), default=0))
    return best


def _default_run(source: str) -> tuple[dict[str, pd.DataFrame], list[pd.DataFrame], dict]:
    """The default config's data and partition draws, with ``data.source`` swapped in."""
    config = Settings.from_config(load_config(ROOT / "config" / "config.yaml", {"data": {"source": source}}))
    tables, meta = data_stage.prepare(config)
    clients, _ = partition_as_configured(tables["train"], config, meta["n_classes"])
    return tables, clients, meta


@pytest.mark.parametrize("source", ["coding_vs_intergenic", "splice"])
def test_no_held_out_window_shares_sequence_with_a_training_window(source: str) -> None:
    # Prepare: the default config (max_items 1500, test_fraction 0.2, seed 0, 4 iid clients)
    tables, clients, meta = _default_run(source)
    client_train = [item for c in clients for item in c.loc[c["split"] == "train", "item"]]
    held = {"test": tables["test"]["item"].tolist(), "server_val": tables["server_val"]["item"].tolist(),
            "client test": [item for c in clients for item in c.loc[c["split"] == "test", "item"]]}
    assert meta["kind"] == "dna" and len(tables["test"]) == {"coding_vs_intergenic": 299, "splice": 300}[source]
    # Execute + Assert: no held-out window shares 50+ 20-mers (either strand) with any training window
    for name, items in held.items():
        shared = _max_shared(items, client_train)
        assert max(shared) < MIN_SHARED, (source, name, sum(s >= MIN_SHARED for s in shared))
        copies = set(client_train) | {reverse_complement(t) for t in client_train}
        assert not copies.intersection(items), (source, name)
    # the server's held-out sets are clean against all of train.parquet too
    train = tables["train"]["item"].tolist()
    for name in ("test", "server_val"):
        assert max(_max_shared(held[name], train)) < MIN_SHARED
        assert not (set(train) | {reverse_complement(t) for t in train}).intersection(held[name])


def test_default_split_keeps_the_class_quotas() -> None:
    tables, meta = data_stage.prepare(Settings.from_config(load_config(ROOT / "config" / "config.yaml")))
    # Assert: the grouped draw hits the plain stratified quotas (the groups are mostly singletons)
    counts = np.array([766, 730])
    test = allocate(counts, 299)
    val = allocate(counts - test, 120)
    assert [c["per_class"] for c in meta["counts"].values()] == [(counts - test - val).tolist(), test.tolist(),
                                                                 val.tolist()]
    assert meta["groups"] == {"grouped": True, "k": 20, "min_shared_kmers": 50, "n_items": 1496,
                              "n_groups": 1396, "largest": 55, "tied_items": 124}
    # a group is in one split only
    where = pd.concat([t.assign(split=name) for name, t in tables.items()]).groupby("group")["split"].nunique()
    assert where.max() == 1


# -- the grouping -----------------------------------------------------------------------------------------
def _random_dna(rng: np.random.Generator, n: int) -> str:
    return "".join(rng.choice(list("ACGT"), size=n))


def test_reverse_complements_and_copies_are_one_group() -> None:
    rng = np.random.default_rng(0)
    a, b = _random_dna(rng, 60), _random_dna(rng, 60)
    assert reverse_complement("AACGTN") == "NACGTT"
    # 60 bp: 41 20-mers, below 50, so only the reverse-complement rule can tie them
    assert sequence_groups([a, b, reverse_complement(a)]).tolist() == [0, 1, 0]
    assert sequence_groups([a.lower(), b, a]).tolist() == [0, 1, 0]


@pytest.mark.parametrize(("overlap", "together"), [(68, False), (69, True)])
def test_fifty_shared_kmers_tie_two_items_and_forty_nine_do_not(overlap: int, together: bool) -> None:
    # Prepare: a shared stretch of `overlap` bp holds overlap - 19 20-mers (the flanks differ next to it)
    rng = np.random.default_rng(1)
    shared = _random_dna(rng, overlap)
    a = _random_dna(rng, 70) + "A" + shared + "G" + _random_dna(rng, 40)
    b = _random_dna(rng, 30) + "C" + shared + "T" + _random_dna(rng, 80)
    b_other_strand = reverse_complement(b)
    assert len(_kmers(a) & _kmers(b)) == overlap - 19
    # Execute
    forward = sequence_groups([a, b])
    across_strands = sequence_groups([a, b_other_strand])
    # Assert
    assert bool(forward[0] == forward[1]) is together
    assert bool(across_strands[0] == across_strands[1]) is together


def test_ties_chain_transitively_and_settings_apply() -> None:
    rng = np.random.default_rng(2)
    x, y = _random_dna(rng, 80), _random_dna(rng, 80)
    a = _random_dna(rng, 100) + x
    b = x + y  # shares 61 20-mers with a and with c
    c = reverse_complement(y) + _random_dna(rng, 100)
    lone = _random_dna(rng, 180)
    assert not _kmers(a) & (_kmers(c) | _kmers(reverse_complement(c)))
    assert sequence_groups([a, lone, b, c]).tolist() == [0, 1, 0, 0]
    assert sequence_groups([a, lone, b, c], Leakage(k=20, min_shared_kmers=62)).tolist() == [0, 1, 2, 3]
    summary = group_summary(sequence_groups([a, lone, b, c]), Leakage())
    assert summary == {"grouped": True, "k": 20, "min_shared_kmers": 50, "n_items": 4, "n_groups": 2,
                       "largest": 3, "tied_items": 3}


def test_kmers_with_n_do_not_tie_items() -> None:
    rng = np.random.default_rng(3)
    items = [_random_dna(rng, 40) + "N" * 100 + _random_dna(rng, 40) for _ in range(2)]
    assert sequence_groups(items).tolist() == [0, 1]


# -- the grouped draw ------------------------------------------------------------------------------------
def _old_stratified_holdout(labels: np.ndarray, n_held: int, rng: np.random.Generator) -> np.ndarray:
    """The split's draw before groups existed, kept here to prove singletons give the same items."""
    classes = np.unique(labels)
    quota = allocate(np.array([(labels == c).sum() for c in classes]), n_held)
    held = np.zeros(len(labels), dtype=bool)
    for c, q in zip(classes, quota, strict=True):
        held[rng.choice(np.flatnonzero(labels == c), size=int(q), replace=False)] = True
    return held


def _old_split(data, test_fraction: float, server_val_fraction: float, seed: int) -> dict[str, pd.DataFrame]:
    from llmqfl.data.split import split_sizes

    sizes = split_sizes(len(data.frame), test_fraction=test_fraction, server_val_fraction=server_val_fraction)
    rng = np.random.default_rng(seed)
    labels = data.frame["label"].to_numpy()
    test = _old_stratified_holdout(labels, sizes.test, rng)
    rest = np.flatnonzero(~test)
    val = np.zeros(len(labels), dtype=bool)
    val[rest[_old_stratified_holdout(labels[rest], sizes.server_val, rng)]] = True
    masks = {"train": ~test & ~val, "test": test, "server_val": val}
    return {name: data.frame[mask].reset_index(drop=True) for name, mask in masks.items()}


@pytest.mark.parametrize("seed", [0, 7, 123])
def test_singleton_groups_reproduce_the_plain_stratified_draw(seed: int) -> None:
    labels = np.random.default_rng(seed).integers(0, 3, size=97)
    for eligible in (None, np.arange(97) % 5 != 0):
        old_labels = labels if eligible is None else labels[eligible]
        expected = _old_stratified_holdout(old_labels, 20, np.random.default_rng(seed))
        got = grouped_holdout(labels, 20, np.random.default_rng(seed), eligible=eligible)
        assert (got if eligible is None else got[eligible]).tolist() == expected.tolist()


@pytest.mark.parametrize(("source", "max_items"), [("rotten_tomatoes", 2000), ("splice", 1500)])
def test_all_singleton_sources_split_exactly_as_before(source: str, max_items: int) -> None:
    data = load_source(load_settings({"data": {"source": source, "max_items": max_items}}).data, seed=4)
    new = split_data(data, test_fraction=0.2, server_val_fraction=0.1, seed=9)
    old = _old_split(data, 0.2, 0.1, 9)
    for name, frame in old.items():
        pd.testing.assert_frame_equal(new[name].drop(columns=["row", "group"]), frame)


def test_grouped_holdout_keeps_groups_whole_and_hits_quotas() -> None:
    # Prepare: 180 items in 120 groups (80 singletons, pairs, triples, four of 5-6 items), two classes
    rng = np.random.default_rng(5)
    groups = np.repeat(np.arange(120), [1] * 80 + [2] * 30 + [3] * 6 + [5, 5, 6, 6])
    labels = (groups % 2).astype(np.int64)
    # Execute
    held = grouped_holdout(labels, 40, rng, groups=groups)
    # Assert
    frame = pd.DataFrame({"g": groups, "held": held})
    assert frame.groupby("g")["held"].nunique().max() == 1
    assert np.bincount(labels[held]).tolist() == allocate(np.bincount(labels), 40).tolist()
    # a group with an item outside the pool is never held out
    eligible = groups != groups[np.flatnonzero(held)[0]]
    eligible[np.flatnonzero(groups == 100)[0]] = False  # half of a group
    again = grouped_holdout(labels, 40, np.random.default_rng(5), groups=groups, eligible=eligible)
    assert not again[groups == 100].any() and not again[~eligible].any()


def test_a_repeat_family_stays_in_train() -> None:
    # one group holds 30 of 100 class-0 items: more than a tenth of any held-out quota
    groups = np.concatenate([np.zeros(30, dtype=np.int64), np.arange(1, 171)])
    labels = np.concatenate([np.zeros(100, dtype=np.int64), np.ones(100, dtype=np.int64)])
    for seed in range(5):
        held = grouped_holdout(labels, 60, np.random.default_rng(seed), groups=groups)
        assert not held[:30].any() and held.sum() == 60


def test_same_seed_same_split_and_another_seed_differs() -> None:
    data = load_source(load_settings({"data": {"source": "coding_vs_intergenic", "max_items": None}}).data)
    first = split_data(data, test_fraction=0.2, server_val_fraction=0.1, seed=3)
    again = split_data(data, test_fraction=0.2, server_val_fraction=0.1, seed=3)
    other = split_data(data, test_fraction=0.2, server_val_fraction=0.1, seed=4)
    for name in first:
        pd.testing.assert_frame_equal(first[name], again[name])
    assert set(first["test"]["item"]) != set(other["test"]["item"])


# -- the partition's local split -----------------------------------------------------------------------
def test_a_group_across_clients_stays_in_train() -> None:
    # Prepare: pairs of items share a group; 4 iid clients split most pairs
    n = 160
    train = pd.DataFrame({"row": np.arange(n), "item": [f"s{i}" for i in range(n)], "label": np.arange(n) % 2,
                          "group": np.arange(n) // 2})
    # Execute
    tables, summary = build_partitions(train, kind="iid", n_clients=4, alpha=0.5, client_test_fraction=0.25,
                                       root_seed=0, n_classes=2)
    # Assert
    split_of = pd.concat(tables).set_index("row")["split"].sort_index()
    client_of = pd.concat([t.assign(client=k) for k, t in enumerate(tables)]).set_index("row")["client"].sort_index()
    by_group = pd.DataFrame({"group": train["group"], "split": split_of, "client": client_of})
    for _, members in by_group.groupby("group"):
        if members["split"].eq("test").any():
            assert members["split"].eq("test").all() and members["client"].nunique() == 1
    spanning = by_group.groupby("group")["client"].nunique() > 1
    assert summary["items_kept_in_train"] == 2 * int(spanning.sum()) > 0
    assert all(c["n_test"] >= 1 for c in summary["clients"])


def test_the_data_stage_logs_and_records_the_groups(caplog: pytest.LogCaptureFixture, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMQFL_TRACKING", "off")
    config = load_config(ROOT / "config" / "config.yaml", {"data": {"max_items": 300}})
    with caplog.at_level(logging.INFO, logger="llmqfl.stages.data"):
        meta = data_stage.run(config, tmp_path / "data")
    assert meta["groups"]["grouped"] and meta["groups"]["n_items"] == 300
    lines = [r.getMessage() for r in caplog.records if "groups" in r.getMessage()]
    assert len(lines) == 1 and f"{meta['groups']['n_groups']} groups" in lines[0]
    assert list(pd.read_parquet(tmp_path / "data" / "train.parquet").columns) == ["row", "item", "label", "group"]


def test_text_items_are_not_grouped() -> None:
    data = from_named_labels(["same text", "same text!", "other"] * 2, ["a", "b", "a", "b", "a", "b"], source="t")
    tables = split_data(data, test_fraction=0.34, server_val_fraction=0.0, seed=0)
    assert sorted(pd.concat(tables.values())["group"]) == list(range(6))
