# Report: one self-contained HTML page from the results and the compiled tables (deltaspace report):
# every table beside the paper's numbers, the landscapes, the curves and the runs' provenance.
# Written to the config's `report:` path (reports/index.html for the quickstart).


rule report:
    input:
        tables=PLAN.all_tables(),
        landscapes=PLAN.landscape_outputs(),
        index=PLAN.result_indexes(),
    output:
        report(REPORT, caption="../report/report.rst", category="Report"),
    log:
        PLAN.log("report"),
    params:
        args=PLAN.report_args(report_config_file()),
    threads: PLAN.threads("report")
    resources:
        **PLAN.resources("report"),
    shell:
        PLAN.shell("report")
