"""The experiment's report: claims table (verdicts computed from the runs), figures, DVC metrics."""

from pathlib import Path


rule report:
    input:
        evals=expand(f"{RESULTS}/eval/{{arm}}/seed_{{seed}}.json", arm=ARMS, seed=SEEDS),
        histories=expand(f"{RESULTS}/qfl/{{arm}}/seed_{{seed}}/history.parquet", arm=ARMS, seed=SEEDS),
        # per-client distill metrics (the PEFT claim) when an arm uses the LLM
        distill=expand(f"{RESULTS}/distill/client_{{k}}/metrics.json", k=CLIENTS) if "llm_guided" in ARMS else [],
        test=f"{RESULTS}/data/test.parquet",
        meta=f"{RESULTS}/data/meta.json",
    output:
        claims=report(
            f"{RESULTS}/report/claims.md",
            caption="../report/claims.rst",
            category="Claims",
        ),
        claims_json=f"{RESULTS}/report/claims.json",
        accuracy=report(
            f"{RESULTS}/report/figures/accuracy.png",
            caption="../report/accuracy.rst",
            category="Figures",
            subcategory="Learning curves",
        ),
        loss=report(
            f"{RESULTS}/report/figures/loss.png",
            caption="../report/loss.rst",
            category="Figures",
            subcategory="Learning curves",
        ),
        maxiter=report(
            f"{RESULTS}/report/figures/maxiter.png",
            caption="../report/maxiter.rst",
            category="Figures",
            subcategory="LLM guidance",
        ),
        cumulative=report(
            f"{RESULTS}/report/figures/cumulative.png",
            caption="../report/cumulative.rst",
            category="Figures",
            subcategory="Cost",
        ),
        idle=report(
            f"{RESULTS}/report/figures/idle.png",
            caption="../report/idle.rst",
            category="Figures",
            subcategory="Cost",
        ),
        selection=report(
            f"{RESULTS}/report/figures/selection.png",
            caption="../report/selection.rst",
            category="Figures",
            subcategory="Client selection",
        ),
        metrics=f"{RESULTS}/metrics.json",
    params:
        cfg=stage_cfg("evaluate"),
        code=code_digest("evaluation", "stages/report.py", "io.py"),
        # folders derived from the files, so that remote or relocated storage keeps working
        eval_dir=lambda wildcards, input: Path(input.evals[0]).parents[1],
        qfl_dir=lambda wildcards, input: Path(input.histories[0]).parents[2],
        distill_dir=lambda wildcards, input: Path(input.meta).parents[1] / "distill",
        data_dir=lambda wildcards, input: Path(input.meta).parent,
        out_dir=lambda wildcards, output: Path(output.claims).parent,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/report.log",
    shell:
        "python -m llmqfl.stages.report --config {params.cfg:q} --eval-dir {params.eval_dir:q}"
        " --qfl-dir {params.qfl_dir:q} --distill-dir {params.distill_dir:q} --data-dir {params.data_dir:q}"
        " --out-dir {params.out_dir:q} --metrics {output.metrics:q} > {log:q} 2>&1"
