"""Rule `qfl`: one federated quantum training job per arm, running every seed (replicate) in one process.

Targets: {RESULTS}/qfl/{arm}/seed_{seed}/{history.parquet, weights.npy, accounting.json} for every seed
(checkpoints/round_{r}.* are written beside them but are not declared outputs, so Snakemake does not
delete them before a re-run: the job always passes --resume, and each seed continues a killed run when
its inputs and config are unchanged; otherwise it starts afresh). One job per arm, not per (arm, seed):
the imports and MLflow set-up cost more than an exact-simulator run, so 20 replicates cost about as
much as 3 did. `llm_guided` needs every client's distill outputs; `budget_matched` replays and
`equal_cost` spends llm_guided's history of the same seed; `loss_stopping` and `llm_guided` read the
baseline's. Jobs on IBM hardware take one `qpu` resource each, so `--resources qpu=1` serialises them.
"""


rule qfl:
    input:
        unpack(qfl_inputs),
    output:
        history=qfl_seed_outputs(layout.HISTORY),
        weights=qfl_seed_outputs(layout.WEIGHTS),
        accounting=qfl_seed_outputs(layout.ACCOUNTING),
    wildcard_constraints:
        arm="|".join(QFL_ARMS),
    params:
        cfg=arm_cfg("qfl"),  # an arm without the LLM reads no guidance rule (llmqfl.pipeline.arm_config)
        cfg_hash=arm_cfg_hash("qfl"),
        seeds=" ".join(f"--seed {s}" for s in SEEDS),
        # path templates: the stage fills in each of its seeds (a function, so Snakemake leaves {seed} alone)
        data_dir=lambda wildcards: f"{UPSTREAM}/{layout.DATA}",
        partitions_dir=lambda wildcards: f"{UPSTREAM}/{layout.PARTITIONS}",
        distill_dir=lambda wildcards: f"{UPSTREAM}/{layout.DISTILL}",
        out_dir=lambda wildcards: f"{RESULTS}/{layout.QFL}/{wildcards.arm}/{layout.seed_dir('{seed}')}",
        extra=qfl_extra_args,
        code=stage_digest("qfl"),
    resources:
        qpu=1 if BACKEND_TRAITS["qpu"] else 0,
    threads: 1
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/qfl/{{arm}}.log",
    benchmark:
        f"{LOGS}/benchmarks/qfl/{{arm}}.tsv"
    shell:
        "python -m llmqfl.stages.qfl --config {params.cfg:q} --arm {wildcards.arm} {params.seeds}"
        " --data-dir {params.data_dir:q} --partitions-dir {params.partitions_dir:q}"
        " --distill-dir {params.distill_dir:q} --out-dir {params.out_dir:q} {params.extra} --resume "
        + progress("qfl {wildcards.arm}")
