"""What a run on a Slurm cluster needs beyond one machine: where jobs go, how much memory they ask
for, and an MLflow store that many nodes may write at once (docs/cluster.md).

The Snakefile calls :func:`export_job_settings` while it is parsed (the slurm profile reads the
exported variables) and :func:`check_cluster_run` in ``onstart``, once the executor is known and
before the first job is submitted.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from llmqfl.errors import ConfigError

PARTITION_ENV = "SLURM_PARTITION"
ACCOUNT_ENV = "SLURM_ACCOUNT"
MEM_ENV = "LLMQFL_LLM_MEM_MB"  # the profile's mem_mb of the LLM rules
GPU_PARTITION_ENV = "SLURM_GPU_PARTITION"  # where the slurm-gpu profile sends the LLM rules (else the partition)
GPU_PARTITION_EXPORT = "LLMQFL_GPU_PARTITION"
CLUSTER_EXECUTORS = frozenset({"slurm"})

# parameters (millions) of the embedded models (llmqfl.llm.model_assets): their folders may not exist
# yet when the workflow is parsed (the asset rule builds them)
EMBEDDED_PARAMS_M = {"tiny-gpt2": 0.1, "minilm-l6": 22.7, "smollm2-135m": 135.0}
UNKNOWN_PARAMS_M = 500.0  # a hub id whose size cannot be read offline: room for a ~0.5B model
RUNTIME_MB = 1536  # python + torch + transformers + pandas before any weights
BYTES_PER_PARAM = 16  # fp32 weights, gradients and two Adam moments: the full fine-tuning bound


def slurm_target(config: Mapping[str, Any], env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(partition, account): ``cluster.partition``/``cluster.account`` of the config, else the environment."""
    section = config.get("cluster") or {}
    partition = section.get("partition") or env.get(PARTITION_ENV) or None
    account = section.get("account") or env.get(ACCOUNT_ENV) or None
    return partition, account


def model_params_m(model: str) -> float:
    """Millions of parameters of ``llm.model``: known for embedded names, from the weight files of a local
    folder (4 bytes a parameter at most), else :data:`UNKNOWN_PARAMS_M`."""
    if model in EMBEDDED_PARAMS_M:
        return EMBEDDED_PARAMS_M[model]
    folder = Path(model).expanduser()
    if folder.is_dir():
        weights = [p for p in folder.iterdir() if p.suffix in {".safetensors", ".bin", ".pt", ".gguf"}]
        if weights:
            return sum(p.stat().st_size for p in weights) / 4 / 1e6
    return UNKNOWN_PARAMS_M


def llm_mem_mb(model: str) -> int:
    """Memory (MB) to book for one LLM job (distill, embed): the runtime plus 16 bytes a parameter,
    rounded up to 512 MB; LoRA needs less than this bound, full fine-tuning about this."""
    need = RUNTIME_MB + BYTES_PER_PARAM * model_params_m(model)
    return int(math.ceil(need / 512) * 512)


def export_job_settings(config: Mapping[str, Any], env: MutableMapping[str, str] | None = None) -> None:
    """Put partition, account, the LLM jobs' memory and GPU partition where the slurm profiles expand them ($VARS)."""
    env = os.environ if env is None else env
    partition, account = slurm_target(config, env)
    if partition:
        env[PARTITION_ENV] = partition
    if account:
        env[ACCOUNT_ENV] = account
    env[MEM_ENV] = str(llm_mem_mb(config["llm"]["model"]))
    gpu_partition = (config.get("cluster") or {}).get("gpu_partition") or env.get(GPU_PARTITION_ENV) or partition
    if gpu_partition:
        env[GPU_PARTITION_EXPORT] = gpu_partition


def is_shared_file_store(uri: str) -> bool:
    """Whether an MLflow tracking URI is a file on disk (sqlite or a file store) rather than a server."""
    scheme = uri.split(":", 1)[0].lower() if "://" in uri or uri.startswith("sqlite:") else "file"
    return scheme in {"sqlite", "file"}


def check_cluster_run(executor: str | None, config: Mapping[str, Any], env: Mapping[str, str]) -> None:
    """Refuse a cluster run that would fail on its first job or corrupt tracking: raises ConfigError."""
    if executor not in CLUSTER_EXECUTORS:
        return
    partition, account = slurm_target(config, env)
    missing = [name for name, value in (("partition", partition), ("account", account)) if not value]
    if missing:
        raise ConfigError(
            f"the {executor} executor needs a Slurm {' and '.join(missing)}: set "
            + " and ".join(f"cluster.{m} in the config (or {PARTITION_ENV if m == 'partition' else ACCOUNT_ENV})"
                           for m in missing)
            + "; `sinfo -s` lists partitions, `sacctmgr show assoc user=$USER` your accounts"
        )
    from llmqfl import tracking

    uri = env.get("MLFLOW_TRACKING_URI") or tracking.DEFAULT_URI
    enabled = env.get(tracking.DISABLE_ENV, "on").lower() not in {"off", "0", "false"}
    if enabled and is_shared_file_store(uri):
        raise ConfigError(
            f"MLFLOW_TRACKING_URI is {uri!r}: jobs on many nodes must not write one file store; start an "
            "`mlflow server` (docs/cluster.md) and set MLFLOW_TRACKING_URI=http://HOST:PORT, or LLMQFL_TRACKING=off"
        )
