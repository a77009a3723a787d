"""Where the stage file contract's files live: one place for the folders and file names stages pass on.

The Snakemake rules (``workflow/rules/*.smk``, through ``common.smk``) and the stage modules take
their paths from here, so a file is named once (docs/architecture.md, "The stage file contract").
``root`` is an experiment's results folder (``results/EXP``) or, with ``replicates.scope: pipeline``,
a replicate's upstream folder (``results/EXP/rep_S``). A client id ``k``, a seed or an arm may be a
Snakemake wildcard (``"{k}"``): every function only formats strings.
"""

from __future__ import annotations

# folders under a root
DATA, PARTITIONS, DISTILL, FEATURES, QFL, EVAL, REPORT, PLOTS = (
    "data", "partitions", "distill", "features", "qfl", "eval", "report", "plots")
# C6's reference: full fine-tuning of a few clients, laid out as distill/
DISTILL_FULL = "distill_full"
# data: one parquet file per split, and what the data stage learned about the items
SPLITS = ("train", "test", "server_val")
META = "meta.json"
# partition: one parquet file per client, and the sizes and label histograms
PARTITION_SUMMARY = "partitions.json"
# distill: per client, the fine-tuned adapter, the teacher's outputs and the run's metrics; federated LoRA
# rounds (llm.federated_rounds > 0) add rounds/ and checkpoints/
ADAPTER, TEACHER, CLIENT_METRICS = "adapter", "teacher.parquet", "metrics.json"
ROUNDS = "rounds"
# embed: base-model embeddings of every split (text items)
EMBEDDINGS = "embeddings.parquet"
# qfl: per arm and seed
HISTORY, WEIGHTS, ACCOUNTING = "history.parquet", "weights.npy", "accounting.json"
RUN_OUTPUTS = (HISTORY, WEIGHTS, ACCOUNTING)
# and the servable model bundle beside them (llmqfl.serving; not a Snakemake output)
MODEL = "model"
# the experiment's DVC metrics and the report's files: the claims table, the answer (each also as JSON and
# HTML), the measured times kept out of the DVC metrics, and the figures folder
METRICS, CLAIMS = "metrics.json", "claims.md"
CLAIMS_JSON, CLAIMS_HTML = "claims.json", "claims.html"
ANSWER_JSON, ANSWER_MD, ANSWER_HTML = "answer.json", "answer.md", "answer.html"
TIMINGS, FIGURES = "timings.json", "figures"
# the QPU cost plan of the configured runs (the plan rule)
PLAN = "plan.json"


def client_dir(k: int | str) -> str:
    return f"client_{k}"


def seed_dir(seed: int | str) -> str:
    return f"seed_{seed}"


def split_name(split: str) -> str:
    """A data split's file name (``train.parquet``)."""
    return f"{split}.parquet"


def partition_name(k: int | str) -> str:
    """Client k's partition file name (``client_k.parquet``)."""
    return f"{client_dir(k)}.parquet"


def data_file(root: str, split: str) -> str:
    return f"{root}/{DATA}/{split_name(split)}"


def meta_file(root: str) -> str:
    return f"{root}/{DATA}/{META}"


def partition_file(root: str, k: int | str) -> str:
    return f"{root}/{PARTITIONS}/{partition_name(k)}"


def partition_summary(root: str) -> str:
    return f"{root}/{PARTITIONS}/{PARTITION_SUMMARY}"


def distill_file(root: str, k: int | str, name: str, folder: str = DISTILL) -> str:
    """Client k's distill output ``name`` (ADAPTER, TEACHER or CLIENT_METRICS); DISTILL_FULL for C6's reference."""
    return f"{root}/{folder}/{client_dir(k)}/{name}"


def embeddings_file(root: str) -> str:
    return f"{root}/{FEATURES}/{EMBEDDINGS}"


def run_file(root: str, arm: str, seed: int | str, name: str) -> str:
    """One qfl run's output ``name`` (HISTORY, WEIGHTS or ACCOUNTING) of ``arm`` and ``seed``."""
    return f"{root}/{QFL}/{arm}/{seed_dir(seed)}/{name}"


def eval_file(root: str, arm: str, seed: int | str) -> str:
    return f"{root}/{EVAL}/{arm}/{seed_dir(seed)}.json"


def report_file(root: str, name: str) -> str:
    """A report output ``name`` (CLAIMS, ANSWER_MD, ..., or ``figures/NAME.png``)."""
    return f"{root}/{REPORT}/{name}"


def plan_file(root: str) -> str:
    """The cost plan of every configured run (jobs, circuits, shots, QPU seconds)."""
    return f"{root}/{PLAN}"


def plot_file(root: str, arm: str) -> str:
    """An arm's per-round DVC plot data."""
    return f"{root}/{PLOTS}/{arm}.csv"


def metrics_file(root: str) -> str:
    """The experiment's DVC metrics."""
    return f"{root}/{METRICS}"
