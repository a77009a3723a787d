"""Where does guidance help? The sweep: guidance rule x distillation weight x selection kind.

    snakemake -s sweep.smk --cores 2 --configfile config/experiments/sweep-dna.yaml

Every grid point of `sweep:` (llmqfl.evaluation.sweep) is one llm_guided qfl run per seed, and each
selection kind has one baseline run per seed; all share the experiment's data, partitions and
fine-tuned teachers (replicates.scope quantum_init). Output: results/{exp}/sweep/sweep.csv, one row
per point with L - B0 accuracy and the L / B0 circuit evaluations, each with its 95% interval.
scripts/reproduce.py --sweep joins the tasks into the table and figure of REPRODUCTION.md.
"""

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/assets.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/distill.smk"


from llmqfl.evaluation.sweep import grid_points, point_config  # noqa: E402

SWEEP = f"{RESULTS}/sweep"
POINTS = {p.id: p for p in grid_points(config["sweep"])}
POINT_CFG = {
    (pid, stage): write_stage_config(point_config(config, p, config["sweep"]["fraction"]), stage,
                                     f"{SWEEP}/config/{pid}")
    for pid, p in POINTS.items() for stage in ("qfl", "evaluate")
}
TAU_FROM_BASELINE = config["qfl"]["termination"]["llm_threshold_quantile"] is not None


rule sweep_all:
    input:
        f"{SWEEP}/sweep.csv",
    default_target: True


rule sweep_qfl:
    input:
        data=[f"{RESULTS}/data/{split}.parquet" for split in ("train", "test", "server_val")]
        + [f"{RESULTS}/data/meta.json"],
        partitions=[f"{RESULTS}/partitions/client_{k}.parquet" for k in CLIENTS],
        distill=lambda w: [f"{RESULTS}/distill/client_{k}/{name}" for k in CLIENTS
                           for name in ("metrics.json", "teacher.parquet")] if POINTS[w.point].arm == LLM_GUIDED else [],
        embeddings=[f"{RESULTS}/features/embeddings.parquet"] if qfl_needs_embeddings() else [],
        tau_reference=lambda w: [f"{SWEEP}/qfl/{POINTS[w.point].selection}__baseline/seed_{w.seed}/history.parquet"]
        if TAU_FROM_BASELINE and POINTS[w.point].arm == LLM_GUIDED else [],
    output:
        history=f"{SWEEP}/qfl/{{point}}/seed_{{seed}}/history.parquet",
        weights=f"{SWEEP}/qfl/{{point}}/seed_{{seed}}/weights.npy",
        accounting=f"{SWEEP}/qfl/{{point}}/seed_{{seed}}/accounting.json",
    wildcard_constraints:
        point=r"[A-Za-z0-9_.]+",
        seed=r"\d+",
    params:
        cfg=lambda w: POINT_CFG[(w.point, "qfl")][0],
        cfg_hash=lambda w: POINT_CFG[(w.point, "qfl")][1],
        code=stage_digest("qfl"),
        arm=lambda w: POINTS[w.point].arm,
        extra=lambda w, input: " ".join(
            ([f"--embeddings {input.embeddings[0]}"] if input.embeddings else [])
            + ([f"--tau-reference {input.tau_reference[0]}"] if input.tau_reference else [])
        ),
        out_dir=lambda w, output: os.path.dirname(output.history),
    threads: 1
    log:
        f"{LOGS}/sweep/qfl/{{point}}/seed_{{seed}}.log",
    shell:
        "python -m llmqfl.stages.qfl --config {params.cfg:q} --arm {params.arm} --seed {wildcards.seed}"
        f" --data-dir {RESULTS}/data --partitions-dir {RESULTS}/partitions --distill-dir {RESULTS}/distill"
        " --out-dir {params.out_dir:q} {params.extra} --resume > {log:q} 2>&1"


rule sweep_evaluate:
    input:
        history=f"{SWEEP}/qfl/{{point}}/seed_{{seed}}/history.parquet",
        accounting=f"{SWEEP}/qfl/{{point}}/seed_{{seed}}/accounting.json",
    output:
        f"{SWEEP}/eval/{{point}}/seed_{{seed}}.json",
    wildcard_constraints:
        point=r"[A-Za-z0-9_.]+",
        seed=r"\d+",
    params:
        cfg=lambda w: POINT_CFG[(w.point, "evaluate")][0],
        cfg_hash=lambda w: POINT_CFG[(w.point, "evaluate")][1],
        code=stage_digest("evaluate"),
    log:
        f"{LOGS}/sweep/evaluate/{{point}}/seed_{{seed}}.log",
    shell:
        "LLMQFL_TRACKING=off python -m llmqfl.stages.evaluate --config {params.cfg:q} --history {input.history:q}"
        " --accounting {input.accounting:q} --out {output:q} > {log:q} 2>&1"


rule sweep_table:
    input:
        expand(f"{SWEEP}/eval/{{point}}/seed_{{seed}}.json", point=list(POINTS), seed=SEEDS),
    output:
        f"{SWEEP}/sweep.csv",
    params:
        cfg=stage_cfg("sweep"),
        cfg_hash=stage_cfg_hash("sweep"),
    log:
        f"{LOGS}/sweep/table.log",
    shell:
        "python -m llmqfl.stages.sweep --config {params.cfg:q} --eval-dir {SWEEP}/eval --out {output:q} > {log:q} 2>&1"
