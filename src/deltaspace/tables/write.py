"""Write a compiled table's files, each atomically.

A workflow killed mid-write (Slurm time limit, Ctrl-C) must never leave a half-written table that a
rerun then trusts, so every file is written to a temporary name in the same folder and moved into
place with ``os.replace`` (:func:`deltaspace.io.atomic_write`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..io import atomic_write
from .compile import CompiledTable
from .render import display_frame, latex, markdown, vs_paper_frame, vs_paper_markdown

SUFFIXES = (".parquet", ".csv", ".md", ".tex", ".vs_paper.csv", ".vs_paper.md")


def write_table(table: CompiledTable, out_dir: Path | str) -> list[Path]:
    """Write ``{id}.parquet``, ``.csv``, ``.md``, ``.tex``, ``.vs_paper.csv`` and ``.vs_paper.md``.

    Every table gets all six, with or without published numbers, so workflow rules can declare a
    fixed set of outputs per table.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ours = display_frame(table)
    versus = vs_paper_frame(table)
    writers: dict[str, Callable[[Path], None]] = {
        ".parquet": lambda p: ours.to_parquet(p, index=False),
        ".csv": lambda p: ours.to_csv(p, index=False),
        ".md": lambda p: p.write_text(markdown(table), encoding="utf-8"),
        ".tex": lambda p: p.write_text(latex(table), encoding="utf-8"),
        ".vs_paper.csv": lambda p: versus.to_csv(p, index=False),
        ".vs_paper.md": lambda p: p.write_text(vs_paper_markdown(table), encoding="utf-8"),
    }
    written = []
    for suffix in SUFFIXES:
        target = out / f"{table.spec.id}{suffix}"
        atomic_write(target, writers[suffix])
        written.append(target)
    return written
