"""The experiment's report: claims table (verdicts computed from the runs), figures, DVC metrics."""

from pathlib import Path


rule report:
    input:
        evals=expand(layout.eval_file(RESULTS, "{arm}", "{seed}"), arm=ARMS, seed=SEEDS),
        histories=expand(layout.run_file(RESULTS, "{arm}", "{seed}", layout.HISTORY), arm=ARMS, seed=SEEDS),
        # accounting.json: totals and the feature ceiling (references) of each run
        accounting=expand(layout.run_file(RESULTS, "{arm}", "{seed}", layout.ACCOUNTING), arm=ARMS, seed=SEEDS),
        # per-client distill metrics (the PEFT claim) when an arm uses the LLM
        # (pipeline-scope replicates: those of the first replicate, llmqfl.replicates)
        distill=expand(layout.distill_file(UP0, "{k}", layout.CLIENT_METRICS), k=CLIENTS) if LLM_GUIDED in ARMS else [],
        test=layout.data_file(UP0, "test"),
        meta=layout.meta_file(UP0),
        # C6: the full fine-tuning reference of the same model and data (report.peft_reference_clients)
        full=expand(layout.distill_file(UP0, "{k}", layout.CLIENT_METRICS, layout.DISTILL_FULL), k=PEFT_REFERENCE),
    output:
        claims=layout.report_file(RESULTS, layout.CLAIMS),
        claims_json=layout.report_file(RESULTS, layout.CLAIMS_JSON),
        # the primary endpoint (L - E at equal quantum cost), secondary claims after Holm, cost per arm
        answer=layout.report_file(RESULTS, layout.ANSWER_JSON),
        answer_md=layout.report_file(RESULTS, layout.ANSWER_MD),
        # the same two as HTML pages: the Snakemake report shows them inline (a .md is only a download link)
        answer_html=report(
            layout.report_file(RESULTS, layout.ANSWER_HTML),
            caption="../report/answer.rst",
            category="1. Answer",
        ),
        claims_html=report(
            layout.report_file(RESULTS, layout.CLAIMS_HTML),
            caption="../report/claims.rst",
            category="2. Claims",
        ),
        cost=report(
            layout.report_file(RESULTS, f"{layout.FIGURES}/cost.png"),
            caption="../report/cost.rst",
            category="3. Figures",
            subcategory="Cost",
        ),
        accuracy=report(
            layout.report_file(RESULTS, f"{layout.FIGURES}/accuracy.png"),
            caption="../report/accuracy.rst",
            category="3. Figures",
            subcategory="Learning curves",
        ),
        loss=report(
            layout.report_file(RESULTS, f"{layout.FIGURES}/loss.png"),
            caption="../report/loss.rst",
            category="3. Figures",
            subcategory="Learning curves",
        ),
        maxiter=report(
            layout.report_file(RESULTS, f"{layout.FIGURES}/maxiter.png"),
            caption="../report/maxiter.rst",
            category="3. Figures",
            subcategory="LLM guidance",
        ),
        cumulative=report(
            layout.report_file(RESULTS, f"{layout.FIGURES}/cumulative.png"),
            caption="../report/cumulative.rst",
            category="3. Figures",
            subcategory="Cost",
        ),
        idle=report(
            layout.report_file(RESULTS, f"{layout.FIGURES}/idle.png"),
            caption="../report/idle.rst",
            category="3. Figures",
            subcategory="Cost",
        ),
        selection=report(
            layout.report_file(RESULTS, f"{layout.FIGURES}/selection.png"),
            caption="../report/selection.rst",
            category="3. Figures",
            subcategory="Client selection",
        ),
        metrics=layout.metrics_file(RESULTS),
    params:
        cfg=stage_cfg("report"),
        cfg_hash=stage_cfg_hash("report"),
        code=stage_digest("report"),
        # folders derived from the files, so that remote or relocated storage keeps working
        eval_dir=lambda wildcards, input: Path(input.evals[0]).parents[1],
        qfl_dir=lambda wildcards, input: Path(input.histories[0]).parents[2],
        distill_dir=lambda wildcards, input: Path(input.meta).parents[1] / layout.DISTILL,
        data_dir=lambda wildcards, input: Path(input.meta).parent,
        out_dir=lambda wildcards, output: Path(output.claims).parent,
        full=lambda wildcards, input: f"--distill-full-dir {Path(input.full[0]).parents[1]}" if input.full else "",
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/report.log",
    shell:
        "python -m llmqfl.stages.report --config {params.cfg:q} --eval-dir {params.eval_dir:q}"
        " --qfl-dir {params.qfl_dir:q} --distill-dir {params.distill_dir:q} --data-dir {params.data_dir:q}"
        " {params.full} --out-dir {params.out_dir:q} --metrics {output.metrics:q} > {log:q} 2>&1"


rule distill_full:
    """C6's reference: client k fine-tuned with llm.peft full, same model, data and seed as its distill job."""
    input:
        asset=model_asset(),
        partition=layout.partition_file(UP0, "{k}"),
        meta=layout.meta_file(UP0),
        test=layout.data_file(UP0, "test"),
    output:
        metrics=layout.distill_file(UP0, "{k}", layout.CLIENT_METRICS, layout.DISTILL_FULL),
        teacher=temp(layout.distill_file(UP0, "{k}", layout.TEACHER, layout.DISTILL_FULL)),
        adapter=temp(directory(layout.distill_file(UP0, "{k}", layout.ADAPTER, layout.DISTILL_FULL))),
    params:
        cfg=FULL_REFERENCE_CFG[0],
        cfg_hash=FULL_REFERENCE_CFG[1],
        code=LLM_CODE,
        out=lambda wildcards, output: _folder(output.metrics),
    threads: LLM_THREADS
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/distill_full/client_{{k}}.log",
    shell:
        # a measurement, not a teacher: its full model copy is not logged to MLflow
        "LLMQFL_TRACKING=off python -m llmqfl.stages.distill --config {params.cfg:q} --client {wildcards.k}"
        " --partition {input.partition:q} --meta {input.meta:q} --test {input.test:q} --out {params.out:q}"
        " --no-progress > {log:q} 2>&1"


rule rounds:
    input:
        evals=expand(layout.eval_file(RESULTS, "{arm}", "{seed}"), arm=ARMS, seed=SEEDS),
    output:
        [layout.plot_file(RESULTS, arm) for arm in ARMS],
    params:
        cfg=stage_cfg("report"),  # reads every (arm, seed): arms and seeds are in the report slice
        cfg_hash=stage_cfg_hash("report"),
        code=stage_digest("rounds"),
        eval_dir=lambda wildcards, input: Path(input.evals[0]).parents[1],
        out_dir=lambda wildcards, output: Path(output[0]).parent,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/rounds.log",
    shell:
        "python -m llmqfl.stages.rounds --config {params.cfg:q} --eval-dir {params.eval_dir:q}"
        " --out-dir {params.out_dir:q} > {log:q} 2>&1"
