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


# Fused stage 0 (stage0.fuse: K > 1; src/deltaspace/fused_plan.py): up to K runs of one backbone,
# method and head in one `deltaspace train-fused` job. Each job is a rule whose outputs are its runs'
# own files, without wildcards, so Snakemake picks it over train_delta for them; readers of those
# files are unchanged.
from deltaspace.fused_plan import group_benchmark, group_files, group_log, group_resources

for group in PLAN.fused_groups:
    fused_inputs, fused_outputs, fused_args = group_files(PLAN, group)
    fused_threads, fused_resources = group_resources(PLAN, group)

    rule:
        name:
            group.rule
        input:
            fused_inputs,
        output:
            fused_outputs,
        log:
            group_log(PLAN, group),
        benchmark:
            group_benchmark(PLAN, group)
        params:
            args=fused_args,
        threads: fused_threads
        resources:
            **fused_resources,
        shell:
            PLAN.shell("train_fused")
