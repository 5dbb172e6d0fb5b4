# Stage 1: fit a subspace shared by the setting's methods on a group's training tasks
# (deltaspace fit-subspace), once per intrinsic dimension y and fit grid point:
#   results/{experiment}/subspace/{setting}/{group}/y{y}/{run}/subspace.safetensors, result.parquet
# Stages 2 and 3: tune an intrinsic vector for one source method on one task of one subset
# (deltaspace optimize-subspace); every evaluation decodes it with every method of the subspace, so
# one job writes the optimize row (target = source) and the transfer rows (target != source):
#   results/{experiment}/optimize/{setting}/y{y}/{subset}/{task}/{method}/{run}/result.parquet
#
# Selection without a selection job: a joint or msf fit is handed every stage-0 run folder of its
# training tasks and methods (the whole learning-rate grid) and decomposes, per task and method,
# the run best on dev. Likewise optimize-subspace and landscape are handed every fit run folder of
# their group (one, unless the fit has a grid) and use the fit best on dev. docs/workflow.md.


rule fit_subspace:
    input:
        unpack(PLAN.inputs("fit_subspace")),
    output:
        **PLAN.outputs("fit_subspace"),
    log:
        PLAN.log("fit_subspace"),
    benchmark:
        PLAN.benchmark("fit_subspace")
    params:
        args=PLAN.args("fit_subspace"),
    threads: PLAN.threads("fit_subspace")
    resources:
        **PLAN.resources("fit_subspace"),
    shell:
        PLAN.shell("fit_subspace")


rule optimize_subspace:
    input:
        unpack(PLAN.inputs("optimize_subspace")),
    output:
        **PLAN.outputs("optimize_subspace"),
    log:
        PLAN.log("optimize_subspace"),
    benchmark:
        PLAN.benchmark("optimize_subspace")
    params:
        args=PLAN.args("optimize_subspace"),
    threads: PLAN.threads("optimize_subspace")
    resources:
        **PLAN.resources("optimize_subspace"),
    shell:
        PLAN.shell("optimize_subspace")
