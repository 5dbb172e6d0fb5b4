# The config schema check that runs before anything else (the Snakefile calls check_config, then
# Snakemake's own validate). Snakemake's validate stops at the first violation and prints it after
# a dump of the schema; this lists every violation, one line each, with its key path, e.g.
#   stage0.loop: Additional properties are not allowed ('stpes' was unexpected)
# (deltaspace.plan.schema_errors: `deltaspace preflight` runs the same check).

from snakemake.exceptions import WorkflowError

from deltaspace.plan import schema_errors

CONFIG_SCHEMA = "workflow/schemas/config.schema.yaml"


def check_config(config, schema_file):
    errors = schema_errors(config, schema_file)
    if errors:
        raise WorkflowError(f"invalid config ({schema_file}; the keys are described in docs/workflow.md):\n"
                            + "\n".join(errors))
