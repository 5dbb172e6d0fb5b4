# Task-level transfer (survey section 5.4, Figure 12): the best-on-dev stage-0 delta of a source
# task, evaluated zero-shot on a target task's test split (deltaspace task-transfer):
#   results/{experiment}/task-transfer/{backbone}/{method}/{source}/{task}/result.parquet
# The tables divide by the target's own stage-0 score (relative transfer, in %).


rule task_transfer:
    input:
        unpack(PLAN.inputs("task_transfer")),
    output:
        **PLAN.outputs("task_transfer"),
    log:
        PLAN.log("task_transfer"),
    params:
        args=PLAN.args("task_transfer"),
    threads: PLAN.threads("task_transfer")
    resources:
        **PLAN.resources("task_transfer"),
    shell:
        PLAN.shell("task_transfer")
