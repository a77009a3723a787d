"""Pipeline-scope replicates (replicates.scope: pipeline): each seed S re-draws the whole pipeline.

Replicate S runs data, partition, distill and embed from its own root seed
derive_seed(seed, "replicate", S) (llmqfl.replicates) into results/{exp}/rep_{S}/, and the qfl jobs
of seed S read from there (common.smk `upstream`). With the default scope (quantum_init) these
rules produce nothing that is asked for, and every replicate shares results/{exp}/{data,...}.
With federated LoRA rounds (llm.federated_rounds > 0) each replicate runs its own federation.
"""

REP = f"{RESULTS}/rep_{{rep}}"


rule rep_data:
    input:
        data_inputs,
    output:
        train=f"{REP}/data/train.parquet",
        test=f"{REP}/data/test.parquet",
        server_val=f"{REP}/data/server_val.parquet",
        meta=f"{REP}/data/meta.json",
    wildcard_constraints:
        rep=r"\d+",
    params:
        cfg=rep_cfg("data"),
        cfg_hash=rep_cfg_hash("data"),
        code=stage_digest("data"),
        out_dir=lambda wildcards, output: os.path.dirname(output.meta),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/rep_{{rep}}/data.log",
    shell:
        "python -m llmqfl.stages.data --config {params.cfg:q} --out-dir {params.out_dir:q} > {log} 2>&1"


rule rep_partition:
    input:
        train=f"{REP}/data/train.parquet",
        meta=f"{REP}/data/meta.json",
    output:
        clients=expand(f"{REP}/partitions/client_{{k}}.parquet", k=CLIENTS, allow_missing=True),
        summary=f"{REP}/partitions/partitions.json",
    wildcard_constraints:
        rep=r"\d+",
    params:
        cfg=rep_cfg("partition"),
        cfg_hash=rep_cfg_hash("partition"),
        code=stage_digest("partition"),
        data_dir=lambda wildcards, input: os.path.dirname(input.meta),
        out_dir=lambda wildcards, output: os.path.dirname(output.summary),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/rep_{{rep}}/partition.log",
    shell:
        "python -m llmqfl.stages.partition --config {params.cfg:q} --data-dir {params.data_dir:q}"
        " --out-dir {params.out_dir:q} > {log} 2>&1"


if FED_ROUNDS == 0:

    rule rep_distill:
        input:
            asset=model_asset(),
            partition=f"{REP}/partitions/client_{{k}}.parquet",
            meta=f"{REP}/data/meta.json",
            test=f"{REP}/data/test.parquet",
        output:
            adapter=directory(f"{REP}/distill/client_{{k}}/adapter"),
            teacher=f"{REP}/distill/client_{{k}}/teacher.parquet",
            metrics=f"{REP}/distill/client_{{k}}/metrics.json",
        wildcard_constraints:
            rep=r"\d+",
        params:
            cfg=rep_cfg("distill"),
            cfg_hash=rep_cfg_hash("distill"),
            code=LLM_CODE,
            out=lambda wildcards, output: _folder(output.metrics),
        threads: LLM_THREADS
        conda:
            CONDA_ENV
        log:
            f"{LOGS}/rep_{{rep}}/distill/client_{{k}}.log",
        shell:
            "python -m llmqfl.stages.distill --config {params.cfg:q} --client {wildcards.k}"
            " --partition {input.partition:q} --meta {input.meta:q} --test {input.test:q} --out {params.out:q}"
            " --no-progress > {log:q} 2>&1"

else:

    rule rep_distill_federated:
        input:
            asset=model_asset(),
            partitions=expand(f"{REP}/partitions/client_{{k}}.parquet", k=CLIENTS, allow_missing=True),
            meta=f"{REP}/data/meta.json",
            test=f"{REP}/data/test.parquet",
        output:
            adapters=[directory(p) for p in expand(f"{REP}/distill/client_{{k}}/adapter", k=CLIENTS,
                                                   allow_missing=True)],
            teachers=expand(f"{REP}/distill/client_{{k}}/teacher.parquet", k=CLIENTS, allow_missing=True),
            metrics=expand(f"{REP}/distill/client_{{k}}/metrics.json", k=CLIENTS, allow_missing=True),
            rounds=directory(f"{REP}/distill/rounds"),
        wildcard_constraints:
            rep=r"\d+",
        params:
            cfg=rep_cfg("distill"),
            cfg_hash=rep_cfg_hash("distill"),
            code=stage_digest("distill_federated"),
            out=lambda wildcards, output: _folder(output.rounds),
        threads: LLM_THREADS
        conda:
            CONDA_ENV
        log:
            f"{LOGS}/rep_{{rep}}/distill/federated.log",
        shell:
            "python -m llmqfl.stages.distill_federated --config {params.cfg:q} --partitions {input.partitions:q}"
            " --meta {input.meta:q} --test {input.test:q} --out {params.out:q} --no-progress > {log:q} 2>&1"


rule rep_embed:
    input:
        asset=model_asset(),
        meta=f"{REP}/data/meta.json",
        splits=[f"{REP}/data/{split}.parquet" for split in ("train", "test", "server_val")],
    output:
        f"{REP}/features/embeddings.parquet",
    wildcard_constraints:
        rep=r"\d+",
    params:
        cfg=rep_cfg("embed"),
        cfg_hash=rep_cfg_hash("embed"),
        code=stage_digest("embed"),
        data_dir=lambda wildcards, input: _folder(input.meta),
    threads: LLM_THREADS
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/rep_{{rep}}/embed.log",
    shell:
        "python -m llmqfl.stages.embed --config {params.cfg:q} --data-dir {params.data_dir:q}"
        " --out {output:q} > {log} 2>&1"
