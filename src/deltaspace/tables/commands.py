"""``deltaspace tables``: compile table specs against result files, and ``deltaspace tables list``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .compile import compile_table, load_results
from .errors import TablesError
from .spec import load_specs, select_specs
from .write import write_table


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``tables`` subcommand (and its ``list`` subcommand) to the deltaspace CLI."""
    parser = subparsers.add_parser(
        "tables", help="compile paper tables from result files",
        description="Compile table specs against result Parquet files and write each table as Parquet, "
                    "CSV, Markdown and LaTeX, plus ours-vs-paper with the difference. Without --spec or "
                    "--paper every table is compiled.")
    parser.add_argument("--results", nargs="+", metavar="GLOB",
                        help="result Parquet files or globs (quote them; ** recurses)")
    parser.add_argument("--spec", action="append", metavar="ID", help="table id (repeatable)")
    parser.add_argument("--paper", action="append", metavar="NAME", help="every table of a paper (repeatable)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="output folder")
    parser.add_argument("--allow-empty", action="store_true",
                        help="compile even when no result file matches (every cell missing) instead of failing")
    parser.set_defaults(func=compile_command)
    sub = parser.add_subparsers(dest="tables_command", metavar="{list,coverage}")
    lister = sub.add_parser("list", help="print the table specs", description="Print every table spec.")
    lister.add_argument("--paper", action="append", metavar="NAME", help="only this paper's tables")
    lister.set_defaults(func=list_command)
    from .coverage import register as register_coverage  # deltaspace tables coverage

    register_coverage(sub)


def compile_command(args: argparse.Namespace) -> int:
    if not args.results or args.out is None:
        print("deltaspace tables: --results and --out are required (or use 'deltaspace tables list')",
              file=sys.stderr)
        return 2
    try:
        specs = select_specs(load_specs(), args.spec, args.paper)
        results = load_results(args.results, allow_empty=getattr(args, "allow_empty", False))
        for spec in specs:
            table = compile_table(spec, results)
            write_table(table, args.out)
            filled = table.ours.size - int(table.ours.isna().sum().sum())
            print(f"{spec.id}: {filled}/{table.ours.size} numbers -> {args.out / spec.id}.*")
    except TablesError as exc:
        print(f"deltaspace tables: {exc}", file=sys.stderr)
        return 2
    return 0


def list_command(args: argparse.Namespace) -> int:
    try:
        specs = select_specs(load_specs(), papers=args.paper)
    except TablesError as exc:
        print(f"deltaspace tables: {exc}", file=sys.stderr)
        return 2
    width = max(len(s.id) for s in specs)
    for spec in specs:
        print(f"{spec.id:<{width}}  {spec.paper:<13}  {spec.kind:<21}  {spec.title}")
    return 0
