# Performance landscape (unified-dt Figure 2): the three methods' subspace solutions of one task,
# and the relative score of every point of a 2-D grid through them (deltaspace landscape):
#   results/{experiment}/landscape/{setting}/y{y}/{task}/grid.parquet, landscape.png
# The command is handed every optimize run folder of the task (all methods, the whole grid) and
# takes, per method, the solution best on dev; the task's stage-0 runs give E_PET.


rule landscape:
    input:
        unpack(landscape_inputs),
    output:
        grid=f"{R}/landscape/{{setting}}/y{{y}}/{{task}}/grid.parquet",
        plot=report(f"{R}/landscape/{{setting}}/y{{y}}/{{task}}/landscape.png", caption="../report/landscape.rst",
                    category="Landscapes", labels={"setting": "{setting}", "y": "{y}", "task": "{task}"}),
    log:
        f"{R}/logs/landscape/{{setting}}/y{{y}}/{{task}}.log",
    benchmark:
        f"{R}/benchmarks/landscape/{{setting}}/y{{y}}/{{task}}.tsv"
    params:
        args=landscape_args,
    threads: threads_of("landscape")
    resources:
        **resources_of("landscape"),
    shell:
        "deltaspace landscape {params.args} > {log:q} 2>&1"
