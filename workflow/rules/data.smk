"""Rules `data` (load + split the configured source) and `partition` (share training items over clients).

Like the other upstream rules (distill.smk), each is defined once per root of UPSTREAM_ROOTS (common.smk):
the experiment's results folder, and, under the name `rep_data` / `rep_partition`, each pipeline-scope
replicate's folder results/{exp}/rep_{rep} with that replicate's config (llmqfl.replicates).
"""

import os

wildcard_constraints:
    rep=r"\d+",


for _up in UPSTREAM_ROOTS:

    rule:
        name:
            f"{_up.name}data"
        input:
            data_inputs,
        output:
            train=layout.data_file(_up.root, "train"),
            test=layout.data_file(_up.root, "test"),
            server_val=layout.data_file(_up.root, "server_val"),
            meta=layout.meta_file(_up.root),
        params:
            cfg=_up.cfg("data"),
            cfg_hash=_up.cfg_hash("data"),
            code=stage_digest("data"),
            out_dir=lambda wildcards, output: os.path.dirname(output.meta),
        conda:
            CONDA_ENV
        log:
            f"{_up.logs}/data.log",
        shell:
            "python -m llmqfl.stages.data --config {params.cfg:q} --out-dir {params.out_dir:q} > {log} 2>&1"

    rule:
        name:
            f"{_up.name}partition"
        input:
            train=layout.data_file(_up.root, "train"),
            meta=layout.meta_file(_up.root),
        output:
            clients=expand(layout.partition_file(_up.root, "{k}"), k=CLIENTS, allow_missing=True),
            summary=layout.partition_summary(_up.root),
        params:
            cfg=_up.cfg("partition"),
            cfg_hash=_up.cfg_hash("partition"),
            code=stage_digest("partition"),
            data_dir=lambda wildcards, input: os.path.dirname(input.meta),
            out_dir=lambda wildcards, output: os.path.dirname(output.summary),
        conda:
            CONDA_ENV
        log:
            f"{_up.logs}/partition.log",
        shell:
            "python -m llmqfl.stages.partition --config {params.cfg:q} --data-dir {params.data_dir:q}"
            " --out-dir {params.out_dir:q} > {log} 2>&1"
