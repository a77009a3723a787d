"""One real run of the tiny pipeline, shared by the tests of what a run leaves behind.

``tests/configs/tiny.yaml`` under its own experiment name, in a scratch working folder (the committed
``data/`` and the asset cache linked in), with its own sqlite MLflow store: the workflow, MLflow
model, CLI and tracking-tag tests read this one run instead of each paying for a pipeline, and the
fault suite uses it as its uninterrupted reference (conftest's session-scoped ``tiny_run`` fixture).
:func:`make_project` and :func:`snakemake_command` set up and drive another project the same way.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "tiny-api"


@dataclass(frozen=True)
class TinyRun:
    workdir: Path
    uri: str  # the run's MLflow store
    experiment: str
    env: dict[str, str]
    log: str  # snakemake's console output

    @property
    def results(self) -> Path:
        return self.workdir / "results" / self.experiment

    def qfl_dir(self, arm: str, seed: int = 0) -> Path:
        return self.results / "qfl" / arm / f"seed_{seed}"

    def client(self):
        import mlflow

        return mlflow.MlflowClient(self.uri)

    def runs(self) -> list:
        client = self.client()
        experiment = client.get_experiment_by_name(f"llmqfl-{self.experiment}")
        return client.search_runs([experiment.experiment_id], max_results=1000)


def scratch_env(workdir: Path) -> dict[str, str]:
    """The environment of a pipeline run with its own MLflow store and no inherited parent run."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}", "LLMQFL_TRACKING": "on"}
    env.pop("LLMQFL_MLFLOW_PARENT_RUN_ID", None)
    return env


def make_project(base: Path) -> tuple[Path, dict[str, str]]:
    """A scratch project at ``base/work``: the default config.yaml, the committed data/ and the asset cache."""
    workdir = base / "work"
    (workdir / "config").mkdir(parents=True)
    (workdir / "config" / "config.yaml").write_text((ROOT / "config" / "config.yaml").read_text())
    (workdir / "data").symlink_to(ROOT / "data")
    (ROOT / "resources").mkdir(exist_ok=True)
    (workdir / "resources").symlink_to(ROOT / "resources")
    return workdir, scratch_env(workdir)


def snakemake_command(workdir: Path, experiment: str, *extra: str, config: tuple[str, ...] = ()) -> list[str]:
    """snakemake on tiny.yaml in ``workdir`` under ``experiment``; ``config``: more ``--config`` KEY=VALUE."""
    return [str(Path(sys.executable).with_name("snakemake")), "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
            "--configfile", str(ROOT / "tests" / "configs" / "tiny.yaml"), "--cores", "2", *extra,
            "--config", f"experiment={experiment}", *config]


def run_tiny_pipeline(base: Path, experiment: str = EXPERIMENT) -> TinyRun:
    """Run snakemake on the tiny config in ``base/work``; raises with the log's tail when it fails."""
    workdir, env = make_project(base)
    done = subprocess.run(snakemake_command(workdir, experiment), capture_output=True, text=True, env=env,
                          timeout=1800)
    log = done.stdout + done.stderr
    if done.returncode != 0:
        raise AssertionError(f"the tiny pipeline failed ({done.returncode}):\n{log[-4000:]}")
    run = TinyRun(workdir=workdir, uri=env["MLFLOW_TRACKING_URI"], experiment=experiment, env=env, log=log)
    assert json.loads((run.results / "metrics.json").read_text())
    return run


# keys of measured times and memory: they differ between any two runs of the same config
TIMING = re.compile(r"second|time|duration|wall|elapsed|started|finished|date|memory|_mb$|rss", re.I)


def untimed(value):
    """``value`` without measured times (client_seconds, ...), for comparing two runs' outputs."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if not TIMING.search(str(k))}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value
