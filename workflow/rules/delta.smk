# Stage 0: train one delta method in its original space on one task, at one grid point
# (deltaspace train). Every task x method x lr [x batch size] x seed is one job:
#   results/{experiment}/stage0/{backbone}/{task}/{method}/lr{lr}[_bs{bs}]_seed{seed}/result.parquet
# No selection happens here: the subspace stages are handed every run folder of a task and method
# and use the one best on dev (see docs/workflow.md, "Selection"), and the tables select the same way.


rule train_delta:
    input:
        unpack(train_inputs),
    output:
        result=f"{R}/stage0/{{backbone}}/{{task}}/{{method}}/{{run}}/result.parquet",
        theta=f"{R}/stage0/{{backbone}}/{{task}}/{{method}}/{{run}}/theta.safetensors",
        meta=f"{R}/stage0/{{backbone}}/{{task}}/{{method}}/{{run}}/theta.json",
        curve=f"{R}/stage0/{{backbone}}/{{task}}/{{method}}/{{run}}/curve.parquet",
    log:
        f"{R}/logs/stage0/{{backbone}}/{{task}}/{{method}}/{{run}}.log",
    benchmark:
        f"{R}/benchmarks/stage0/{{backbone}}/{{task}}/{{method}}/{{run}}.tsv"
    params:
        args=train_args,
    threads: threads_of("train", by_method=True)
    resources:
        **resources_of("train", by_method=True),
    shell:
        "deltaspace train {params.args} > {log:q} 2>&1"
