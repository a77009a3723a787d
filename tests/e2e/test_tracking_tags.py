"""MLflow as its users expect: one parent run per invocation, tagged with where the numbers came from."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llmqfl import provenance
from llmqfl.config import validate_config

ROOT = Path(__file__).resolve().parents[2]

# What each snakemake of a DVC stage does to MLflow (Snakefile onstart / onsuccess), as a stage command.
SNAKEMAKE_LIKE = textwrap.dedent(
    """
    from llmqfl import tracking
    from llmqfl.config import validate_config
    tracking.start_parent_run(validate_config({"experiment": "dvcx"}), run_name="snakemake dvcx")
    tracking.end_parent_run("FINISHED")
    """
)


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


def _is_head_or_before(commit: str) -> bool:
    """The commit exists and HEAD descends from it (others may commit to this checkout while a test runs)."""
    done = subprocess.run(["git", "-C", str(ROOT), "merge-base", "--is-ancestor", commit, "HEAD"], check=False)
    return done.returncode == 0


def _parents(uri: str, experiment: str) -> list:
    import mlflow

    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(f"llmqfl-{experiment}")
    runs = client.search_runs([found.experiment_id]) if found else []
    return [r for r in runs if r.data.tags.get("llmqfl.role") == "invocation"]


def test_a_parent_run_carries_commit_dirty_flag_code_digests_and_experiment(mlflow_uri: str) -> None:
    # Execute
    from llmqfl import tracking

    run_id = tracking.start_parent_run(validate_config({"experiment": "tags"}))
    tracking.end_parent_run()
    # Assert
    (parent,) = _parents(mlflow_uri, "tags")
    tags = parent.data.tags
    assert parent.info.run_id == run_id
    assert tags["llmqfl.git.commit"] == tags["mlflow.source.git.commit"]
    assert len(tags["llmqfl.git.commit"]) == 40 and _is_head_or_before(tags["llmqfl.git.commit"])
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    assert tags["llmqfl.git.dirty"] == ("true" if dirty else "false")
    assert tags["llmqfl.experiment"] == "tags" and tags["llmqfl.command"] == "snakemake"
    for stage in provenance.STAGE_MODULES:
        assert tags[f"llmqfl.code.{stage}"] == provenance.stage_digest(stage)


def test_the_snakemakes_of_one_dvc_command_share_one_parent_run_and_the_next_command_gets_its_own(
    mlflow_uri: str, tmp_path: Path
) -> None:
    # Prepare: a stand-in for the DVC process (no DVC_STAGE) running two stage commands, as `dvc exp run` does
    dvc_like = textwrap.dedent(
        f"""
        import os, subprocess, sys
        for stage in ("qfl@dvcx", "report@dvcx"):
            env = {{**os.environ, "DVC_STAGE": stage, "DVC_EXP_NAME": "bushy-lamb", "DVC_EXP_BASELINE_REV": "abc"}}
            subprocess.run([sys.executable, "-c", {SNAKEMAKE_LIKE!r}], env=env, check=True)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_")}
    # Execute: two DVC commands
    for _ in range(2):
        subprocess.run([sys.executable, "-c", dvc_like], env=env, check=True, timeout=300)
    # Assert: one parent run each, naming the DVC experiment and both stages, finished
    parents = _parents(mlflow_uri, "dvcx")
    assert len(parents) == 2
    for parent in parents:
        tags = parent.data.tags
        assert tags["llmqfl.dvc.exp_name"] == "bushy-lamb" and tags["llmqfl.command"] == "dvc exp run"
        assert tags["llmqfl.dvc.stages"] == "qfl@dvcx,report@dvcx"
        assert parent.info.status == "FINISHED"
    assert parents[0].data.tags["llmqfl.invocation"] != parents[1].data.tags["llmqfl.invocation"]


@pytest.mark.slow
def test_a_real_dvc_exp_run_of_two_stages_makes_one_parent_run(mlflow_uri: str, tmp_path: Path) -> None:
    # Prepare: a git + DVC project whose two stages each start and end a parent run like the Snakefile does
    dvc = Path(sys.executable).with_name("dvc")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "hook.py").write_text(SNAKEMAKE_LIKE)
    (repo / "params.yaml").write_text("x: 1\n")
    (repo / "dvc.yaml").write_text(textwrap.dedent(
        f"""
        stages:
          first:
            cmd: {sys.executable} hook.py && echo 1 > a.txt
            params: [x]
            outs: [a.txt]
          second:
            cmd: {sys.executable} hook.py && cat a.txt > b.txt
            deps: [a.txt]
            outs: [b.txt]
        """
    ))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_")}
    env.update({"PYTHONPATH": str(ROOT / "src"), "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t",
                "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})

    def sh(*command: str) -> None:
        done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    sh("git", "init", "-q")
    sh(str(dvc), "init", "-q")
    sh("git", "add", "-A")
    sh("git", "commit", "-qm", "init")
    # Execute
    sh(str(dvc), "exp", "run", "-S", "x=2", "-n", "variant-x")
    # Assert: both stages ran under one parent run that names the DVC experiment
    (parent,) = _parents(mlflow_uri, "dvcx")
    tags = parent.data.tags
    assert tags["llmqfl.dvc.exp_name"] == "variant-x"
    assert tags["llmqfl.dvc.stages"] == "first,second"
    assert parent.info.status == "FINISHED"
    assert shutil.which("git")


@pytest.mark.slow
def test_the_pipelines_parent_run_is_one_per_snakemake_with_its_provenance(tiny_run) -> None:
    # Execute
    runs = tiny_run.runs()
    parents = [r for r in runs if r.data.tags.get("llmqfl.role") == "invocation"]
    # Assert: one parent, every stage run under it, each stage run tagged with its own code digest
    assert len(parents) == 1
    tags = parents[0].data.tags
    assert _is_head_or_before(tags["llmqfl.git.commit"])
    assert tags["llmqfl.git.dirty"] in {"true", "false"}
    assert tags["llmqfl.experiment"] == tiny_run.experiment
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == len(runs) - 1
    qfl = next(r for r in children if r.data.tags.get("llmqfl.stage") == "qfl")
    assert len(qfl.data.tags["llmqfl.code"]) == len(tags["llmqfl.code.qfl"]) == 16
    now = provenance.files_digest(provenance.stage_files.__wrapped__("qfl"))  # uncached: the code as it is now
    if now == tags["llmqfl.code.qfl"]:  # nobody changed the code while the pipeline ran
        assert qfl.data.tags["llmqfl.code"] == tags["llmqfl.code.qfl"]
    assert json.loads(json.dumps(tags))  # plain strings only
