"""Shared fixtures: the project root, a tiny config, an isolated MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project_root() -> Path:
    return ROOT


@pytest.fixture
def mlflow_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh sqlite store per test, never the user's mlflow.db."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("LLMQFL_MLFLOW_PARENT_RUN_ID", raising=False)
    monkeypatch.setenv("LLMQFL_TRACKING", "on")
    return uri


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):
    """One real tiny pipeline run (tests/tiny_pipeline.py), shared by every test that reads a run's outputs."""
    from tiny_pipeline import run_tiny_pipeline

    return run_tiny_pipeline(tmp_path_factory.mktemp("tiny-run"))
