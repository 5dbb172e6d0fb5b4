# The decomposition paper's synthetic matrix-approximation study (Propositions 1-2, MPC at matched
# parameter budgets; deltaspace synthetic-mpc): no backbone, no data, seconds on a CPU.
#   results/{experiment}/synthetic-mpc/{result.parquet, synthetic-mpc.png}


rule synthetic_mpc:
    output:
        result=f"{SYNTHETIC_MPC_DIR}/result.parquet",
        plot=report(f"{SYNTHETIC_MPC_DIR}/synthetic-mpc.png", caption="../report/synthetic_mpc.rst",
                    category="Decomposition"),
    log:
        f"{R}/logs/synthetic-mpc.log",
    params:
        args=lambda wc, output: synthetic_mpc_args(output),
    threads: threads_of("synthetic")
    resources:
        **resources_of("synthetic"),
    shell:
        "deltaspace synthetic-mpc {params.args} > {log:q} 2>&1"
