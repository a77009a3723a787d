"""Evaluate each arm's QFL runs: per-round and total metrics of every seed from its history and accounting
(one job per arm, every seed in one process, as rule `qfl`)."""


rule evaluate:
    input:
        history=qfl_seed_outputs(layout.HISTORY),
        accounting=qfl_seed_outputs(layout.ACCOUNTING),
    output:
        [layout.eval_file(RESULTS, "{arm}", s) for s in SEEDS],
    params:
        cfg=arm_cfg("evaluate"),  # an arm without the LLM reads no guidance rule (llmqfl.pipeline.arm_config)
        cfg_hash=arm_cfg_hash("evaluate"),
        code=stage_digest("evaluate"),
        seeds=" ".join(f"--seed {s}" for s in SEEDS),
        history=lambda wildcards: layout.run_file(RESULTS, wildcards.arm, "{seed}", layout.HISTORY),
        accounting=lambda wildcards: layout.run_file(RESULTS, wildcards.arm, "{seed}", layout.ACCOUNTING),
        out=lambda wildcards: layout.eval_file(RESULTS, wildcards.arm, "{seed}"),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/evaluate/{{arm}}.log",
    wildcard_constraints:
        arm="|".join(QFL_ARMS),
    shell:
        "python -m llmqfl.stages.evaluate --config {params.cfg:q} {params.seeds} --history {params.history:q}"
        " --accounting {params.accounting:q} --out {params.out:q} > {log:q} 2>&1"
