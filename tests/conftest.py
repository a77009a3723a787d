"""Shared fixtures (the project root, an isolated MLflow store, one tiny pipeline run) and the test tiers.

Each test's tier is the folder it lives in: ``tests/unit`` (functions in process: no stage run, no
pipeline), ``tests/integration`` (one stage, a Snakemake dry run or parse, tiny LLM fine-tuning, the
bad-input corpus) and ``tests/e2e`` (real Snakemake, DVC, Flower and Slurm runs). The folder sets the
marker, so ``-m unit`` and ``tests/unit`` select the same tests (``make test-fast``). Under
pytest-xdist's ``--dist loadgroup`` every test that reads the shared tiny run goes to one worker.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its tier, read from its folder under tests/."""
    tests = Path(__file__).resolve().parent
    for item in items:
        parts = item.path.resolve().relative_to(tests).parts if item.path.is_relative_to(tests) else ()
        if parts and parts[0] in TIERS:
            item.add_marker(parts[0])
        if "tiny_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("tiny_run"))  # one worker builds and reads the shared run


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


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """results/tiny/{data, partitions, distill} as the upstream stages write them."""
    monkeypatch.setenv("LLMQFL_TRACKING", "off")
    from qfl_stage_inputs import make_results

    return make_results(tmp_path)
