"""The `deltaspace tasks` and `deltaspace prepare` subcommands.

``deltaspace.cli`` calls :func:`register` with its argparse subparsers; each handler takes the
parsed arguments and returns an exit code. Errors the user can fix (an unknown task, a malformed
row, an empty split) are ``ValueError`` subclasses with a message naming the task, file and line;
``deltaspace.cli.main`` prints them as one line and exits 2.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from deltaspace.data.prepare import SETTINGS, PrepareOptions, prepare_task
from deltaspace.data.registry import load_registry
from deltaspace.data.sampling import FULL_MAX_DEV, FULL_MAX_TRAIN
from deltaspace.options import positive_int

LIST_COLUMNS = ("task", "role", "group", "roles", "category", "kind", "metric", "k", "source", "tables")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `tasks` (list, show) and `prepare` subcommands to the deltaspace CLI."""
    tasks = subparsers.add_parser("tasks", help="list and inspect the task registry")

    def tasks_help(args: argparse.Namespace) -> int:
        tasks.print_help()
        return 2

    tasks.set_defaults(func=tasks_help)
    actions = tasks.add_subparsers(dest="tasks_command")

    lst = actions.add_parser("list", help="list tasks, optionally of one paper and split (with roles)")
    lst.add_argument("--paper", help="udt | ipt | survey | decomposition | quickstart")
    lst.add_argument("--split", help="a split of the paper, e.g. random, noncls, cls (ipt); single, multi (udt)")
    lst.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    lst.add_argument("--tasks-dir", help="task registry folder (default: config/tasks)")
    lst.set_defaults(func=list_command)

    show = actions.add_parser("show", help="print one task's full registry entry as JSON")
    show.add_argument("task")
    show.add_argument("--tasks-dir", help="task registry folder (default: config/tasks)")
    show.set_defaults(func=show_command)

    prep = subparsers.add_parser("prepare", help="sample and tokenize one task into Parquet splits")
    prep.add_argument("--task", required=True)
    prep.add_argument("--seed", type=int, required=True, help="data seed (CrossFit: 100, 13, 21, 42, 87)")
    prep.add_argument("--setting", choices=SETTINGS, default="fewshot")
    prep.add_argument("--backbone", required=True, help="tokenizer of this backbone (deltaspace.backbones)")
    prep.add_argument("--out", required=True, help="output folder for train/dev/test.parquet and manifest.json")
    prep.add_argument("--k", type=positive_int, help="few-shot K (default: 16 per class, or 32 in total)")
    prep.add_argument("--max-train", type=positive_int, default=FULL_MAX_TRAIN, help="full setting: train cap")
    prep.add_argument("--max-dev", type=positive_int, default=FULL_MAX_DEV, help="full setting: dev cap")
    prep.add_argument("--max-test", type=positive_int, help="subsample the test split (fixed seed)")
    prep.add_argument("--max-input-length", type=positive_int, help="input token cap (default: the task's, else 512)")
    prep.add_argument("--max-target-length", type=positive_int, help="target token cap (default: the task's, else 64)")
    prep.add_argument("--source", help="prepare from this source type of the task (e.g. crossfit_tsv) "
                                       "instead of its first usable one")
    prep.add_argument("--data-dir", help="folder of file sources (CrossFit data/ for crossfit_tsv); url sources "
                                         "look for their file there first and download into it")
    prep.add_argument("--paper", help="score with this paper's metric for the task (e.g. udt)")
    prep.add_argument("--task-prefix", action="store_true", help="prepend '[task] ' to inputs (CrossFit/IPT)")
    prep.add_argument("--force", action="store_true", help="rewrite even if the folder already holds this request")
    prep.add_argument("--tasks-dir", help="task registry folder (default: config/tasks)")
    prep.set_defaults(func=prepare_command)


def _format_table(rows: list[dict[str, Any]]) -> str:
    # Within one split the tables are the split's own (see --json); listing them per row is noise.
    columns = [c for c in LIST_COLUMNS if any(row.get(c) for row in rows) and not (c == "tables" and "role" in rows[0])]
    widths = {c: max(len(c), *(len(str(row.get(c, ""))) for row in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns).rstrip()]
    lines += ["  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns).rstrip() for row in rows]
    return "\n".join(lines)


def list_command(args: argparse.Namespace) -> int:
    """`deltaspace tasks list [--paper P] [--split S] [--json]`."""
    registry = load_registry(args.tasks_dir)
    rows = registry.listing(args.paper, args.split)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no tasks")
        return 0
    print(_format_table(rows))
    summary = f"{len(rows)} tasks"
    if "role" in rows[0]:
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["role"]] = counts.get(row["role"], 0) + 1
        summary += " (" + ", ".join(f"{role}: {n}" for role, n in counts.items()) + ")"
        paper = args.paper or registry.paper_of_split(args.split)
        notes = registry.split(paper, args.split).notes
        if notes:
            summary += f"\nnote: {notes}"
    print(summary)
    return 0


def show_command(args: argparse.Namespace) -> int:
    """`deltaspace tasks show TASK`."""
    spec = load_registry(args.tasks_dir).get(args.task)
    print(json.dumps(spec.describe(), indent=2, ensure_ascii=False))
    return 0


def prepare_command(args: argparse.Namespace) -> int:
    """`deltaspace prepare --task T --seed S --backbone B --out DIR ...`."""
    options = PrepareOptions(
        setting=args.setting, k=args.k, max_train=args.max_train, max_dev=args.max_dev, max_test=args.max_test,
        max_input_length=args.max_input_length, max_target_length=args.max_target_length, source=args.source,
        data_dir=args.data_dir, task_prefix=args.task_prefix, paper=args.paper)
    manifest = prepare_task(args.task, args.out, seed=args.seed, backbone=args.backbone, options=options,
                            registry=load_registry(args.tasks_dir), force=args.force)
    sizes = ", ".join(f"{split} {n}" for split, n in manifest["sizes"].items())
    print(f"{manifest['task']}: {sizes} -> {args.out} (sha256 {manifest['content_sha256'][:12]})")
    return 0
