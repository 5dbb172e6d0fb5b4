# The plan of the config (src/deltaspace/plan.py): every rule's files, inputs, command line and
# resources come from one torch-free Python object, shared with `deltaspace preflight`, so that
# the DAG Snakemake builds and the jobs preflight checks are the same by construction. Planning
# runs once, when Snakemake parses the workflow (plain dictionary work: a paper config with
# thousands of jobs still builds its DAG in seconds); input functions only look up what it holds.
# A config the plan cannot run fails here, naming the key path.

from snakemake.exceptions import WorkflowError

from deltaspace.plan import NAME, RUN_PATTERN, ConfigError
from deltaspace.plan_all import make_plan

try:
    PLAN = make_plan(config)  # config/paper/all.yaml names experiments: their plans merged (plan_all.py)
except ConfigError as err:
    raise WorkflowError(str(err)) from None

R = PLAN.R
REPORT = PLAN.report
ALL_RESULTS = PLAN.all_results


def report_config_file():
    """The config file shown in the report's provenance: the last --configfile, else the default."""
    files = workflow.overwrite_configfiles
    return str(files[-1]) if files else "config/config.yaml"
