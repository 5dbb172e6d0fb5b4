# Memory efficiency (survey Figure 9): the peak memory of one training step of a delta-tuned
# backbone per batch size, "0" being the static memory (weights, gradients, optimizer state), on
# CUDA torch.cuda.max_memory_allocated and on CPU the peak RSS of a child process per measurement
# (deltaspace efficiency; docs/efficiency.md):
#   results/{experiment}/efficiency/{backbone}/{method}/result.parquet


rule efficiency:
    output:
        result=f"{R}/efficiency/{{backbone}}/{{method}}/result.parquet",
    log:
        f"{R}/logs/efficiency/{{backbone}}/{{method}}.log",
    params:
        args=efficiency_args,
    threads: threads_of("efficiency")
    resources:
        **resources_of("efficiency"),
    shell:
        "deltaspace efficiency {params.args} > {log:q} 2>&1"
