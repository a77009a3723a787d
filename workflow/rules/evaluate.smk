"""Evaluate each (arm, seed) QFL run: per-round and total metrics from its history and accounting."""


rule evaluate:
    input:
        history=f"{RESULTS}/qfl/{{arm}}/seed_{{seed}}/history.parquet",
        accounting=f"{RESULTS}/qfl/{{arm}}/seed_{{seed}}/accounting.json",
    output:
        f"{RESULTS}/eval/{{arm}}/seed_{{seed}}.json",
    params:
        cfg=stage_cfg("evaluate"),
        cfg_hash=stage_cfg_hash("evaluate"),
        code=stage_digest("evaluate"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/evaluate/{{arm}}/seed_{{seed}}.log",
    wildcard_constraints:
        arm="|".join(QFL_ARMS),
        seed=r"\d+",
    shell:
        "python -m llmqfl.stages.evaluate --config {params.cfg:q} --history {input.history:q}"
        " --accounting {input.accounting:q} --out {output:q} > {log:q} 2>&1"
