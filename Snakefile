"""llmqfl: LLM-guided quantum federated learning. Run `snakemake --cores 8`; see README.md."""

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"


rule all:
    input:
        final_targets(),
    default_target: True
