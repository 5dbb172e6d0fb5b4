"""``deltaspace report``: build the self-contained HTML report from results and compiled tables."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` subcommand to the deltaspace CLI."""
    parser = subparsers.add_parser(
        "report", help="build the HTML report from results and compiled tables",
        description="Build one self-contained HTML page (images inlined, no server needed): every compiled "
                    "table beside the paper's numbers with the differences coloured, the landscapes, d_I "
                    "curves, PCA of intrinsic vectors, training curves and the provenance of the runs.")
    parser.add_argument("--results", type=Path, nargs="+", required=True, metavar="DIR",
                        help="results folder(s), searched recursively for result.parquet, curve.parquet, "
                             "intrinsic.safetensors and landscape.png")
    parser.add_argument("--tables", type=Path, nargs="+", required=True, metavar="DIR",
                        help="folder(s) of compiled tables (written by `deltaspace tables --out DIR`)")
    parser.add_argument("--out", type=Path, default=Path("reports/index.html"), metavar="FILE",
                        help="the HTML file to write (default: reports/index.html)")
    parser.add_argument("--config", type=Path, metavar="FILE", help="workflow config to show in the provenance")
    parser.add_argument("--title", metavar="TEXT", help="page title (default: 'deltaspace report')")
    parser.add_argument("--categories", type=Path, metavar="FILE",
                        help="task -> category map (YAML/JSON mapping, or CSV with task,category) to colour the "
                             "PCA of intrinsic vectors; default: the result rows' category, then the task registry")
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from .build import ReportError, gather, render, write_html

    try:
        report = gather(args.results, args.tables, config=args.config, title=args.title,
                        categories=getattr(args, "categories", None))
        out = write_html(render(report), args.out)
    except ReportError as exc:
        print(f"deltaspace report: error: {exc}", file=sys.stderr)
        return 2
    for problem in report.provenance.problems:  # shown in the page too; a skipped damaged file must not go unseen
        print(f"deltaspace report: warning: {problem}", file=sys.stderr)
    figures = sum(s.figure_count for s in report.sections)
    filled = sum(t.filled for t in report.tables)
    cells = sum(t.body_cells for t in report.tables)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB): {len(report.tables)} tables, "
          f"{filled}/{cells} cells filled, {figures} figures, {report.provenance.jobs} jobs")
    return 0
