# Fused jobs (src/deltaspace/fused_plan.py): up to K runs that share one loaded backbone in one
# process. stage0.fuse: K groups stage-0 runs of one backbone, method and head (deltaspace
# train-fused, rules train_fused_<i>); a setting's optimize.fuse: K groups its optimize-subspace runs
# of one subspace and source method (deltaspace optimize-fused, rules optimize_fused_<i>). Each job is
# a rule whose outputs are its runs' own files, without wildcards, so Snakemake picks it over
# train_delta / optimize_subspace for them; readers of those files are unchanged.
from deltaspace.fused_plan import group_benchmark, group_files, group_log, group_resources
from deltaspace.plan import RULES

FUSED_SHELL = "deltaspace {params.command} {params.args} > {log:q} 2>&1"

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
            # The command goes in as a param: a shell directive's expression is evaluated when the job
            # runs, by which time this loop's `group` is the last group.
            command=RULES[group.stage.fused_rule].command,
            args=fused_args,
        threads: fused_threads
        resources:
            **fused_resources,
        shell:
            FUSED_SHELL
