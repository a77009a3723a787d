"""llmqfl: LLM-guided quantum federated learning. Run `snakemake --cores 8`; see README.md."""

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"  # the landing page of `snakemake --report`


include: "workflow/rules/common.smk"
include: "workflow/rules/assets.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/qfl.smk"
include: "workflow/rules/plan.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/cluster.smk"


rule all:
    input:
        layout.report_file(RESULTS, layout.CLAIMS),
        layout.metrics_file(RESULTS),
        [layout.plot_file(RESULTS, arm) for arm in ARMS],
    default_target: True


rule distill_all:
    input:
        distill_outputs(),


rule qfl_all:
    input:
        qfl_targets(),


onstart:
    check_cluster_run()  # a slurm run without partition/account or with a sqlite store stops here
    # jobs name their MLflow experiment from here, so tracking.experiment_name is no stage param
    os.environ[tracking.EXPERIMENT_ENV] = tracking.experiment_name(config)
    # and thread counts: settings that change no output are no stage param (llmqfl.config.RUNTIME_KEYS)
    from llmqfl.config import RUNTIME_ENV, runtime_settings_json

    os.environ[RUNTIME_ENV] = runtime_settings_json(config)
    # the temporary folders of a killed earlier invocation's interrupted writes go (its runs left RUNNING
    # were marked KILLED at parse time: workflow/rules/common.smk)
    from llmqfl.recovery import sweep_partial_writes

    sweep_partial_writes(RESULTS)
    # the offline page of `dvc plots diff` (.dvc/config names it), in a DVC project that has none yet
    from llmqfl.dvc_plots import ensure_template

    ensure_template(Path.cwd())
    # the stage config files the jobs read: written now, under the lock, never in a dry run (common.smk)
    write_planned_configs()
    tracking.start_parent_run(config)  # named "snakemake E", "dvc repro E" or after the DVC experiment


onsuccess:
    tracking.end_parent_run("FINISHED")


onerror:
    tracking.end_parent_run("FAILED")
