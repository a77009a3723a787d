"""Config validation, path helpers and MLflow lifecycle shared by every rule file."""

import hashlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from llmqfl.config import stage_config_json, validate_config  # noqa: E402
from llmqfl.errors import LlmqflError  # noqa: E402
from llmqfl import tracking  # noqa: E402
from llmqfl.data.preflight import check_config_data  # noqa: E402

try:
    _validated = validate_config(config)
    check_config_data(_validated)
    if _validated["backend"]["kind"] != "aer":
        from llmqfl.quantum.backends import check_backend_config

        check_backend_config(_validated)
except LlmqflError as exc:
    sys.exit(f"llmqfl: {exc}")
config.clear()
config.update(_validated)

EXP = config["experiment"]
RESULTS = f"results/{EXP}"
LOGS = f"logs/{EXP}"
CLIENTS = list(range(config["federation"]["n_clients"]))
ARMS = config["arms"]
SEEDS = config["seeds"]
CONDA_ENV = "../envs/llmqfl.yaml"
# Jobs run `python -m llmqfl.stages.*` with the interpreter that runs Snakemake (the venv's),
# as if the venv were activated.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def stage_cfg(stage):
    """The stage's config slice as canonical JSON: a Snakemake param, so a change re-runs the stage."""
    return stage_config_json(config, stage)


def code_version(*parts):
    """sha256 of the package sources a rule runs (subpackages or modules under src/llmqfl).

    Used as a rule param: Snakemake re-runs a job when its params change, so a code change
    re-runs exactly the stages whose code changed (and DVC, which calls Snakemake, follows).
    """
    digest = hashlib.sha256()
    package = Path(workflow.basedir) / "src" / "llmqfl"
    for part in parts:
        target = package / part
        files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
        for path in files:
            digest.update(str(path.relative_to(package)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


onstart:
    tracking.start_parent_run(config, run_name=f"snakemake {EXP}")


onsuccess:
    tracking.end_parent_run("FINISHED")


onerror:
    tracking.end_parent_run("FAILED")
