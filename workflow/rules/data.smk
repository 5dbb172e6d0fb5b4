# Data: sample and tokenize one task for one backbone and data seed (deltaspace prepare).
#   results/{experiment}/data/{backbone}/{task}/seed{dseed}/{train,dev,test}.parquet, manifest.json
# The split sizes, lengths and few-shot K come from the config's `data:` section; a paper's metric
# overrides (config `paper:`) are applied when the task is scored.


rule prepare:
    input:
        unpack(PLAN.inputs("prepare")),
    output:
        **PLAN.outputs("prepare"),
    log:
        PLAN.log("prepare"),
    params:
        args=PLAN.args("prepare"),
    threads: PLAN.threads("prepare")
    resources:
        **PLAN.resources("prepare"),
    shell:
        PLAN.shell("prepare")
