"""Stage config files are content-addressed: planned without writing, written once, never changed."""

from __future__ import annotations

import json
from pathlib import Path

from llmqfl.config import load_config
from llmqfl.pipeline import full_reference_config, plan_stage_config, write_stage_configs

ROOT = Path(__file__).resolve().parents[2]


def _config() -> dict:
    return load_config(ROOT / "config" / "config.yaml")


def test_planning_a_stage_config_writes_nothing(tmp_path: Path) -> None:
    # Execute
    planned = plan_stage_config(_config(), "qfl", tmp_path / "config")
    # Assert: the name carries the digest of the text; no folder, no file yet
    assert Path(planned.path).name == f"qfl-{planned.digest}.json"
    assert not (tmp_path / "config").exists()


def test_another_config_gets_another_file_and_the_first_is_never_touched(tmp_path: Path) -> None:
    # Prepare
    config = _config()
    first = plan_stage_config(config, "qfl", tmp_path)
    assert write_stage_configs([first]) == [first.path]
    mtime = Path(first.path).stat().st_mtime_ns
    # Execute: the same config again, then another maxiter (what a second invocation plans)
    again = plan_stage_config(config, "qfl", tmp_path)
    config["qfl"]["optimizer"]["maxiter"] += 1
    other = plan_stage_config(config, "qfl", tmp_path)
    written = write_stage_configs([again, other])
    # Assert
    assert again == first and written == [other.path]
    assert other.path != first.path and other.digest != first.digest
    assert Path(first.path).stat().st_mtime_ns == mtime
    assert json.loads(Path(first.path).read_text())["qfl"]["optimizer"]["maxiter"] + 1 == \
        json.loads(Path(other.path).read_text())["qfl"]["optimizer"]["maxiter"]


def test_a_damaged_config_file_is_restored_to_the_text_its_name_stands_for(tmp_path: Path) -> None:
    planned = plan_stage_config(_config(), "data", tmp_path)
    write_stage_configs([planned])
    Path(planned.path).write_text("{}")
    assert write_stage_configs([planned]) == [planned.path]
    assert Path(planned.path).read_text() == planned.text


def test_the_full_fine_tuning_reference_trains_as_many_epochs_as_a_client_over_its_rounds() -> None:
    # Prepare: two federated rounds of 3 epochs each; C6's reference is one full fine-tuning per client
    config = _config()
    config["llm"].update(federated_rounds=2, epochs=3)
    # Execute
    full = full_reference_config(config, 0)
    # Assert
    assert (full["llm"]["peft"], full["llm"]["federated_rounds"], full["llm"]["epochs"]) == ("full", 0, 6)
    assert config["llm"]["peft"] != "full"  # the run's own config is not changed
