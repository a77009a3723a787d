"""Config validation, path helpers and MLflow lifecycle shared by every rule file."""

import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from llmqfl.config import deep_merge, validate_config  # noqa: E402
from llmqfl.errors import LlmqflError  # noqa: E402
from llmqfl.faults import check_workspace  # noqa: E402
from llmqfl.pipeline import (  # noqa: E402
    arm_config, full_reference_config, needs_embeddings, plan_stage_config, typed_cli_values, write_stage_configs,
)
from llmqfl import layout  # noqa: E402
from llmqfl.provenance import stage_digest  # noqa: E402
from llmqfl.replicates import replicate_scope, upstream_dir  # noqa: E402
from llmqfl import tracking  # noqa: E402
from llmqfl.data.preflight import preflight  # noqa: E402
from llmqfl.settings import Settings  # noqa: E402
from llmqfl.registry import traits  # noqa: E402

# nested `--config` values arrive as strings (backend={kind: fake, shots: 1024}): give them YAML types
config.update(deep_merge(config, typed_cli_values(dict(workflow.config_settings.config))))

try:
    _validated = validate_config(config)  # schema and cross-field rules
    SETTINGS = Settings.from_config(_validated)  # the typed config that package functions called here take
    preflight(SETTINGS)  # data, llm.model, backend: llmqfl.data.preflight
    # every folder the run writes, and HOME's cache, writable: checked before the first write (llmqfl.faults)
    check_workspace([("results folder", f"results/{_validated['experiment']}"),
                     ("logs folder", f"logs/{_validated['experiment']}"), ("working folder", ".snakemake")])
    if workflow.is_main_process and tracking.enabled():
        tracking.check_server()  # an http(s) store that does not answer: one line in seconds, not minutes
        # runs a killed earlier invocation left RUNNING (its process is gone from this host) become KILLED,
        # whatever this invocation goes on to do (run jobs, find nothing to do, dry-run)
        tracking.mark_stale_runs(_validated)
except LlmqflError as exc:
    sys.exit(f"llmqfl: {exc}")
config.clear()
config.update(_validated)
BACKEND_TRAITS = traits("backend", config["backend"]["kind"])  # what the kind does (llmqfl.registry), not its name

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
# `... 2>&1 | progress LOG TAG`: the whole output goes to LOG; the stage's progress lines (one
# `epoch e/E:` per distill epoch, one `federated round r:` per LoRA round and client, one `seed s: R rounds`
# per QFL replicate: 20 replicates x 10 rounds per arm would flood the console) also reach it, tagged.
# shell.prefix replaces Snakemake's `set -euo pipefail`, so it is restated; braces are doubled
# because Snakemake formats the prefix like a command.
PROGRESS_FN = (
    "progress() {{ tee \"$1\" | awk -v tag=\"$2\" "
    "'$0 ~ \" (epoch [0-9]+/[0-9]+:|federated round [0-9]+:|seed [0-9]+: [0-9]+ rounds)\" "
    "{{ sub(\"^.* INFO \", \"\"); print tag \": \" $0; fflush() }}' >&2; }}; "
)
# Jobs import the package next to this Snakefile (a clone runs its own code, the code its digests name).
SRC_DIR = str(Path(workflow.basedir) / "src")
# With --software-deployment-method conda, each job runs in workflow/envs/llmqfl.yaml: the venv must
# not come first on PATH then, or the conda directive would change nothing.
USES_CONDA = any(m.name == "CONDA" for m in workflow.deployment_settings.deployment_method)
VENV_PATH = "" if USES_CONDA else f"export PATH={VENV_BIN}:$PATH; "
shell.prefix(
    f"set -euo pipefail; {VENV_PATH}export PYTHONPATH={SRC_DIR}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
    + PROGRESS_FN
)


# Stage config files are content-addressed (results/{exp}/config/{stage}-{digest}.json, never
# overwritten: llmqfl.pipeline.plan_stage_config) and only planned while the Snakefile parses; `onstart`
# writes them (write_planned_configs), under Snakemake's lock and never in a dry run. So a later
# invocation with another config, or a `snakemake -n`, cannot change what a running job reads, and a
# dry run writes nothing.
_PLANNED_CONFIGS = {}


def plan_cfg(cfg, stage, folder):
    """The StageConfigFile of `stage` for config `cfg` in `folder`, remembered for `onstart` to write."""
    planned = plan_stage_config(cfg, stage, folder)
    _PLANNED_CONFIGS[planned.path] = planned
    return planned


def write_planned_configs():
    """Write every planned stage config file not there yet: called by `onstart` (under the lock)."""
    write_stage_configs(list(_PLANNED_CONFIGS.values()))


