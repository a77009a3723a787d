"""The tags that say where an MLflow run came from: command, git commit, code digests, DVC experiment.

An invocation is the command a user typed: one ``snakemake``, or one ``dvc repro`` / ``dvc exp run``,
which starts one ``snakemake`` per DVC stage. DVC marks each stage command with ``DVC_STAGE`` (and,
during ``dvc exp run``, ``DVC_EXP_NAME`` and ``DVC_EXP_BASELINE_REV``) in its environment; the DVC
process itself is the nearest ancestor without ``DVC_STAGE``, and its pid and start time name the
invocation, so every snakemake of one DVC command finds the same parent run.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DVC_STAGE = "DVC_STAGE"
DVC_EXP_NAME = "DVC_EXP_NAME"
DVC_EXP_BASELINE_REV = "DVC_EXP_BASELINE_REV"
PROJECT = Path(__file__).resolve().parents[2]  # the checkout the package runs from (src/llmqfl/..)


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux ``/proc``), None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of stat(5); fields 1-2 end at the last ')'


def _proc_parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _has_dvc_stage(pid: int) -> bool | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    return any(entry.startswith(DVC_STAGE.encode() + b"=") for entry in environ.split(b"\0"))


def dvc_process() -> int | None:
    """The pid of the DVC command that started this process (nearest ancestor without ``DVC_STAGE``)."""
    if DVC_STAGE not in os.environ:
        return None
    pid = os.getppid()
    for _ in range(32):
        if pid is None or pid <= 1:
            return None
        marked = _has_dvc_stage(pid)
        if marked is None:
            return None
        if not marked:
            return pid
        pid = _proc_parent(pid)
    return None


def invocation_key() -> str:
    """``dvc-<host>-<pid>-<start>`` for the DVC command above us, else the same for this process."""
    pid = dvc_process()
    kind = "dvc"
    if pid is None:
        pid, kind = os.getpid(), "snakemake"
    return f"{kind}-{socket.gethostname()}-{pid}-{_proc_start(pid) or 'x'}"


def command() -> str:
    if DVC_EXP_NAME in os.environ or DVC_EXP_BASELINE_REV in os.environ:
        return "dvc exp run"
    return "dvc repro" if DVC_STAGE in os.environ else "snakemake"


def git_state(root: str = str(PROJECT)) -> dict[str, str]:
    """Commit and dirty flag (tracked files changed) of the checkout; empty outside a git repository."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", root, *args], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
        branch = git("rev-parse", "--abbrev-ref", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": commit, "dirty": "true" if dirty else "false", "branch": branch}


def code_digests() -> dict[str, str]:
    """stage -> digest of the code it runs (``llmqfl.provenance``), as tags ``llmqfl.code.<stage>``."""
    from llmqfl import provenance

    return {f"llmqfl.code.{stage}": provenance.stage_digest(stage) for stage in provenance.STAGE_MODULES}


def stage_code_tags(stage: str) -> dict[str, str]:
    """``llmqfl.code``: the digest of the code one stage job ran (nothing for a stage the table lacks), and the
    Source the MLflow UI shows for the job (``python -m llmqfl.stages.<stage>``) with the checkout's commit."""
    from llmqfl import provenance

    tags = {"mlflow.source.name": f"llmqfl.stages.{stage}", "mlflow.source.type": "LOCAL"}
    commit = git_state().get("commit")
    if commit:
        tags["mlflow.source.git.commit"] = commit
    if stage in provenance.STAGE_MODULES:
        tags["llmqfl.code"] = provenance.stage_digest(stage)
    return tags


def config_digest(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def parent_run_name(config: Mapping[str, Any]) -> str:
    """The parent run's name: the DVC experiment under ``dvc exp run``, else the command and the experiment."""
    experiment = str(config.get("experiment", ""))
    exp_name = os.environ.get(DVC_EXP_NAME)
    if exp_name:
        return f"dvc exp {exp_name}"
    return f"{command()} {experiment}".strip()


def invocation_tags(config: Mapping[str, Any]) -> dict[str, str]:
    """Every tag of an invocation's parent run (values are strings; absent facts are left out)."""
    tags = {
        "llmqfl.role": "invocation",
        "mlflow.source.name": command(),  # the MLflow UI's Source column
        "mlflow.source.type": "LOCAL",
        "llmqfl.invocation": invocation_key(),
        "llmqfl.command": command(),
        "llmqfl.experiment": str(config.get("experiment", "")),
        "llmqfl.config_digest": config_digest(config),
        **code_digests(),
    }
    git = git_state()
    if git:
        tags.update({
            "mlflow.source.git.commit": git["commit"],  # what the MLflow UI shows as the run's commit
            "llmqfl.git.commit": git["commit"],
            "llmqfl.git.dirty": git["dirty"],
            "llmqfl.git.branch": git["branch"],
        })
    for env, tag in ((DVC_EXP_NAME, "llmqfl.dvc.exp_name"), (DVC_EXP_BASELINE_REV, "llmqfl.dvc.baseline_rev"),
                     (DVC_STAGE, "llmqfl.dvc.stage")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return tags


def frame_digest(frame: Any) -> str:
    """A content digest of a data frame (values and column names), 16 hex digits."""
    import pandas as pd

    digest = hashlib.sha256(",".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame.map(_hashable), index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def _hashable(value: Any) -> Any:
    """Lists and arrays (embedding cells) as their repr: pandas cannot hash them."""
    return repr(list(value)) if hasattr(value, "__len__") and not isinstance(value, str | bytes) else value
