"""Seed replicates: with pipeline scope a replicate re-draws the split (and everything after it).

The replicate helpers take the workflow's validated dict (the Snakefile's); the stage they feed takes the
replicate's Settings, built from that dict as a stage builds its own.
"""

from __future__ import annotations

import pytest

from llmqfl.config import load_settings, validate_config
from llmqfl.replicates import replicate_config, replicate_scope, replicate_seed, upstream_dir
from llmqfl.stages import data


def config(scope: str) -> dict:
    return validate_config({"experiment": "rep", "data": {"source": "coding_vs_intergenic", "max_items": 120},
                            "replicates": {"scope": scope}, "seeds": [0, 1]})


def test_under_a_scope_of_pipeline_a_replicate_changes_the_split() -> None:
    cfg = config("pipeline")
    splits = [data.prepare(load_settings(replicate_config(cfg, s)))[0] for s in (0, 1)]
    test_items = [set(tables["test"]["item"]) for tables in splits]
    assert test_items[0] != test_items[1]
    assert upstream_dir("results/rep", cfg, 1) == "results/rep/rep_1"


def test_under_a_scope_of_quantum_init_replicates_share_one_split() -> None:
    cfg = config("quantum_init")
    assert replicate_seed(cfg, 0) == replicate_seed(cfg, 1) == cfg["seed"]
    first, second = (data.prepare(load_settings(replicate_config(cfg, s)))[0]["test"] for s in (0, 1))
    assert list(first["item"]) == list(second["item"])
    assert upstream_dir("results/rep", cfg, 1) == "results/rep"


@pytest.mark.parametrize("scope", ["quantum_init", "pipeline"])
def test_the_scope_reads_alike_from_the_workflow_dict_and_from_a_stage_s_settings(scope: str) -> None:
    cfg = config(scope)
    assert replicate_scope(cfg) == load_settings(cfg).replicates.scope == scope


def test_an_unknown_scope_is_refused_at_parse_time() -> None:
    with pytest.raises(Exception, match=r"replicates\.scope"):
        config("everything")
