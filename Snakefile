# deltaspace: the whole benchmark as one Snakemake DAG (docs/workflow.md).
#
#   snakemake --cores 2                                          # the quickstart (config/config.yaml)
#   snakemake --profile slurm --configfile config/paper/udt-single.yaml
#   snakemake -n --configfile config/paper/ipt-random.yaml       # the plan of a paper experiment
#
# prepare -> train_delta (stage 0) -> fit_subspace (stage 1) -> optimize_subspace (stages 2 and 3)
#   -> landscape; every result.parquet -> results_index -> tables -> report. Rules call the
# `deltaspace` command (docs/contracts.md), never inline Python; results_index only writes the list
# of its input files (a command line could not hold thousands of them).

import copy
import re

from snakemake.utils import min_version, validate

min_version("9.0")

# A lock left by a Snakemake killed hard is removed if its owner no longer runs (src/deltaspace/locks.py).
from deltaspace.locks import recover_for as _recover_stale_locks

_recover_stale_locks(workflow)


configfile: "config/config.yaml"


# A --configfile names a whole experiment: it replaces the quickstart default instead of being
# merged into it (Snakemake's default), so that no quickstart setting leaks into a paper config.
# Repeated --configfile files and --config pairs still merge with each other, in order.
if workflow.overwrite_configfiles:
    config.clear()
    config.update(copy.deepcopy(workflow.config_settings.overwrite_config))


include: "workflow/rules/schema.smk"


if "experiments" not in config:  # config/paper/all.yaml: each experiment's config is checked as it is planned
    check_config(config, CONFIG_SCHEMA)  # every violation at once, one line each with its key path
    validate(config, CONFIG_SCHEMA)


include: "workflow/rules/common.smk"


# Every wildcard is constrained (the patterns are defined in common.smk).
wildcard_constraints:
    results="|".join(re.escape(r) for r in PLAN.roots),
    backbone=NAME,
    task=NAME,
    method="|".join(re.escape(m) for m in PLAN.methods),
    source=NAME,
    run=RUN_PATTERN,
    dseed=r"[0-9]+",
    setting=NAME,
    group=NAME,
    subset=NAME,
    y=r"[0-9]+",
    spec=NAME,
    fused=r"[0-9]+",


include: "workflow/rules/backbone.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/delta.smk"
include: "workflow/rules/subspace.smk"
include: "workflow/rules/fused.smk"
include: "workflow/rules/landscape.smk"
include: "workflow/rules/task_transfer.smk"
include: "workflow/rules/efficiency.smk"
include: "workflow/rules/synthetic.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/report.smk"


report: "workflow/report/workflow.rst"


# Tables and the report take seconds and read every result: on a cluster they run in the Snakemake
# process on the submit node rather than as Slurm jobs that would each wait for a queue slot and a
# status check.
localrules:
    results_index,
    tables,
    report,


rule all:
    default_target: True
    input:
        PLAN.all_tables(),
        REPORT,
