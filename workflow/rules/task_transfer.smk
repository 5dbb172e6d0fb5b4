# Task-level transfer (survey section 5.4, Figure 12): the best-on-dev stage-0 delta of a source
# task, evaluated zero-shot on a target task's test split (deltaspace task-transfer):
#   results/{experiment}/task-transfer/{backbone}/{method}/{source}/{task}/result.parquet
# The tables divide by the target's own stage-0 score (relative transfer, in %).


rule task_transfer:
    input:
        unpack(task_transfer_inputs),
    output:
        result=f"{R}/task-transfer/{{backbone}}/{{method}}/{{source}}/{{task}}/result.parquet",
    log:
        f"{R}/logs/task-transfer/{{backbone}}/{{method}}/{{source}}/{{task}}.log",
    params:
        args=task_transfer_args,
    threads: threads_of("transfer")
    resources:
        **resources_of("transfer"),
    shell:
        "deltaspace task-transfer {params.args} > {log:q} 2>&1"