def stage_cfg(stage):
    """The path of the stage's config file: rules pass it to the stage CLI (each job's log stays one line)."""
    return plan_cfg(config, stage, f"{RESULTS}/config").path


def stage_cfg_hash(stage):
    """The digest of the stage's config slice: the param that decides re-runs."""
    return plan_cfg(config, stage, f"{RESULTS}/config").digest


def _arm_planned(stage, arm):
    return plan_cfg(arm_config(config, arm), stage, f"{RESULTS}/config")


def arm_cfg(stage):
    """Param function: the stage's config file for arm `wildcards.arm` (llmqfl.pipeline.arm_config: an arm
    without the LLM reads no guidance rule, so changing the rule does not re-run it)."""
    return lambda wildcards: _arm_planned(stage, wildcards.arm).path


def arm_cfg_hash(stage):
    """Param function: the digest of the stage's config slice for arm `wildcards.arm`."""
    return lambda wildcards: _arm_planned(stage, wildcards.arm).digest


def progress(tag):
    """Shell tail of a long job (see PROGRESS_FN): output to the rule's log, progress to the console."""
    return f"2>&1 | progress {{log:q}} '{tag}'"


# ---- input functions of data.smk ----

from llmqfl.data.sources import local_files  # noqa: E402


def data_inputs(wildcards=None):
    """The source's local files, relative to the project when inside it: a moved clone re-runs nothing."""
    here = Path.cwd()
    return [os.path.relpath(f) if Path(f).resolve().is_relative_to(here) else f for f in local_files(SETTINGS.data)]


# ---- input functions and constants of assets.smk ----

EMBEDDED_MODELS = ("smollm2-135m", "minilm-l6", "tiny-gpt2")


def model_asset(wildcards=None):
    """The asset the configured llm.model needs: a rule input for embedded names, nothing for hub ids or folders."""
    name = config["llm"]["model"]
    return [f"resources/models/{name}/config.json"] if name in EMBEDDED_MODELS else []


# ---- input functions and constants of distill.smk ----

import os

FED_ROUNDS = config["llm"]["federated_rounds"]
LLM_THREADS = config["llm"]["threads"]
LLM_CODE = stage_digest("distill")


def distill_outputs():
    """Every client's distill outputs: what later stages (qfl) take as input."""
    return [layout.distill_file(RESULTS, k, name) for name in (layout.CLIENT_METRICS, layout.TEACHER) for k in CLIENTS]


# the store of teachers shared by experiments (llmqfl.stage_cache): the key is the config slice without the
# experiment name, the code digest and every input's bytes
STORE = "results/.store"
STORE_RUN = f"python -m llmqfl.stage_cache --store {STORE}/distill --config {{params.cfg:q}} --code {{params.code}} " \
    "--inputs {input:q} "


def _folder(path):
    return os.path.dirname(path)


# ---- input functions and constants of qfl.smk ----

from llmqfl.contracts import ARMS as QFL_ARMS, BASELINE, BUDGET_MATCHED, EQUAL_COST, LLM_GUIDED, LOSS_STOPPING  # noqa: E402


def qfl_needs_embeddings():
    """Whether the qfl jobs take the base-LLM embeddings (llmqfl.pipeline.needs_embeddings)."""
    return needs_embeddings(config)


def qfl_outputs(arm, seed):
    return [layout.run_file(RESULTS, arm, seed, name) for name in layout.RUN_OUTPUTS]


def qfl_seed_outputs(name):
    """One file of every seed of the arm wildcard: the qfl job of an arm writes all its seeds."""
    return [layout.run_file(RESULTS, "{arm}", s, name) for s in SEEDS]


def qfl_targets():
    """Every (arm, seed) output of the config: what `rule all` asks for."""
    return [path for arm in ARMS for seed in SEEDS for path in qfl_outputs(arm, seed)]


for _arm in QFL_ARMS:  # planned now, so `onstart` writes them before any job runs
    for _stage in ("qfl", "evaluate"):
        _arm_planned(_stage, _arm)


def upstream(seed):
    """Where seed's data, partitions, distill and features live: results/{exp} or, with
    replicates.scope pipeline, results/{exp}/rep_{seed} (the `rep_` rules of UPSTREAM_ROOTS)."""
    return upstream_dir(RESULTS, config, int(seed))


# the same as a path template: {seed} filled in by the stage for each of its seeds
UPSTREAM = f"{RESULTS}/rep_{{seed}}" if replicate_scope(config) == "pipeline" else RESULTS


def _arm_history(arm):
    return [layout.run_file(RESULTS, arm, s, layout.HISTORY) for s in SEEDS]


