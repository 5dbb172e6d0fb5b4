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
        unpack(fit_inputs),
    output:
        subspace=f"{R}/subspace/{{setting}}/{{group}}/y{{y}}/{{run}}/subspace.safetensors",
        meta=f"{R}/subspace/{{setting}}/{{group}}/y{{y}}/{{run}}/subspace.json",
        curve=f"{R}/subspace/{{setting}}/{{group}}/y{{y}}/{{run}}/curve.parquet",
        result=f"{R}/subspace/{{setting}}/{{group}}/y{{y}}/{{run}}/result.parquet",
    log:
        f"{R}/logs/subspace/{{setting}}/{{group}}/y{{y}}/{{run}}.log",
    benchmark:
        f"{R}/benchmarks/subspace/{{setting}}/{{group}}/y{{y}}/{{run}}.tsv"
    params:
        args=fit_args,
    threads: threads_of("fit")
    resources:
        **resources_of("fit"),
    shell:
        "deltaspace fit-subspace {params.args} > {log:q} 2>&1"


rule optimize_subspace:
    input:
        unpack(optimize_inputs),
    output:
        result=f"{R}/optimize/{{setting}}/y{{y}}/{{subset}}/{{task}}/{{method}}/{{run}}/result.parquet",
        intrinsic=f"{R}/optimize/{{setting}}/y{{y}}/{{subset}}/{{task}}/{{method}}/{{run}}/intrinsic.safetensors",
    log:
        f"{R}/logs/optimize/{{setting}}/y{{y}}/{{subset}}/{{task}}/{{method}}/{{run}}.log",
    benchmark:
        f"{R}/benchmarks/optimize/{{setting}}/y{{y}}/{{subset}}/{{task}}/{{method}}/{{run}}.tsv"
    params:
        args=optimize_args,
    threads: threads_of("optimize", by_method=True)
    resources:
        **resources_of("optimize", by_method=True),
    shell:
        "deltaspace optimize-subspace {params.args} > {log:q} 2>&1"
