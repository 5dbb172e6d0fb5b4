# Tables: compile one paper table spec (deltaspace tables --spec ID):
#   results/{experiment}/tables/{spec}.{parquet,csv,md,tex,vs_paper.csv,vs_paper.md}
# A table job waits for every result.parquet this config produces (stage 0, fits, optimize and
# transfer), and reads every result under the experiment's results folder: configs that share an
# experiment (udt-*, ipt-*) pool their runs, so a table that spans them (IPT Table 3 covers all three
# splits) is complete whichever config builds it last. The flip side: results of runs dropped from
# a config stay in the folder and in the tables until their folders are deleted (docs/workflow.md).


rule tables:
    input:
        ALL_RESULTS,
    output:
        report(f"{R}/tables/{{spec}}.csv", caption="../report/table.rst", category="Tables",
               subcategory="{spec}", labels={"table": "{spec}", "file": "ours"}),
        report(f"{R}/tables/{{spec}}.vs_paper.csv", caption="../report/table_vs_paper.rst", category="Tables",
               subcategory="{spec}", labels={"table": "{spec}", "file": "ours vs paper"}),
        multiext(f"{R}/tables/{{spec}}", ".parquet", ".md", ".tex", ".vs_paper.md"),
    log:
        f"{R}/logs/tables/{{spec}}.log",
    params:
        results=RESULT_GLOBS,
        out=lambda wc, output: parent(output[0]),
    threads: threads_of("tables")
    resources:
        **resources_of("tables"),
    shell:
        "deltaspace tables --spec {wildcards.spec:q} --results {params.results} --out {params.out:q} > {log:q} 2>&1"
