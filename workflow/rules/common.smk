# The plan of the config (src/deltaspace/plan.py): every job's files, inputs, command line and
# resources come from one torch-free job list, shared with `deltaspace preflight`, so that the DAG
# Snakemake builds and the jobs preflight checks are the same by construction. Planning runs once,
# when Snakemake parses the workflow; the rules' input, params and resources functions only look a
# job up in its table (src/deltaspace/plan_all.py), the same for one config and for all.yaml's many.
# A config the plan cannot run fails here, naming the key path.

from snakemake.exceptions import WorkflowError

from deltaspace.plan import NAME, RUN_PATTERN, ConfigError
from deltaspace.plan_all import make_plan

try:
    PLAN = make_plan(config)  # config/paper/all.yaml names experiments: their plans merged
except ConfigError as err:
    raise WorkflowError(str(err)) from None

R = PLAN.R
REPORT = PLAN.report


def report_config_file():
    """The config file shown in the report's provenance: the last --configfile, else the default."""
    files = workflow.overwrite_configfiles
    return str(files[-1]) if files else "config/config.yaml"
