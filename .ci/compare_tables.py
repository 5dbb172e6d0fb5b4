"""Check that two runs of the workflow produced the same tables.

Usage: python .ci/compare_tables.py [--atol X] RUN_A RUN_B

Compares every CSV in a `tables` folder under RUN_*/results/ (results/tables/,
results/<experiment>/tables/, ...). Tables are pure functions of the
results, and results are deterministic for a given config and seed, so the two runs must hold the
same set of tables, and each pair must be byte-identical or, failing that, equal cell by cell:
text exactly, numbers to a relative tolerance of 1e-6 (floating-point noise from a different
thread schedule). The exception are tables whose spec says `measured: true` (peak memory of a
process: the allocator and the runtime move it by a fraction of a percent between runs): their
numbers must agree to 5%. Exits non-zero, naming each difference, otherwise.

``--atol X`` compares runs that are not meant to be bit-equal, e.g. a fused config against its
unfused twin (``--config fuse=1``), whose runs differ by dropout noise (docs/training.md): numbers
then agree within X (in the table's units, e.g. score points). Either way, each table that is not
byte-identical reports how far its numbers are apart, and the last line sums that over all tables
(each `<id>.csv` once: its `.vs_paper.csv` repeats our numbers beside the paper's).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from deltaspace.tables.spec import load_specs

RTOL = 1e-6
MEASURED_RTOL = 0.05
ATOL = 1e-9


def measured_table_ids() -> set[str]:
    return {table_id for table_id, spec in load_specs().items() if spec.measured}


def spec_id(csv: Path) -> str:
    """The table id a CSV was written for: `<id>.csv` or `<id>.vs_paper.csv`."""
    return csv.name.removesuffix(".csv").removesuffix(".vs_paper")


def tables(run: Path) -> dict[str, Path]:
    return {str(p.relative_to(run)): p for p in sorted(set(run.glob("results/**/tables/**/*.csv")))}


def spread(gaps: np.ndarray) -> str:
    """How far apart the numbers are, given their absolute differences."""
    if not len(gaps):
        return "no numeric cells"
    return (f"{int((gaps > 0).sum())} of {len(gaps)} numeric cells differ, "
            f"mean |diff| {gaps.mean():.3g}, max {gaps.max():.3g}")


def compare_frames(a: Path, b: Path, rtol: float = RTOL, atol: float = ATOL) -> tuple[list[str], np.ndarray]:
    """Why two CSVs differ beyond tolerance (empty when they agree), and the absolute differences
    of the numeric cells both hold."""
    da, db = pd.read_csv(a), pd.read_csv(b)
    if list(da.columns) != list(db.columns):
        return [f"columns differ: {list(da.columns)} vs {list(db.columns)}"], np.zeros(0)
    if da.shape != db.shape:
        return [f"shape differs: {da.shape} vs {db.shape}"], np.zeros(0)
    problems, gaps = [], [np.zeros(0)]
    for col in da.columns:
        x, y = da[col], db[col]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            xv, yv = x.to_numpy(dtype=float), y.to_numpy(dtype=float)
            bad = ~np.isclose(xv, yv, rtol=rtol, atol=atol, equal_nan=True)
            both = ~(np.isnan(xv) | np.isnan(yv))
            gaps.append(np.abs(xv - yv)[both])
        else:
            bad = (x.astype("string").fillna("<NA>") != y.astype("string").fillna("<NA>")).to_numpy()
        for row in np.flatnonzero(bad)[:5]:
            problems.append(f"row {row}, column {col!r}: {x.iloc[row]} vs {y.iloc[row]}")
        if bad.sum() > 5:
            problems.append(f"... {int(bad.sum()) - 5} more in column {col!r}")
    return problems, np.concatenate(gaps)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--atol", type=float, default=ATOL,
                        help="numbers of the tables that are not measured agree within this (absolute)")
    args = parser.parse_args(argv)
    run_a, run_b = args.run_a, args.run_b
    ta, tb = tables(run_a), tables(run_b)
    if not ta and not tb:
        print(f"no tables (results/**/tables/**/*.csv) in {run_a} nor in {run_b}", file=sys.stderr)
        return 1
    measured = measured_table_ids()
    failed = False
    for name in sorted(ta.keys() ^ tb.keys()):
        where = run_a if name in ta else run_b
        print(f"DIFFERENT  {name}: only in {where}")
        failed = True
    identical = close = 0
    gaps = []
    for name in sorted(ta.keys() & tb.keys()):
        if ta[name].read_bytes() == tb[name].read_bytes():
            identical += 1
            continue
        is_measured = spec_id(ta[name]) in measured
        rtol, atol = (MEASURED_RTOL, ATOL) if is_measured else (RTOL, args.atol)
        problems, table_gaps = compare_frames(ta[name], tb[name], rtol, atol)
        if not is_measured and not name.endswith(".vs_paper.csv"):  # a vs_paper table repeats ours
            gaps.append(table_gaps)
        if problems:
            failed = True
            print(f"DIFFERENT  {name} ({spread(table_gaps)})")
            for p in problems:
                print(f"    {p}")
        else:
            close += 1
            print(f"CLOSE      {name} (equal within rtol={rtol:g}, atol={atol:g}, not byte-identical; {spread(table_gaps)})")
    print(f"tables: {identical} byte-identical, {close} equal within tolerance, "
          f"{len(ta.keys() ^ tb.keys())} in one run only, of {len(ta.keys() | tb.keys())}")
    if gaps:
        print(f"tables neither identical nor measured: {spread(np.concatenate(gaps))}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
