"""Rules `distill` (one LLM fine-tuning job per client) and `embed` (base-model features for text tasks).

llm.federated_rounds R = 0: one `distill` job per client, nothing shared; each job's `threads:` is
llm.threads, so `--cores 8` runs clients side by side without oversubscribing the cores.
R > 0: one `distill_federated` job runs every client's rounds and the server's adapter averages
(llmqfl.llm.federation says why in one process) and writes the same client_K/ outputs plus rounds/.
It too runs llm.threads torch threads: more threads change the sums' order, so the teacher's numbers
would depend on the machine's core count.
Both also score each client's final teacher on the server's test set (data/test.parquet):
server_test_accuracy, server_test_loss, server_test_n in its metrics.json.
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
            test=f"{RESULTS}/data/test.parquet",
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
            " --partition {input.partition:q} --meta {input.meta:q} --test {input.test:q} --out {params.out:q} "
            + progress("distill client {wildcards.k}")

else:

    rule distill_federated:
        input:
            asset=model_asset(),
            partitions=expand(f"{RESULTS}/partitions/client_{{k}}.parquet", k=CLIENTS),
            meta=f"{RESULTS}/data/meta.json",
            test=f"{RESULTS}/data/test.parquet",
        output:
            adapters=[directory(p) for p in expand(f"{DISTILL}/client_{{k}}/adapter", k=CLIENTS)],
            teachers=expand(f"{DISTILL}/client_{{k}}/teacher.parquet", k=CLIENTS),
            metrics=expand(f"{DISTILL}/client_{{k}}/metrics.json", k=CLIENTS),
            rounds=directory(f"{DISTILL}/rounds"),
        params:
            cfg=stage_cfg("distill"),
            cfg_hash=stage_cfg_hash("distill"),
            code=stage_digest("distill_federated"),
            out=lambda wildcards, output: _folder(output.rounds),
        threads: LLM_THREADS
        conda:
            CONDA_ENV
        log:
            f"{LOGS}/distill/federated.log",
        benchmark:
            f"{LOGS}/benchmarks/distill/federated.tsv"
        shell:
            "python -m llmqfl.stages.distill_federated --config {params.cfg:q} --partitions {input.partitions:q}"
            " --meta {input.meta:q} --test {input.test:q} --out {params.out:q} "
            + progress("distill")


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
