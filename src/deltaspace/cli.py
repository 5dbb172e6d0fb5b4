"""`deltaspace <command>`: the entry points the workflow rules call (never inline Python).

Each area registers its own subcommands; this module only assembles them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules with a `register(subparsers)` function, in the order `--help` lists them.
COMMAND_MODULES = ("deltaspace.describe", "deltaspace.data.commands", "deltaspace.train.commands",
                   "deltaspace.train.transfer", "deltaspace.efficiency", "deltaspace.subspace.commands",
                   "deltaspace.tables.commands", "deltaspace.report.commands", "deltaspace.decomposition.commands")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deltaspace", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as err:
        # Bad input: one clear line, no traceback. Bugs (other exceptions) still show theirs.
        print(f"deltaspace {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
