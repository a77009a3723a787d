"""Rule `qfl`: one federated quantum training job per (arm, seed).

Targets: {RESULTS}/qfl/{arm}/seed_{seed}/{history.parquet, weights.npy, accounting.json}
(checkpoints/round_{r}.* are written beside them but are not declared outputs, so Snakemake does
not delete them before a re-run: the job always passes --resume and continues a killed run when the
inputs and config are unchanged; otherwise the stage starts afresh).
`llm_guided` needs every client's distill outputs; `budget_matched` replays llm_guided's history of
the same seed; `baseline` needs neither. Jobs on IBM hardware take one `qpu` resource each, so
`--resources qpu=1` serialises them.
"""

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


rule qfl:
    input:
        unpack(qfl_inputs),
    output:
        history=f"{RESULTS}/qfl/{{arm}}/seed_{{seed}}/history.parquet",
        weights=f"{RESULTS}/qfl/{{arm}}/seed_{{seed}}/weights.npy",
        accounting=f"{RESULTS}/qfl/{{arm}}/seed_{{seed}}/accounting.json",
    wildcard_constraints:
        arm="|".join(QFL_ARMS),
        seed=r"\d+",
    params:
        cfg=stage_cfg("qfl"),
        data_dir=f"{RESULTS}/data",
        partitions_dir=f"{RESULTS}/partitions",
        distill_dir=f"{RESULTS}/distill",
        out_dir=lambda wildcards: f"{RESULTS}/qfl/{wildcards.arm}/seed_{wildcards.seed}",
        extra=qfl_extra_args,
        code=code_version("federated", "quantum", "stages/qfl.py", "config.py", "io.py"),
    resources:
        qpu=1 if config["backend"]["kind"] == "ibm" else 0,
    threads: 1
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/qfl/{{arm}}/seed_{{seed}}.log",
    benchmark:
        f"{LOGS}/benchmarks/qfl/{{arm}}/seed_{{seed}}.tsv"
    shell:
        "python -m llmqfl.stages.qfl --config {params.cfg:q} --arm {wildcards.arm} --seed {wildcards.seed}"
        " --data-dir {params.data_dir:q} --partitions-dir {params.partitions_dir:q}"
        " --distill-dir {params.distill_dir:q} --out-dir {params.out_dir:q} {params.extra} --resume > {log} 2>&1"
