# The decomposition paper's synthetic matrix-approximation study (Propositions 1-2, MPC at matched
# parameter budgets; deltaspace synthetic-mpc): no backbone, no data, seconds on a CPU.
#   results/{experiment}/synthetic-mpc/{result.parquet, synthetic-mpc.png}


rule synthetic_mpc:
    output:
        result=PLAN.outputs("synthetic_mpc")["result"],
        plot=report(PLAN.outputs("synthetic_mpc")["plot"], caption="../report/synthetic_mpc.rst",
                    category="Decomposition"),
    log:
        PLAN.log("synthetic_mpc"),
    params:
        args=PLAN.args("synthetic_mpc"),
    threads: PLAN.threads("synthetic_mpc")
    resources:
        **PLAN.resources("synthetic_mpc"),
    shell:
        PLAN.shell("synthetic_mpc")
