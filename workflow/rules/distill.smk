"""Rules `distill` (one LLM fine-tuning job per client) and `embed` (base-model features for text tasks).

llm.federated_rounds R = 0: one `distill` job per client, nothing shared.
R > 0, a DAG per round:  distill_round(r, k) for every client -> distill_aggregate(r) -> distill_round(r+1, k)
... -> distill_aggregate(R) -> distill(k), which evaluates the last global adapter on client k's
items and writes its teacher outputs. Each job's `threads:` is llm.threads, so `--cores 8` runs
clients side by side without oversubscribing the cores.
"""

wildcard_constraints:
    k=r"\d+",
    r=r"\d+",


if FED_ROUNDS == 0:

    rule distill:
        input:
            asset=model_asset(),
            partition=f"{RESULTS}/partitions/client_{{k}}.parquet",
            meta=f"{RESULTS}/data/meta.json",
        output:
            adapter=directory(f"{DISTILL}/client_{{k}}/adapter"),
            teacher=f"{DISTILL}/client_{{k}}/teacher.parquet",
            metrics=f"{DISTILL}/client_{{k}}/metrics.json",
        params:
            cfg=stage_cfg("distill"),
            cfg_hash=stage_cfg_hash("distill"),
            code=LLM_CODE,
            out=lambda wildcards, output: _folder(output.metrics),
        threads: LLM_THREADS
        conda:
            CONDA_ENV
        log:
            f"{LOGS}/distill/client_{{k}}.log",
        benchmark:
            f"{LOGS}/benchmarks/distill/client_{{k}}.tsv"
        shell:
            "python -m llmqfl.stages.distill --config {params.cfg:q} --client {wildcards.k}"
            " --partition {input.partition:q} --meta {input.meta:q} --out {params.out:q} "
            + progress("distill client {wildcards.k}")

else:

    rule distill_round:
        input:
            unpack(_round_init),
            asset=model_asset(),
            partition=f"{RESULTS}/partitions/client_{{k}}.parquet",
            meta=f"{RESULTS}/data/meta.json",
        output:
            adapter=directory(f"{DISTILL}/rounds/round_{{r}}/client_{{k}}/adapter"),
            metrics=f"{DISTILL}/rounds/round_{{r}}/client_{{k}}/metrics.json",
        params:
            cfg=stage_cfg("distill"),
            cfg_hash=stage_cfg_hash("distill"),
            code=LLM_CODE,
            out=lambda wildcards, output: _folder(output.metrics),
            init=_init_flag,
        threads: LLM_THREADS
        conda:
            CONDA_ENV
        log:
            f"{LOGS}/distill/round_{{r}}/client_{{k}}.log",
        benchmark:
            f"{LOGS}/benchmarks/distill/round_{{r}}/client_{{k}}.tsv"
        shell:
            "python -m llmqfl.stages.distill --config {params.cfg:q} --client {wildcards.k} --round {wildcards.r}"
            " {params.init} --partition {input.partition:q} --meta {input.meta:q} --out {params.out:q} "
            + progress("distill round {wildcards.r} client {wildcards.k}")

    rule distill_aggregate:
        input:
            metrics=expand(f"{DISTILL}/rounds/round_{{{{r}}}}/client_{{k}}/metrics.json", k=CLIENTS),
        output:
            adapter=directory(f"{DISTILL}/rounds/round_{{r}}/global/adapter"),
            summary=f"{DISTILL}/rounds/round_{{r}}/global/aggregate.json",
        params:
            cfg=stage_cfg("distill"),
            cfg_hash=stage_cfg_hash("distill"),
            code=stage_digest("distill_aggregate"),
            clients=lambda wildcards, input: " ".join(_folder(m) for m in input.metrics),
            out=lambda wildcards, output: _folder(output.summary),
        conda:
            CONDA_ENV
        log:
            f"{LOGS}/distill/round_{{r}}/aggregate.log",
        shell:
            "python -m llmqfl.stages.distill_aggregate --config {params.cfg:q} --round {wildcards.r}"
            " --clients {params.clients} --out {params.out:q} > {log} 2>&1"

    rule distill:
        input:
            asset=model_asset(),
            partition=f"{RESULTS}/partitions/client_{{k}}.parquet",
            meta=f"{RESULTS}/data/meta.json",
            aggregates=[f"{_round_dir(r)}/global/aggregate.json" for r in range(1, FED_ROUNDS + 1)],
            # this client's round jobs: their seconds and peak memory are its fine-tuning cost (C6)
            rounds=[f"{_round_dir(r)}/client_{{k}}/metrics.json" for r in range(1, FED_ROUNDS + 1)],
        output:
            adapter=directory(f"{DISTILL}/client_{{k}}/adapter"),
            teacher=f"{DISTILL}/client_{{k}}/teacher.parquet",
            metrics=f"{DISTILL}/client_{{k}}/metrics.json",
        params:
            cfg=stage_cfg("distill"),
            cfg_hash=stage_cfg_hash("distill"),
            code=LLM_CODE,
            out=lambda wildcards, output: _folder(output.metrics),
            final=lambda wildcards, input: f"{_folder(input.aggregates[-1])}/adapter",
        threads: LLM_THREADS
        conda:
            CONDA_ENV
        log:
            f"{LOGS}/distill/client_{{k}}.log",
        benchmark:
            f"{LOGS}/benchmarks/distill/client_{{k}}.tsv"
        shell:
            "python -m llmqfl.stages.distill --config {params.cfg:q} --client {wildcards.k} --evaluate-only"
            " --init-adapter {params.final:q} --aggregates {input.aggregates}"
            " --partition {input.partition:q} --meta {input.meta:q} --out {params.out:q} "
            + progress("distill client {wildcards.k}")


rule embed:
    input:
        asset=model_asset(),
        train=f"{RESULTS}/data/train.parquet",
        test=f"{RESULTS}/data/test.parquet",
        server_val=f"{RESULTS}/data/server_val.parquet",
        meta=f"{RESULTS}/data/meta.json",
    output:
        f"{RESULTS}/features/embeddings.parquet",
    params:
        cfg=stage_cfg("embed"),
        cfg_hash=stage_cfg_hash("embed"),
        code=stage_digest("embed"),
        data_dir=lambda wildcards, input: _folder(input.meta),
    threads: LLM_THREADS
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/embed.log",
    benchmark:
        f"{LOGS}/benchmarks/embed.tsv"
    shell:
        "python -m llmqfl.stages.embed --config {params.cfg:q} --data-dir {params.data_dir:q}"
        " --out {output:q} > {log} 2>&1"
