"""MLflow tracking: one parent run per ``snakemake`` invocation, a nested run per stage job.

The Snakefile's ``onstart`` creates the store, the experiment and the parent run before any job
starts (concurrent first touches of a fresh sqlite store race in alembic's migrations), then hands
the parent run id to jobs through ``LLMQFL_MLFLOW_PARENT_RUN_ID``.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from llmqfl.config import STAGE_SECTIONS, stage_config

PARENT_ENV = "LLMQFL_MLFLOW_PARENT_RUN_ID"
DISABLE_ENV = "LLMQFL_TRACKING"  # "off" disables MLflow (unit tests of stages that do not test tracking)
DEFAULT_URI = "sqlite:///mlflow.db"
T = TypeVar("T")


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the sqlite store in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def enabled() -> bool:
    return os.environ.get(DISABLE_ENV, "on").lower() not in {"off", "0", "false"}


def experiment_name(config: Mapping[str, Any]) -> str:
    return config.get("tracking", {}).get("experiment_name") or f"llmqfl-{config.get('experiment', 'default')}"


def with_retries(action: Callable[[], T], attempts: int = 8) -> T:
    """Run ``action``, retrying the transient sqlite errors that concurrent writers hit."""
    for attempt in range(attempts):
        try:
            return action()
        except Exception as exc:  # mlflow wraps sqlite errors in several exception types
            transient = any(s in str(exc).lower() for s in ("database is locked", "already exists", "duplicate column"))
            if not transient or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (2**attempt) * (1 + random.random()))
    raise AssertionError("unreachable")


def _client():
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    return mlflow.MlflowClient(tracking_uri())


def ensure_experiment(name: str) -> str:
    """Create the store and the experiment if missing; return the experiment id."""
    client = _client()

    def get_or_create() -> str:
        found = client.get_experiment_by_name(name)
        return found.experiment_id if found else client.create_experiment(name)

    return with_retries(get_or_create)


def start_parent_run(config: Mapping[str, Any], run_name: str = "snakemake") -> str | None:
    """Create the invocation's parent run, export its id for jobs, return it."""
    if not enabled():
        return None
    client = _client()
    experiment_id = ensure_experiment(experiment_name(config))
    run = with_retries(lambda: client.create_run(experiment_id, run_name=run_name, tags={"llmqfl.role": "invocation"}))
    run_id = run.info.run_id
    with_retries(lambda: client.log_dict(run_id, dict(config), "config.resolved.yaml"))
    for key, value in flatten(config).items():
        with_retries(lambda k=key, v=value: client.log_param(run_id, k, v))
    os.environ[PARENT_ENV] = run_id
    return run_id


def end_parent_run(status: str = "FINISHED") -> None:
    """Close the parent run opened by :func:`start_parent_run`."""
    run_id = os.environ.get(PARENT_ENV)
    if enabled() and run_id:
        client = _client()
        with_retries(lambda: client.set_terminated(run_id, status=status))


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted keys and string values: MLflow params."""
    flat: dict[str, str] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:6000]
    return flat


class StageRun:
    """The handle a stage logs through; every method is a no-op when tracking is off."""

    def __init__(self, run_id: str | None) -> None:
        self.run_id = run_id
        self._client = _client() if run_id else None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if not self._client:
            return
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        batch = [Metric(k, float(v), stamp, step or 0) for k, v in metrics.items() if v is not None]
        with_retries(lambda: self._client.log_batch(self.run_id, metrics=batch))

    def log_params(self, params: Mapping[str, Any]) -> None:
        if not self._client:
            return
        from mlflow.entities import Param

        batch = [Param(k, v) for k, v in flatten(params).items()]
        with_retries(lambda: self._client.log_batch(self.run_id, params=batch))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if not self._client:
            return
        for key, value in tags.items():
            with_retries(lambda k=key, v=value: self._client.set_tag(self.run_id, k, str(v)))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Log a file or a whole directory."""
        if not self._client:
            return
        path = Path(path)
        if path.is_dir():
            with_retries(lambda: self._client.log_artifacts(self.run_id, str(path), artifact_path or path.name))
        elif path.exists():
            with_retries(lambda: self._client.log_artifact(self.run_id, str(path), artifact_path))


@contextlib.contextmanager
def stage_run(
    config: Mapping[str, Any], stage: str, name: str | None = None, tags: Mapping[str, str] | None = None
) -> Iterator[StageRun]:
    """A run for one stage job, nested under the invocation's parent run when there is one.

    Logs the stage's config slice (its ``STAGE_SECTIONS``) as params and as ``config.yaml``; marks the run FAILED when
    the body raises.
    """
    if not enabled():
        yield StageRun(None)
        return
    client = _client()
    experiment_id = ensure_experiment(experiment_name(config))
    all_tags = {"llmqfl.stage": stage, **(tags or {})}
    parent = os.environ.get(PARENT_ENV)
    if parent:
        all_tags["mlflow.parentRunId"] = parent
    run = with_retries(lambda: client.create_run(experiment_id, run_name=name or stage, tags=all_tags))
    handle = StageRun(run.info.run_id)
    # only the sections the stage reads: defaults of sections it never sees (e.g. the data stage's
    # backend) would tag a fake-device run's data and distill runs with backend.kind=aer
    own = stage_config(config, stage) if stage in STAGE_SECTIONS else dict(config)
    handle.log_params(own)
    with_retries(lambda: client.log_dict(run.info.run_id, own, "config.yaml"))
    try:
        yield handle
    except BaseException:
        with_retries(lambda: client.set_terminated(run.info.run_id, status="FAILED"))
        raise
    with_retries(lambda: client.set_terminated(run.info.run_id, status="FINISHED"))
