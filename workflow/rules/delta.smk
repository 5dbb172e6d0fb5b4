# Stage 0: train one delta method in its original space on one task, at one grid point
# (deltaspace train). Every task x method x lr [x batch size] x seed is one job:
#   results/{experiment}/stage0/{backbone}/{task}/{method}/lr{lr}[_bs{bs}]_seed{seed}/result.parquet
# No selection happens here: the subspace stages are handed every run folder of a task and method
# and use the one best on dev (see docs/workflow.md, "Selection"), and the tables select the same way.


rule train_delta:
    input:
        unpack(PLAN.train_inputs),
    output:
        **PLAN.outputs("train_delta"),
    log:
        PLAN.log("train_delta"),
    benchmark:
        PLAN.benchmark("train_delta")
    params:
        args=PLAN.train_args,
    threads: PLAN.threads_of("train", by_method=True)
    resources:
        **PLAN.resources_of("train", by_method=True),
    shell:
        PLAN.shell("train_delta")
