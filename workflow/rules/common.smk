"""Config validation, path helpers and MLflow lifecycle shared by every rule file."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from llmqfl.config import stage_config_json, validate_config  # noqa: E402
from llmqfl.errors import LlmqflError  # noqa: E402
from llmqfl.provenance import QFL_CODE, code_digest  # noqa: E402
from llmqfl import tracking  # noqa: E402
from llmqfl.data.preflight import preflight  # noqa: E402

try:
    _validated = preflight(config)  # schema, data, llm.model, backend: llmqfl.data.preflight
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
VENV_BIN = str(Path(sys.executable).parent)
# With --software-deployment-method conda, each job runs in workflow/envs/llmqfl.yaml: the venv must
# not come first on PATH then, or the conda directive would change nothing.
USES_CONDA = any(m.name == "CONDA" for m in workflow.deployment_settings.deployment_method)
shell.prefix("" if USES_CONDA else f"export PATH={VENV_BIN}:$PATH; ")


def stage_cfg(stage):
    """The stage's config slice as canonical JSON: a Snakemake param, so a change re-runs the stage."""
    return stage_config_json(config, stage)


# ---- input functions and constants of assets.smk ----

EMBEDDED_MODELS = ("smollm2-135m", "minilm-l6", "tiny-gpt2")


def model_asset(wildcards=None):
    """The asset the configured llm.model needs: a rule input for embedded names, nothing for hub ids or folders."""
    name = config["llm"]["model"]
    return [f"resources/models/{name}/config.json"] if name in EMBEDDED_MODELS else []


# ---- input functions and constants of distill.smk ----

import os

FED_ROUNDS = config["llm"]["federated_rounds"]
DISTILL = f"{RESULTS}/distill"
LLM_THREADS = config["llm"]["threads"]
LLM_CODE = code_digest("llm", "data/encoders.py", "io.py")


def distill_outputs():
    """Every client's distill outputs: what later stages (qfl) take as input."""
    return expand(f"{DISTILL}/client_{{k}}/metrics.json", k=CLIENTS) + expand(
        f"{DISTILL}/client_{{k}}/teacher.parquet", k=CLIENTS
    )


def _round_dir(r):
    return f"{DISTILL}/rounds/round_{r}"


def _round_init(wildcards):
    """A round starts from the previous round's global adapter (round 1 from the base model)."""
    r = int(wildcards.r)
    return {"init": f"{_round_dir(r - 1)}/global/aggregate.json"} if r > 1 else {}


def _init_flag(wildcards, input):
    """Round r > 1 continues from the adapter beside the previous round's aggregate.json."""
    return f"--init-adapter {os.path.dirname(input.init)}/adapter" if "init" in input.keys() else ""


def _folder(path):
    return os.path.dirname(path)


# ---- input functions and constants of qfl.smk ----

QFL_ARMS = ("baseline", "llm_guided", "budget_matched")
TEXT_SOURCES = ("rotten_tomatoes", "tweet_eval")


def qfl_needs_embeddings():
    """Text items (or an explicit `embedding` source) use the base-LLM embeddings as features.

    A csv source's kind is only known after the data stage, so a csv without feature columns
    depends on the embeddings too (the stage ignores them for DNA items).
    """
    data, features = config["data"], config["qfl"]["features"]
    if features["source"] != "auto":
        return features["source"] == "embedding"
    if data["feature_columns"]:
        return False
    return data["source"] in TEXT_SOURCES or data["source"] == "csv"


def qfl_outputs(arm, seed):
    folder = f"{RESULTS}/qfl/{arm}/seed_{seed}"
    return [f"{folder}/history.parquet", f"{folder}/weights.npy", f"{folder}/accounting.json"]


def qfl_targets():
    """Every (arm, seed) output of the config: what `rule all` asks for."""
    return [path for arm in ARMS for seed in SEEDS for path in qfl_outputs(arm, seed)]


def qfl_inputs(wildcards):
    inputs = {
        "data": [f"{RESULTS}/data/{split}.parquet" for split in ("train", "test", "server_val")]
        + [f"{RESULTS}/data/meta.json"],
        "partitions": [f"{RESULTS}/partitions/client_{k}.parquet" for k in CLIENTS]
        + [f"{RESULTS}/partitions/partitions.json"],
    }
    if qfl_needs_embeddings():
        inputs["embeddings"] = f"{RESULTS}/features/embeddings.parquet"
    if wildcards.arm == "llm_guided":
        inputs["distill"] = [
            f"{RESULTS}/distill/client_{k}/{name}" for k in CLIENTS for name in ("metrics.json", "teacher.parquet")
        ]
    if wildcards.arm == "budget_matched":
        inputs["schedule"] = f"{RESULTS}/qfl/llm_guided/seed_{wildcards.seed}/history.parquet"
    return inputs


def qfl_extra_args(wildcards, input):
    args = []
    if "embeddings" in input.keys():
        args += ["--embeddings", input.embeddings]
    if "schedule" in input.keys():
        args += ["--schedule", input.schedule]
    return " ".join(args)
    if wildcards.arm == "llm_guided" and config["qfl"]["termination"]["llm_threshold_quantile"] is not None:
        # tau from the data: a quantile of the baseline's server-vs-LLM gap (llmqfl.federated.threshold)
        inputs["tau_reference"] = f"{RESULTS}/qfl/baseline/seed_{wildcards.seed}/history.parquet"
    if "tau_reference" in input.keys():
        args += ["--tau-reference", input.tau_reference]
