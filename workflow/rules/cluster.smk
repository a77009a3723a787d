"""Cluster runs (docs/cluster.md): the slurm profile expands $SLURM_PARTITION, $SLURM_ACCOUNT and
$LLMQFL_LLM_MEM_MB, exported here from the config (cluster.*, llm.model) or the environment; `onstart`
refuses a run under a cluster executor without a partition and account or with a file-based MLflow store.
"""

from llmqfl import cluster as cluster_run  # noqa: E402

cluster_run.export_job_settings(config)


# Under a cluster executor these run where snakemake runs instead of as Slurm jobs: each reads or
# writes small files for seconds (the asset copy, the data split, the cost plan, the report tables),
# less than a job's own start-up on a node. The training and evaluation rules (distill, embed, qfl,
# evaluate) are Slurm jobs. A local run (--cores N) runs everything locally anyway.
localrules:
    asset,
    data,
    partition,
    rep_data,
    rep_partition,
    plan,
    report,
    rounds,


def check_cluster_run():
    """Stop before the first submission when a cluster run lacks what it needs (llmqfl.cluster)."""
    executor = workflow.executor_plugin.name if workflow.executor_plugin is not None else None
    try:
        cluster_run.check_cluster_run(executor, config, os.environ)
        if executor not in cluster_run.CLUSTER_EXECUTORS:  # a local run: this machine must have the GPU asked for
            from llmqfl.llm.devices import check_local_devices
            from llmqfl.pipeline import needs_distill

            check_local_devices(SETTINGS, needs_distill(config))
    except LlmqflError as exc:
        sys.exit(f"llmqfl: {exc}")
