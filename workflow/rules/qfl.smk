"""Rule `qfl`: one federated quantum training job per (arm, seed).

Targets: {RESULTS}/qfl/{arm}/seed_{seed}/{history.parquet, weights.npy, accounting.json}
(checkpoints/round_{r}.* are written beside them but are not declared outputs, so Snakemake does
not delete them before a re-run: the job always passes --resume and continues a killed run when the
inputs and config are unchanged; otherwise the stage starts afresh).
`llm_guided` needs every client's distill outputs; `budget_matched` replays llm_guided's history of
the same seed; `baseline` needs neither. Jobs on IBM hardware take one `qpu` resource each, so
`--resources qpu=1` serialises them.
"""

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
        cfg_hash=stage_cfg_hash("qfl"),
        data_dir=lambda wildcards: f"{upstream(wildcards.seed)}/data",
        partitions_dir=lambda wildcards: f"{upstream(wildcards.seed)}/partitions",
        distill_dir=lambda wildcards: f"{upstream(wildcards.seed)}/distill",
        out_dir=lambda wildcards: f"{RESULTS}/qfl/{wildcards.arm}/seed_{wildcards.seed}",
        extra=qfl_extra_args,
        code=stage_digest("qfl"),
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
        " --distill-dir {params.distill_dir:q} --out-dir {params.out_dir:q} {params.extra} --resume "
        + progress("qfl {wildcards.arm} seed {wildcards.seed}")
