"""MLflow tracking: parent run per invocation, nested stage runs, concurrent sqlite writers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llmqfl import tracking
from llmqfl.config import STAGE_SECTIONS, load_settings, stage_config, validate_config


def _client(uri: str):
    import mlflow

    return mlflow.MlflowClient(uri)


def test_stage_runs_nest_under_the_parent_run(mlflow_uri: str) -> None:
    # Prepare
    config = validate_config({"experiment": "unit"})
    parent = tracking.start_parent_run(config)  # the Snakefile's dict (the workflow layer)
    # Execute
    with tracking.stage_run(load_settings(config), "data", name="data") as run:
        run.log_metrics({"n_train": 10}, step=1)
    tracking.end_parent_run()
    # Assert
    client = _client(mlflow_uri)
    child = client.get_run(run.run_id)
    assert child.data.tags["mlflow.parentRunId"] == parent
    assert child.data.params["data.source"] == "coding_vs_intergenic"
    assert child.data.params["seed"] == "0"
    assert child.data.metrics["n_train"] == 10
    assert client.get_run(parent).info.status == "FINISHED"
    assert "config.yaml" in [a.path for a in client.list_artifacts(run.run_id)]


def test_a_stage_run_logs_only_the_config_sections_its_stage_reads(mlflow_uri: str) -> None:
    # Prepare: a fake-device run; the data stage never sees the backend section
    config = load_settings({"experiment": "unit", "backend": {"kind": "fake", "name": "FakeBrisbane"}})
    # Execute
    with tracking.stage_run(config, "data", name="data") as data_run:
        pass
    with tracking.stage_run(config, "qfl", name="qfl") as qfl_run:
        pass
    # Assert: no default backend.kind=aer on the data run; the qfl run names the device
    client = _client(mlflow_uri)
    data_params, qfl_params = client.get_run(data_run.run_id).data.params, client.get_run(qfl_run.run_id).data.params
    assert not any(key.startswith(("backend.", "qfl.", "llm.")) for key in data_params)
    assert (qfl_params["backend.kind"], qfl_params["backend.name"]) == ("fake", "FakeBrisbane")


# lists (seeds, sweep values, LoRA modules), floats, None, an int where the schema takes a number, runtime keys
RICH = {
    "experiment": "unit",
    "seeds": [0, 1, 2],
    "backend": {"kind": "fake", "name": "FakeBrisbane", "shots": 1024},
    "qfl": {"initial_point": 0.5, "optimizer": {"learning_rate": 0.05}},
    "llm": {"lora": {"target_modules": ["c_attn"]}, "threads": 2},
    "sweep": {"distillation_weights": [0.0, 0.5]},
    "tracking": {"experiment_name": None},
    "federation": {"flower": {"secagg": {"clipping_range": 8}}},
}


def test_a_stage_run_logs_from_settings_the_params_and_config_file_the_config_dict_gave(mlflow_uri: str) -> None:
    # Prepare: what each stage run logged when it was handed the validated dict (its slice, flattened)
    import yaml

    validated = validate_config(RICH)
    client = _client(mlflow_uri)
    for stage in STAGE_SECTIONS:
        # Execute
        with tracking.stage_run(load_settings(RICH), stage, name=stage) as run:
            pass
        # Assert: the same params, value for value, and the same config.yaml, byte for byte
        own = stage_config(validated, stage)
        assert client.get_run(run.run_id).data.params == tracking.flatten(own), stage
        logged = Path(client.download_artifacts(run.run_id, "config.yaml")).read_text()
        assert logged == yaml.dump(own, indent=2, default_flow_style=False), stage


def test_failed_stage_marks_its_run_failed(mlflow_uri: str) -> None:
    config = load_settings({"experiment": "unit"})
    with pytest.raises(RuntimeError), tracking.stage_run(config, "qfl") as run:
        raise RuntimeError("boom")
    assert _client(mlflow_uri).get_run(run.run_id).info.status == "FAILED"


def test_default_store_is_sqlite_in_the_working_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri() == "sqlite:///mlflow.db"


WRITER = textwrap.dedent(
    """
    import sys
    from llmqfl import tracking
    from llmqfl.config import load_settings
    config = load_settings({"experiment": "concurrency"})
    with tracking.stage_run(config, "writer", name=f"writer {sys.argv[1]}") as run:
        run.log_params({f"p{i}": i for i in range(20)})
        for step in range(50):
            run.log_metrics({"m": step}, step=step)
    """
)


def test_eight_concurrent_writers_all_succeed(mlflow_uri: str, tmp_path: Path) -> None:
    # Prepare: the store, experiment and parent run exist first, as the Snakefile's onstart makes them
    config = validate_config({"experiment": "concurrency"})
    parent = tracking.start_parent_run(config)
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, tracking.PARENT_ENV: parent}
    # Execute
    procs = [subprocess.Popen([sys.executable, str(script), str(i)], env=env, stderr=subprocess.PIPE) for i in range(8)]
    results = [(p.wait(timeout=300), p.stderr.read().decode()) for p in procs]
    # Assert
    assert all(code == 0 for code, _ in results), results
    client = _client(mlflow_uri)
    experiment = client.get_experiment_by_name("llmqfl-concurrency")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    assert len(runs) == 8
    for run in runs:
        assert len(client.get_metric_history(run.info.run_id, "m")) == 50
        assert run.info.status == "FINISHED"
