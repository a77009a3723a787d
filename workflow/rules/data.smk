"""Rules `data` (load + split the configured source) and `partition` (share training items over clients)."""

import os


rule data:
    input:
        data_inputs,
    output:
        train=f"{RESULTS}/data/train.parquet",
        test=f"{RESULTS}/data/test.parquet",
        server_val=f"{RESULTS}/data/server_val.parquet",
        meta=f"{RESULTS}/data/meta.json",
    params:
        cfg=stage_cfg("data"),
        cfg_hash=stage_cfg_hash("data"),
        code=stage_digest("data"),
        out_dir=lambda wildcards, output: os.path.dirname(output.meta),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/data.log",
    shell:
        "python -m llmqfl.stages.data --config {params.cfg:q} --out-dir {params.out_dir:q} > {log} 2>&1"


rule partition:
    input:
        train=f"{RESULTS}/data/train.parquet",
        meta=f"{RESULTS}/data/meta.json",
    output:
        clients=expand(f"{RESULTS}/partitions/client_{{k}}.parquet", k=CLIENTS),
        summary=f"{RESULTS}/partitions/partitions.json",
    params:
        cfg=stage_cfg("partition"),
        cfg_hash=stage_cfg_hash("partition"),
        code=stage_digest("partition"),
        data_dir=lambda wildcards, input: os.path.dirname(input.meta),
        out_dir=lambda wildcards, output: os.path.dirname(output.summary),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/partition.log",
    shell:
        "python -m llmqfl.stages.partition --config {params.cfg:q} --data-dir {params.data_dir:q}"
        " --out-dir {params.out_dir:q} > {log} 2>&1"
