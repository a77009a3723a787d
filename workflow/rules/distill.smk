"""Rules `distill` (one LLM fine-tuning job per client) and `embed` (base-model features for text tasks).

llm.federated_rounds R = 0: one `distill` job per client, nothing shared; each job's `threads:` is
llm.threads, so `--cores 8` runs clients side by side without oversubscribing the cores.
R > 0: one `distill_federated` job runs every client's rounds and the server's adapter averages
(llmqfl.llm.federation says why in one process) and writes the same client_K/ outputs plus rounds/.
It too runs llm.threads torch threads: more threads change the sums' order, so the teacher's numbers
would depend on the machine's core count.
Both also score each client's final teacher on the server's test set (data/test.parquet):
server_test_accuracy, server_test_loss, server_test_n in its metrics.json.
A teacher is fine-tuned once per content it reads: the jobs run through llmqfl.stage_cache, which copies
the outputs of an earlier job with the same config slice (experiment name aside), code and input bytes
from the shared store results/.store/distill (a backend variant under its own experiment name reuses
the teachers), else runs the stage and keeps its outputs there.
Each rule is defined once per root of UPSTREAM_ROOTS (common.smk): the experiment's results folder and,
with the name prefix `rep_`, each pipeline-scope replicate's folder (replicates run without console
progress lines: 20 replicates would flood it).
"""

wildcard_constraints:
    k=r"\d+",
    r=r"\d+",


for _up in UPSTREAM_ROOTS:

    if FED_ROUNDS == 0:

        rule:
            name:
                f"{_up.name}distill"
            input:
                asset=model_asset(),
                partition=layout.partition_file(_up.root, "{k}"),
                meta=layout.meta_file(_up.root),
                test=layout.data_file(_up.root, "test"),
            output:
                adapter=directory(layout.distill_file(_up.root, "{k}", layout.ADAPTER)),
                teacher=layout.distill_file(_up.root, "{k}", layout.TEACHER),
                metrics=layout.distill_file(_up.root, "{k}", layout.CLIENT_METRICS),
            params:
                cfg=_up.cfg("distill"),
                cfg_hash=_up.cfg_hash("distill"),
                code=LLM_CODE,
                out=lambda wildcards, output: _folder(output.metrics),
                kept=" ".join((layout.ADAPTER, layout.TEACHER, layout.CLIENT_METRICS)),
            threads: LLM_THREADS
            conda:
                CONDA_ENV
            log:
                f"{_up.logs}/distill/client_{{k}}.log",
            benchmark:
                f"{_up.logs}/benchmarks/distill/client_{{k}}.tsv"
            shell:
                f"{STORE_RUN}--root {{params.out:q}} --outputs {{params.kept}} -- "
                "python -m llmqfl.stages.distill --config {params.cfg:q} --client {wildcards.k}"
                " --partition {input.partition:q} --meta {input.meta:q} --test {input.test:q} --out {params.out:q}"
                + _up.tail("distill client {wildcards.k}")

    else:

        rule:
            name:
                f"{_up.name}distill_federated"
            input:
                asset=model_asset(),
                partitions=expand(layout.partition_file(_up.root, "{k}"), k=CLIENTS, allow_missing=True),
                meta=layout.meta_file(_up.root),
                test=layout.data_file(_up.root, "test"),
            output:
                adapters=[directory(p) for p in expand(layout.distill_file(_up.root, "{k}", layout.ADAPTER),
                                                       k=CLIENTS, allow_missing=True)],
                teachers=expand(layout.distill_file(_up.root, "{k}", layout.TEACHER), k=CLIENTS,
                                allow_missing=True),
                metrics=expand(layout.distill_file(_up.root, "{k}", layout.CLIENT_METRICS), k=CLIENTS,
                               allow_missing=True),
                rounds=directory(f"{_up.root}/{layout.DISTILL}/{layout.ROUNDS}"),
            params:
                cfg=_up.cfg("distill"),
                cfg_hash=_up.cfg_hash("distill"),
                code=stage_digest("distill_federated"),
                out=lambda wildcards, output: _folder(output.rounds),
                kept=" ".join([f"{layout.client_dir(k)}/{name}" for k in CLIENTS
                               for name in (layout.ADAPTER, layout.TEACHER, layout.CLIENT_METRICS)]
                              + [layout.ROUNDS]),
            threads: LLM_THREADS
            conda:
                CONDA_ENV
            log:
                f"{_up.logs}/distill/federated.log",
            benchmark:
                f"{_up.logs}/benchmarks/distill/federated.tsv"
            shell:
                f"{STORE_RUN}--root {{params.out:q}} --outputs {{params.kept}} -- "
                "python -m llmqfl.stages.distill_federated --config {params.cfg:q} --partitions {input.partitions:q}"
                " --meta {input.meta:q} --test {input.test:q} --out {params.out:q}"
                + _up.tail("distill")

    rule:
        name:
            f"{_up.name}embed"
        input:
            asset=model_asset(),
            train=layout.data_file(_up.root, "train"),
            test=layout.data_file(_up.root, "test"),
            server_val=layout.data_file(_up.root, "server_val"),
            meta=layout.meta_file(_up.root),
        output:
            layout.embeddings_file(_up.root),
        params:
            cfg=_up.cfg("embed"),
            cfg_hash=_up.cfg_hash("embed"),
            code=stage_digest("embed"),
            data_dir=lambda wildcards, input: _folder(input.meta),
        threads: LLM_THREADS
        conda:
            CONDA_ENV
        log:
            f"{_up.logs}/embed.log",
        benchmark:
            f"{_up.logs}/benchmarks/embed.tsv"
        shell:
            "python -m llmqfl.stages.embed --config {params.cfg:q} --data-dir {params.data_dir:q}"
            " --out {output:q} > {log} 2>&1"
