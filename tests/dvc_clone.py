"""A fresh clone of this checkout for the DVC and Snakemake tests: what `git clone` of the tree gives.

Tracked and untracked-but-not-ignored files are copied (the working tree as it would be committed),
committed in a new git repository, with the venv and the model assets linked (both are ignored).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(cwd: Path, *args: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """Run a command in ``cwd`` with tracking off; a failure shows its output."""
    env = {**os.environ, "LLMQFL_TRACKING": "off", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "DVC_NO_ANALYTICS": "1"}
    env.pop("LLMQFL_MLFLOW_PARENT_RUN_ID", None)
    env.pop("PYTHONPATH", None)
    done = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        tail = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}):\n{tail}")
    return done


def fresh_clone(target: Path) -> Path:
    """Copy the tree's files into ``target``, commit them, link .venv and resources/."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        # results and a dvc.lock of this checkout's own runs are not in a clone (neither is committed)
        if source.is_file() and not name.startswith("results/") and name != "dvc.lock":
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to(BIN.parent)
    (ROOT / "resources").mkdir(exist_ok=True)
    (target / "resources").symlink_to(ROOT / "resources")
    run(target, "git", "init", "-q")
    # the links are not part of the clone (a symlink does not match the `.venv/` directory pattern)
    (target / ".git" / "info" / "exclude").write_text("/.venv\n/resources\n")
    commit(target, "clone")
    return target


def commit(repo: Path, message: str) -> None:
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "--allow-empty", "-m", message)


def write_yaml(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


DVC = str(BIN / "dvc")
TINY_CONFIG = "tests/configs/tiny-dvc.yaml"
_REPRODUCED: dict[str, Path] = {}


def tiny_dvc_repo(factory) -> Path:  # factory: pytest.TempPathFactory
    """A fresh clone whose dvc.yaml holds only the tiny experiment, reproduced and committed (once a session).

    The experiment: tests/configs/tiny.yaml with two clients and the baseline and llm_guided arms
    (one distill job per client, one qfl job per arm), so a variant run stays short.
    """
    if "repo" in _REPRODUCED:
        return _REPRODUCED["repo"]
    from llmqfl.dvc_yaml import dvc_yaml, render

    repo = fresh_clone(factory.mktemp("clone"))
    tiny = yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text())
    tiny.update(arms=["baseline", "llm_guided"], report={"peft_reference_clients": 0})
    tiny["federation"]["n_clients"] = 2
    write_yaml(repo / TINY_CONFIG, tiny)
    (repo / "dvc.yaml").write_text(render(dvc_yaml(repo, {"tiny": ["config/config.yaml", TINY_CONFIG]})))
    commit(repo, "tiny experiment")
    run(repo, DVC, "repro")
    commit(repo, "baseline results")
    _REPRODUCED["repo"] = repo
    # as the run left it, for tests that need Snakemake's own records untouched by `dvc exp`/`dvc checkout`
    _REPRODUCED["pristine"] = copy_repo(repo, repo.parent / "pristine")
    return repo


def pristine_run(factory, target: Path) -> Path:  # factory: pytest.TempPathFactory
    """A copy, at ``target``, of the tiny run folder right after `dvc repro`."""
    tiny_dvc_repo(factory)
    return copy_repo(_REPRODUCED["pristine"], target)


def copy_repo(repo: Path, target: Path) -> Path:
    """A copy of a run folder at another path, mtimes kept (as `cp -a` or moving the folder does)."""
    shutil.copytree(repo, target, symlinks=True)
    return target
