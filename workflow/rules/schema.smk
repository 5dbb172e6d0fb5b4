# The config schema check that runs before anything else (the Snakefile calls check_config, then
# Snakemake's own validate). Snakemake's validate stops at the first violation and prints it after
# a dump of the schema; this lists every violation, one line each, with its key path, e.g.
#   stage0.loop: Additional properties are not allowed ('stpes' was unexpected)

from snakemake.exceptions import WorkflowError

CONFIG_SCHEMA = "workflow/schemas/config.schema.yaml"


def config_errors(config, schema_file):
    import jsonschema
    import yaml

    with open(schema_file, encoding="utf-8") as f:
        schema = yaml.safe_load(f)
    validator = jsonschema.Draft202012Validator(schema)
    lines = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.path))):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path).lstrip(".")
        lines.append(f"  {path or '(top level)'}: {error.message}")
    return lines


def check_config(config, schema_file):
    errors = config_errors(config, schema_file)
    if errors:
        raise WorkflowError(f"invalid config ({schema_file}; the keys are described in docs/workflow.md):\n"
                            + "\n".join(errors))
