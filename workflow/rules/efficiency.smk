# Memory efficiency (survey Figure 9): the peak memory of one training step of a delta-tuned
# backbone per batch size, "0" being the static memory (weights, gradients, optimizer state), on
# CUDA torch.cuda.max_memory_allocated and on CPU the peak RSS of a child process per measurement
# (deltaspace efficiency; docs/efficiency.md):
#   results/{experiment}/efficiency/{backbone}/{method}/result.parquet


rule efficiency:
    output:
        **PLAN.outputs("efficiency"),
    log:
        PLAN.log("efficiency"),
    params:
        args=PLAN.args("efficiency"),
    threads: PLAN.threads("efficiency")
    resources:
        **PLAN.resources("efficiency"),
    shell:
        PLAN.shell("efficiency")
