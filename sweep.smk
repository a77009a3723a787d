"""Where does guidance help? The sweep: guidance rule x distillation weight x selection kind.

    snakemake -s sweep.smk --cores 2 --configfile config/experiments/sweep-dna.yaml

Every grid point of `sweep:` (llmqfl.evaluation.sweep_table) is one llm_guided (L) qfl run per seed, each
selection kind has one baseline (B0) run per seed, and each L point has its equal_cost point (E, id
{L point}__equal_cost): the same selection kind and fraction, no LLM (no guidance rule, no teacher, so
the distillation weight is irrelevant), spending per seed the total circuit executions of that L point's
run of the same seed, spread evenly over the rounds (--cost-reference = the L point's history.parquet,
so an E job needs its L job's outputs). One job per point runs its seeds and their evaluations in one
process (workflow/scripts/sweep_point.py); all share the experiment's data, partitions and fine-tuned
teachers (replicates.scope quantum_init). Output: results/{exp}/sweep/sweep.csv, one row per L point with
L - B0 accuracy, the L / B0 circuit evaluations and L - E accuracy (does the LLM help at equal quantum
cost?), each with its 95% interval, paired-t p and Holm-adjusted p over all the table's comparisons
(L - B0 and L - E together, 2 per L point).
scripts/reproduce.py --sweep joins the tasks into the table and figure of REPRODUCTION.md.
"""

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/assets.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/distill.smk"


from llmqfl.evaluation.sweep_table import grid_points, point_config  # noqa: E402

SWEEP = f"{RESULTS}/sweep"
POINTS = {p.id: p for p in grid_points(SETTINGS.sweep)}  # SETTINGS: the validated config, typed (common.smk)
POINT_CFG = {
    (pid, stage): plan_cfg(point_config(SETTINGS, p, SETTINGS.sweep.fraction).as_config(), stage,
                           f"{SWEEP}/config/{pid}")
    for pid, p in POINTS.items() for stage in ("qfl", "evaluate")
}
TAU_FROM_BASELINE = config["qfl"]["termination"]["llm_threshold_quantile"] is not None


onstart:
    # the stage config files the jobs read: written under the lock, never in a dry run (common.smk)
    write_planned_configs()


rule sweep_all:
    input:
        f"{SWEEP}/sweep.csv",
    default_target: True


def _seed_files(point, name):
    return [f"{SWEEP}/qfl/{point}/seed_{s}/{name}" for s in SEEDS]


def _tau_references(point):
    """L's tau comes from the baseline of the same selection kind, same replicate."""
    if not TAU_FROM_BASELINE or POINTS[point].arm != LLM_GUIDED:
        return []
    return _seed_files(POINTS[point].baseline.id, "history.parquet")


def _cost_references(point):
    """E spends the total circuit executions of its L point, same replicate: that point's histories."""
    if POINTS[point].arm != EQUAL_COST:
        return []
    return _seed_files(POINTS[point].guided.id, "history.parquet")


# One job per grid point runs every replicate (qfl, then evaluate) in one process: the stages' imports
# are paid once per point, not twice per replicate (they dominated the sweep's time on 2 shared cores).
rule sweep_point:
    input:
        data=[f"{RESULTS}/data/{split}.parquet" for split in ("train", "test", "server_val")]
        + [f"{RESULTS}/data/meta.json"],
        partitions=[f"{RESULTS}/partitions/client_{k}.parquet" for k in CLIENTS],
        distill=lambda w: [f"{RESULTS}/distill/client_{k}/{name}" for k in CLIENTS
                           for name in ("metrics.json", "teacher.parquet")] if POINTS[w.point].arm == LLM_GUIDED else [],
        embeddings=[f"{RESULTS}/features/embeddings.parquet"] if qfl_needs_embeddings() else [],
        tau_reference=lambda w: _tau_references(w.point),
        cost_reference=lambda w: _cost_references(w.point),
    output:
        history=[f"{SWEEP}/qfl/{{point}}/seed_{s}/history.parquet" for s in SEEDS],
        weights=[f"{SWEEP}/qfl/{{point}}/seed_{s}/weights.npy" for s in SEEDS],
        accounting=[f"{SWEEP}/qfl/{{point}}/seed_{s}/accounting.json" for s in SEEDS],
        evals=[f"{SWEEP}/eval/{{point}}/seed_{s}.json" for s in SEEDS],
    wildcard_constraints:
        point=r"[A-Za-z0-9_.]+",
    params:
        qfl_cfg=lambda w: POINT_CFG[(w.point, "qfl")].path,
        qfl_cfg_hash=lambda w: POINT_CFG[(w.point, "qfl")].digest,
        evaluate_cfg=lambda w: POINT_CFG[(w.point, "evaluate")].path,
        evaluate_cfg_hash=lambda w: POINT_CFG[(w.point, "evaluate")].digest,
        code=stage_digest("qfl") + stage_digest("evaluate"),
        arm=lambda w: POINTS[w.point].arm,
        seeds=SEEDS,
        data_dir=lambda w, input: os.path.dirname(input.data[0]),
        partitions_dir=lambda w, input: os.path.dirname(input.partitions[0]),
        # the baseline and equal_cost read no teacher: any folder will do
        distill_dir=lambda w, input: os.path.dirname(os.path.dirname(input.distill[0])) if input.distill
        else os.path.dirname(input.data[0]),
        embeddings=lambda w, input: input.embeddings[0] if input.embeddings else "",
        tau_references=lambda w, input: list(input.tau_reference),
        cost_references=lambda w, input: list(input.cost_reference),
    threads: 1
    log:
        f"{LOGS}/sweep/point/{{point}}.log",
    script:
        "workflow/scripts/sweep_point.py"


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
