# Tables: compile one paper table spec (deltaspace tables --spec ID):
#   results/{experiment}/tables/{spec}.{parquet,csv,md,tex,vs_paper.csv,vs_paper.md}
# A table job waits for every result.parquet this config produces (stage 0, fits, optimize and
# transfer), and reads every result under the experiment's results folder: configs that share an
# experiment (udt-*, ipt-*) pool their runs, so a table that spans them (IPT Table 3 covers all three
# splits) is complete whichever config builds it last. The flip side: results of runs dropped from
# a config stay in the folder and in the tables until their folders are deleted (docs/workflow.md).


from deltaspace.io import write_lines


# Every result the config plans, as one list per results folder: the barrier between the runs and
# the tables and report (each table waits for it rather than for thousands of files itself).
rule results_index:
    input:
        unpack(PLAN.inputs("results_index")),
    output:
        PLAN.outputs("results_index")["index"],
    threads: PLAN.threads("results_index")
    resources:
        **PLAN.resources("results_index"),
    run:
        write_lines(output[0], input.results)


def _table_output(suffix, caption, label):
    return report(f"{R}/tables/{{spec}}{suffix}", caption=caption, category="Tables", subcategory="{spec}",
                  labels={"table": "{spec}", "file": label})


rule tables:
    input:
        unpack(PLAN.inputs("tables")),
    output:
        _table_output(".csv", "../report/table.rst", "ours"),
        _table_output(".vs_paper.csv", "../report/table_vs_paper.rst", "ours vs paper"),
        [f for f in PLAN.outputs("tables")["files"] if not f.endswith(".csv")],
    log:
        PLAN.log("tables"),
    params:
        args=PLAN.args("tables"),
    threads: PLAN.threads("tables")
    resources:
        **PLAN.resources("tables"),
    shell:
        PLAN.shell("tables")
