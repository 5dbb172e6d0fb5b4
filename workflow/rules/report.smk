# Report: one self-contained HTML page from the results and the compiled tables (deltaspace report):
# every table beside the paper's numbers, the landscapes, the curves and the runs' provenance.
# Written to the config's `report:` path (reports/index.html for the quickstart).


rule report:
    input:
        tables=all_tables(),
        landscapes=landscape_outputs(),
        results=ALL_RESULTS,
    output:
        report(REPORT, caption="../report/report.rst", category="Report"),
    log:
        f"{R}/logs/report.log",
    params:
        results=lambda wc: R,
        tables=lambda wc, input: parent(input.tables[0]),
        config=report_config_file(),
        title=config.get("title") or f"deltaspace: {EXPERIMENT}",
    threads: threads_of("report")
    resources:
        **resources_of("report"),
    shell:
        "deltaspace report --results {params.results:q} --tables {params.tables:q} --out {output:q}"
        " --config {params.config:q} --title {params.title:q} > {log:q} 2>&1"