def qfl_inputs(wildcards):
    inputs = {
        "data": [layout.data_file(upstream(s), split) for s in SEEDS for split in layout.SPLITS]
        + [layout.meta_file(upstream(s)) for s in SEEDS],
        "partitions": [layout.partition_file(upstream(s), k) for s in SEEDS for k in CLIENTS]
        + [layout.partition_summary(upstream(s)) for s in SEEDS],
    }
    if qfl_needs_embeddings():
        inputs["embeddings"] = [layout.embeddings_file(upstream(s)) for s in SEEDS]
    if wildcards.arm == LLM_GUIDED:
        inputs["distill"] = [
            layout.distill_file(upstream(s), k, name)
            for s in SEEDS for k in CLIENTS for name in (layout.CLIENT_METRICS, layout.TEACHER)
        ]
    if wildcards.arm == BUDGET_MATCHED:
        inputs["schedule"] = _arm_history(LLM_GUIDED)
    if wildcards.arm == EQUAL_COST:  # L's total circuit executions, spread evenly (llmqfl.federated.cost_budget)
        inputs["cost_reference"] = _arm_history(LLM_GUIDED)
    if wildcards.arm == LOSS_STOPPING or (
        wildcards.arm == LLM_GUIDED and config["qfl"]["termination"]["llm_threshold_quantile"] is not None
    ):
        # tau from the data: a quantile of the baseline's server-vs-LLM gap (L) or of its round-to-round
        # server-loss change (loss_stopping) (llmqfl.federated.threshold)
        inputs["tau_reference"] = _arm_history(BASELINE)
    return inputs


def qfl_extra_args(wildcards, input):
    """The per-seed reference files as {seed} path templates (the stage fills each seed in)."""
    args = []
    if "embeddings" in input.keys():
        args += ["--embeddings", layout.embeddings_file(UPSTREAM)]
    references = {"schedule": LLM_GUIDED, "cost_reference": LLM_GUIDED, "tau_reference": BASELINE}
    for option, arm in references.items():
        if option in input.keys():
            args += [f"--{option.replace('_', '-')}", layout.run_file(RESULTS, arm, "{seed}", layout.HISTORY)]
    return " ".join(shlex.quote(a) for a in args)


# ---- the upstream roots (data.smk, distill.smk) and report.smk's constants (llmqfl.replicates) ----

from llmqfl.replicates import replicate_config  # noqa: E402


def _rep_planned(stage, rep):
    return plan_cfg(replicate_config(config, int(rep)), stage, f"{RESULTS}/rep_{rep}/config")


def rep_cfg(stage):
    """Param function: the stage's config file for replicate `wildcards.rep`."""
    return lambda wildcards: _rep_planned(stage, wildcards.rep).path


def rep_cfg_hash(stage):
    """Param function: the digest of the stage's config slice for replicate `wildcards.rep`."""
    return lambda wildcards: _rep_planned(stage, wildcards.rep).digest


if replicate_scope(config) == "pipeline":  # planned now, so `onstart` writes them before any job runs
    for _rep in SEEDS:
        for _stage in ("data", "partition", "distill", "embed"):
            _rep_planned(_stage, _rep)


class UpstreamRoot:
    """Where one copy of the upstream rules (data, partition, distill, embed) reads and writes.

    name: the rules' name prefix; root / logs: the results and logs folders (may hold the {rep} wildcard);
    cfg / cfg_hash: the config param functions of a stage; progress: whether long jobs print progress lines.
    """

    def __init__(self, name, root, logs, cfg, cfg_hash, progress):
        self.name, self.root, self.logs, self.cfg, self.cfg_hash, self.progress = (
            name, root, logs, cfg, cfg_hash, progress)

    def tail(self, tag):
        """The shell tail of a long job: progress lines to the console, or only the log."""
        return f" {progress(tag)}" if self.progress else " --no-progress > {log:q} 2>&1"


# the experiment's own folder, and each pipeline-scope replicate's (results/{exp}/rep_{rep}: the same rules,
# named rep_*, each replicate's stage configs from its own root seed)
UPSTREAM_ROOTS = (
    UpstreamRoot("", RESULTS, LOGS, stage_cfg, stage_cfg_hash, progress=True),
    UpstreamRoot("rep_", f"{RESULTS}/rep_{{rep}}", f"{LOGS}/rep_{{rep}}", rep_cfg, rep_cfg_hash, progress=False),
)


UP0 = upstream(min(SEEDS))
PEFT_REFERENCE = list(range(min(config["report"]["peft_reference_clients"], len(CLIENTS))))
# claim C6's reference: llm.peft full with as many epochs as a client trains over its federated rounds
_FULL_REFERENCE = (
    plan_cfg(full_reference_config(config, min(SEEDS)), "distill", f"{RESULTS}/config/full_reference")
    if PEFT_REFERENCE else None
)
FULL_REFERENCE_CFG = (_FULL_REFERENCE.path, _FULL_REFERENCE.digest) if _FULL_REFERENCE else ("", "")
