"""Rule `plan`: what the config will cost on a QPU, before any qfl job runs.

Target: {RESULTS}/plan.json (jobs, circuits, shots and estimated QPU seconds per arm and seed, and in
total; llmqfl.planning). It needs only the data and partition stages, so `snakemake plan` shows the
cost of a hardware config for the price of the data split; a run over backend.shot_budget or
backend.qpu_seconds_budget fails here with one line (the qfl stage refuses it again before its first job).
"""


rule plan:
    input:
        meta=layout.meta_file(UP0),
        partitions=layout.partition_summary(UP0),
    output:
        layout.plan_file(RESULTS),
    params:
        cfg=stage_cfg("qfl"),
        cfg_hash=stage_cfg_hash("qfl"),
        code=stage_digest("plan"),
        data_dir=lambda wildcards, input: os.path.dirname(input.meta),
        partitions_dir=lambda wildcards, input: os.path.dirname(input.partitions),
        arms=",".join(ARMS),
        seeds=",".join(str(seed) for seed in SEEDS),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/plan.log",
    shell:
        "python -m llmqfl.stages.plan --config {params.cfg:q} --data-dir {params.data_dir:q}"
        " --partitions-dir {params.partitions_dir:q} --arms {params.arms:q} --seeds {params.seeds:q}"
        " --out {output:q} 2>&1 | tee {log:q}"
