# Performance landscape (unified-dt Figure 2): the three methods' subspace solutions of one task,
# and the relative score of every point of a 2-D grid through them (deltaspace landscape):
#   results/{experiment}/landscape/{setting}/y{y}/{task}/grid.parquet, landscape.png
# The command is handed every optimize run folder of the task (all methods, the whole grid) and
# takes, per method, the solution best on dev; the task's stage-0 runs give E_PET.


rule landscape:
    input:
        unpack(PLAN.inputs("landscape")),
    output:
        grid=PLAN.outputs("landscape")["grid"],
        plot=report(PLAN.outputs("landscape")["plot"], caption="../report/landscape.rst", category="Landscapes",
                    labels={"setting": "{setting}", "y": "{y}", "task": "{task}"}),
    log:
        PLAN.log("landscape"),
    benchmark:
        PLAN.benchmark("landscape")
    params:
        args=PLAN.args("landscape"),
    threads: PLAN.threads("landscape")
    resources:
        **PLAN.resources("landscape"),
    shell:
        PLAN.shell("landscape")
