"""The config contract: defaults, one-line errors naming the field, seed derivation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmqfl.config import derive_seed, load_config, stage_config, validate_config
from llmqfl.errors import ConfigError


def test_empty_config_gets_every_default() -> None:
    # Execute
    config = validate_config({})
    # Assert
    assert config["experiment"] == "default"
    assert config["federation"]["partition"]["kind"] == "iid"
    assert config["qfl"]["optimizer"] == {"name": "cobyla", "maxiter": 10, "max_maxiter": 100, "learning_rate": 0.1}
    assert config["backend"]["kind"] == "aer"
    assert config["arms"] == ["baseline", "llm_guided", "budget_matched", "equal_cost", "loss_stopping"]


def test_shipped_configs_validate(project_root) -> None:
    for path in [
        project_root / "config" / "config.yaml",
        *sorted((project_root / "config" / "experiments").glob("*.yaml")),
    ]:
        load_config(path)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"data": {"source": "imagenet"}}, "data.source"),
        ({"federation": {"n_clients": -1}}, "federation.n_clients"),
        ({"federation": {"partition": {"alpha": 0}}}, "federation.partition.alpha"),
        ({"federation": {"partition": {"alpha": -0.5}}}, "federation.partition.alpha"),
        ({"backend": {"kind": "ionq"}}, "backend.kind"),
        ({"qfl": {"guidance": {"rule": "greedy"}}}, "qfl.guidance.rule"),
        ({"seed": 1.5}, "seed"),
        ({"seed": "zero"}, "seed"),
        ({"seed": True}, "seed"),
        ({"qfl": {"optimizer": {"maxiter": 0}}}, "qfl.optimizer.maxiter"),
        ({"federation": {"selection": {"fraction": 1.5}}}, "federation.selection.fraction"),
        ({"federation": {"selection": {"fraction": 0}}}, "federation.selection.fraction"),
        ({"backend": {"shots": 0}}, "backend.shots"),
        ({"llm": {"max_length": 4}}, "llm.max_length"),
        ({"qfl": {"typo_key": 1}}, "qfl.typo_key"),
        ({"data": {"source": "csv"}}, "data.path"),
        ({"qfl": {"optimizer": {"maxiter": 20, "max_maxiter": 10}}}, "qfl.optimizer.max_maxiter"),
    ],
)
def test_bad_values_name_the_field_in_one_line(override: dict, field: str) -> None:
    # Execute
    with pytest.raises(ConfigError) as caught:
        validate_config(override)
    # Assert
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"config error: {field}:"), message


def test_validation_does_not_mutate_input() -> None:
    raw = {"federation": {"n_clients": 3}}
    validate_config(raw)
    assert raw == {"federation": {"n_clients": 3}}


def test_load_config_merges_files_and_overrides(tmp_path) -> None:
    # Prepare
    base = tmp_path / "base.yaml"
    base.write_text("federation: {n_clients: 3, rounds: 4}\n")
    extra = tmp_path / "extra.yaml"
    extra.write_text("federation: {rounds: 7}\n")
    # Execute
    config = load_config([base, extra], overrides={"seed": 5})
    # Assert
    assert config["federation"]["n_clients"] == 3
    assert config["federation"]["rounds"] == 7
    assert config["seed"] == 5


def test_missing_config_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml")


def test_stage_slice_excludes_other_stages_sections() -> None:
    config = validate_config({})
    assert "qfl" not in stage_config(config, "distill")
    assert "llm" in stage_config(config, "distill")


def test_derived_seeds_are_stable_and_distinct() -> None:
    assert derive_seed(0, "partition") == derive_seed(0, "partition")
    assert derive_seed(0, "partition") != derive_seed(1, "partition")
    assert derive_seed(0, "partition") != derive_seed(0, "split")
    assert derive_seed(0, "distill", 1) != derive_seed(0, "distill", 2)
    # pinned value: a change to the derivation would silently change every result
    assert derive_seed(0, "partition") == 31702875


def test_stage_slice_keeps_only_the_fields_the_stage_reads() -> None:
    config = validate_config({"federation": {"n_clients": 3, "rounds": 7}})
    sliced = stage_config(config, "partition")
    assert sliced["federation"]["n_clients"] == 3
    assert "rounds" not in sliced["federation"]
    assert "federation" not in stage_config(config, "data")
    # the slice is itself a valid config: the stage CLI re-validates it
    assert validate_config(sliced)["federation"]["n_clients"] == 3


def test_corrupt_json_and_parquet_are_one_line_data_errors(tmp_path) -> None:
    from llmqfl.errors import DataError
    from llmqfl.io import read_json, read_parquet

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match=r"bad\.json: not valid JSON"):
        read_json(bad)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"broken\.parquet: cannot read parquet"):
        read_parquet(broken)


def test_a_stage_config_file_in_json_keeps_its_numbers_in_scientific_notation(tmp_path: Path) -> None:
    # the Snakefile writes each stage's slice as JSON; YAML 1.1 would read 1e-05 (no dot) as a string
    from llmqfl.stages._cli import read_config

    path = tmp_path / "qfl-0123.json"
    path.write_text(json.dumps({"privacy": {"quantum": {"delta": 1e-05}}}))
    assert read_config(str(path))["privacy"]["quantum"]["delta"] == 1e-05
