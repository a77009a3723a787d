"""Settings that change no output (thread counts, the MLflow name, the list of seeds) re-run nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmqfl.config import (
    RUNTIME_ENV,
    deep_merge,
    runtime_settings_json,
    stage_config,
    validate_config,
)
from llmqfl.federated.run import fingerprint
from llmqfl.federated.server import FederationPlan, ServerData
from llmqfl.settings import Settings
from llmqfl.stages._cli import read_config

BASE = {"experiment": "reruns", "seeds": [0], "llm": {"model": "tiny-gpt2"}}
NO_OUTPUT_CHANGES = {
    "llm.threads": {"llm": {"threads": 4}},
    "backend.threads": {"backend": {"threads": 2}},
    "tracking.experiment_name": {"tracking": {"experiment_name": "renamed"}},
}


def _config(change: dict | None = None) -> dict:
    return validate_config(deep_merge(BASE, change or {}))


@pytest.mark.parametrize("stage", ["data", "partition", "distill", "embed", "qfl", "evaluate"])
@pytest.mark.parametrize("change", list(NO_OUTPUT_CHANGES.values()), ids=list(NO_OUTPUT_CHANGES))
def test_thread_counts_and_the_mlflow_name_leave_every_stage_slice_unchanged(stage: str, change: dict) -> None:
    # Assert: the slice is what Snakemake compares to decide a re-run
    assert stage_config(_config(change), stage) == stage_config(_config(), stage)


def test_adding_a_seed_or_an_arm_leaves_the_evaluate_slice_unchanged() -> None:
    more = _config({"seeds": [0, 1, 2], "arms": ["baseline", "llm_guided"]})
    assert stage_config(more, "evaluate") == stage_config(_config(), "evaluate")


def test_thread_counts_stay_out_of_the_qfl_checkpoint_fingerprint() -> None:
    # Prepare: the config as the qfl stage sees it (validated, defaults filled), with other thread counts
    server = ServerData(np.zeros((2, 2)), np.array([0, 1]), np.zeros((2, 2)), np.array([0, 1]))
    plan = FederationPlan(rounds=1, initial_maxiter=1, max_maxiter=1)

    def digest(config: dict) -> str:
        return fingerprint(Settings.from_config(config), "baseline", 0, [], server, plan, np.zeros(3))

    # Assert
    one, many = _config(), _config({"llm": {"threads": 8}, "backend": {"threads": 4}})
    assert digest(one) == digest(many)
    assert digest(one) != digest(_config({"qfl": {"optimizer": {"maxiter": 7}}}))


def test_a_stage_gets_its_thread_count_from_the_invoking_snakefile(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: what onstart exports, and a slice without threads
    monkeypatch.setenv(RUNTIME_ENV, runtime_settings_json(_config({"llm": {"threads": 3}})))
    sliced = stage_config(_config({"llm": {"threads": 3}}), "distill")
    # Execute
    config = read_config(json.dumps(sliced))
    # Assert
    assert "threads" not in sliced["llm"]
    assert config["llm"]["threads"] == 3
