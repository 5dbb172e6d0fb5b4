# Stage 0: train one delta method in its original space on one task, at one grid point
# (deltaspace train). Every task x method x lr [x batch size] x seed is one job:
#   results/{experiment}/stage0/{backbone}/{task}/{method}/lr{lr}[_bs{bs}]_seed{seed}/result.parquet
# No selection happens here: the subspace stages are handed every run folder of a task and method
# and use the one best on dev (see docs/workflow.md, "Selection"), and the tables select the same way.


rule train_delta:
    input:
        unpack(PLAN.inputs("train_delta")),
    output:
        **PLAN.outputs("train_delta"),
    log:
        PLAN.log("train_delta"),
    benchmark:
        PLAN.benchmark("train_delta")
    params:
        args=PLAN.args("train_delta"),
    threads: PLAN.threads("train_delta")
    resources:
        **PLAN.resources("train_delta"),
    shell:
        PLAN.shell("train_delta")
