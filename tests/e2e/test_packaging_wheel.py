"""A wheel built from the repository, installed non-editable into a fresh venv, runs a tiny pipeline
(the workflow files and data of a checkout, the package only from the wheel)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: int = 900) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done.stdout


def _build_wheel(tmp: Path) -> Path:
    """``pip wheel --no-deps --no-build-isolation`` on a copy of the source (links resolved, no build/ in the repo)."""
    source = tmp / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(ROOT / "src", source / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "dist", source)
    (wheel,) = (tmp / "dist").glob("llmqfl-*.whl")
    return wheel


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    """A venv with the wheel installed; its dependencies come from this venv's site-packages via a .pth
    (read as a plain path: this venv's editable-install hook is not run there)."""
    venv = tmp / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    _run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, wheel)
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def _workdir(tmp: Path) -> Path:
    """The workflow of a checkout (Snakefile, rules, schema, config, data) without src/."""
    work = tmp / "work"
    work.mkdir()
    shutil.copy(ROOT / "Snakefile", work / "Snakefile")
    shutil.copytree(ROOT / "workflow", work / "workflow")  # links resolved: the schema is a real file here
    (work / "config").mkdir()
    shutil.copy(ROOT / "config" / "config.yaml", work / "config" / "config.yaml")
    (work / "data").symlink_to(ROOT / "data")
    tiny = yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text())
    tiny["arms"] = ["baseline"]  # no LLM: data, partition, qfl, evaluate, report
    tiny["report"] = {**tiny.get("report", {}), "peft_reference_clients": 0}  # no full fine-tuning reference
    (work / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    return work


@pytest.mark.slow
def test_a_wheel_installed_into_a_fresh_venv_runs_a_tiny_pipeline(tmp_path: Path) -> None:
    # Prepare
    wheel = _build_wheel(tmp_path)
    python = _fresh_venv(tmp_path, wheel)
    work = _workdir(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["LLMQFL_TRACKING"] = "off"
    # Assert: the fresh venv imports the installed package (schema included), not the checkout
    where = _run(python, "-c", "import llmqfl, llmqfl.config as c; c.load_schema(); print(llmqfl.__file__)", cwd=work,
                 env=env)  # fmt: skip
    assert where.strip().startswith(str(tmp_path / "venv")), where
    # Execute
    _run(python, "-m", "snakemake", "-s", work / "Snakefile", "-d", work, "--cores", "2",
         "--configfile", work / "tiny.yaml", cwd=work, env=env, timeout=1200)  # fmt: skip
    # Assert
    results = work / "results" / "tiny"
    assert (results / "qfl" / "baseline" / "seed_0" / "history.parquet").is_file()
    assert (results / "eval" / "baseline" / "seed_0.json").is_file()
    assert (results / "report" / "claims.md").is_file()


def test_the_conda_env_names_the_lock_it_installs() -> None:
    # Snakemake hashes only the env file: the lock's digest in it makes a lock change build a new env
    import hashlib

    env = (ROOT / "workflow" / "envs" / "llmqfl.yaml").read_text()
    digest = hashlib.sha256((ROOT / "requirements.lock").read_bytes()).hexdigest()
    assert f"# requirements.lock sha256: {digest}" in env, "update the digest line in workflow/envs/llmqfl.yaml"
    assert "-r ../../requirements.lock" in env


def test_with_conda_the_venv_is_not_put_ahead_of_the_env() -> None:
    common = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    assert 'VENV_PATH = "" if USES_CONDA else' in common and "{VENV_PATH}" in common
