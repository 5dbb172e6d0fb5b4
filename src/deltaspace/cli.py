"""`deltaspace <command>`: the entry points the workflow rules call (never inline Python).

Each area registers its own subcommands; this module only assembles them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# The module registering each command (`register(subparsers)`), in the order `--help` lists them.
# A run of one command imports only its module: a `tables` job need not load torch and seaborn.
COMMANDS = {
    "describe": "deltaspace.describe",
    "convert-smollm2": "deltaspace.convert",
    "tasks": "deltaspace.data.commands",
    "prepare": "deltaspace.data.commands",
    "train": "deltaspace.train.commands",
    "train-fused": "deltaspace.train.fused",
    "task-transfer": "deltaspace.train.transfer",
    "efficiency": "deltaspace.efficiency",
    "fit-subspace": "deltaspace.subspace.commands",
    "optimize-subspace": "deltaspace.subspace.commands",
    "landscape": "deltaspace.subspace.commands",
    "optimize-fused": "deltaspace.subspace.fused",
    "tables": "deltaspace.tables.commands",
    "report": "deltaspace.report.commands",
    "synthetic-mpc": "deltaspace.decomposition.commands",
    "permille-parity": "deltaspace.decomposition.commands",
    "preflight": "deltaspace.preflight",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every command's parser, or only the module of ``command`` when it names one."""
    parser = argparse.ArgumentParser(prog="deltaspace", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as err:
        # Bad input: one clear line, no traceback. Bugs (other exceptions) still show theirs.
        print(f"deltaspace {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        from .io import DISK_FULL

        if err.errno not in DISK_FULL:
            raise
        print(f"deltaspace {args.command}: error: {err.strerror}", file=sys.stderr)  # names the file
        return 2


if __name__ == "__main__":
    sys.exit(main())
