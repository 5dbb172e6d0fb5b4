"""Compile a table spec against result files: ours, the paper's, and the difference.

Tables are pure functions of the result Parquet files: nothing here trains, caches or reads anything
but the results and the spec. A cell with no runs is NaN, never 0, and so is every Avg that would
include it: a partially finished workflow must not produce a table that looks complete.
"""

from __future__ import annotations

import glob
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from .cells import KINDS, Cell, build_cells, reference_on
from .errors import ResultsError
from .select import STATISTICS, best_on_dev, filter_rows
from .spec import AVG, Axis, TableSpec

REQUIRED_COLUMNS = ("task", "dev_metric", "test_metric")


def load_results(paths: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """Concatenate result Parquet files given as paths or globs (``**`` recurses).

    Every file must be a result file (``task``, ``dev_metric``, ``test_metric``), so that a stray
    training curve matched by a broad glob fails loudly instead of adding bogus runs.
    """
    patterns = [paths] if isinstance(paths, (str, Path)) else list(paths)
    files: list[Path] = []
    for pattern in patterns:
        matched = sorted(glob.glob(str(pattern), recursive=True))
        files.extend(Path(m) for m in matched if Path(m).is_file())
    files = sorted(set(files))
    if not files:
        raise ResultsError(f"no result files match {', '.join(map(str, patterns)) or '(nothing given)'}")
    frames = []
    for path in files:
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise ResultsError(f"cannot read result file {path}: {exc}") from None
        missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
        if missing:
            raise ResultsError(f"{path} is not a result file: it lacks column(s) {', '.join(missing)}")
        frames.append(frame)
    results = pd.concat(frames, ignore_index=True, sort=False)
    for column in ("dev_metric", "test_metric"):
        results[column] = pd.to_numeric(results[column], errors="coerce")
    return results


@dataclass
class CompiledTable:
    """One compiled table. Frames are indexed by row key and have column keys as columns, the Avg
    row and column (key ``avg``) included where the spec asks for them."""

    spec: TableSpec
    rows: list[Axis]
    columns: list[Axis]
    ours: pd.DataFrame
    paper: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    @property
    def diff(self) -> pd.DataFrame:
        """Ours minus the paper's; NaN where either is missing."""
        return self.ours - self.paper

    @property
    def missing(self) -> int:
        """Number of body cells (Avg excluded) we could not fill."""
        body = self.ours.loc[[r.key for r in self.rows], [c.key for c in self.columns]]
        return int(body.isna().sum().sum())


def compile_table(spec: TableSpec, results: pd.DataFrame) -> CompiledTable:
    """Evaluate every cell of ``spec`` on ``results`` (a frame from :func:`load_results`)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in results.columns]
    if missing:
        raise ResultsError(f"results lack column(s) {', '.join(missing)} needed by table {spec.id}")
    rows, columns, cells = build_cells(spec, results)
    evaluator = _Evaluator(spec, results)
    ours = pd.DataFrame(math.nan, index=[r.key for r in rows], columns=[c.key for c in columns], dtype=float)
    for cell in cells:
        ours.loc[cell.row, cell.col] = evaluator.value(cell)
    ours = _with_averages(spec, ours)
    table = CompiledTable(spec, rows, columns, ours, _published_frame(spec, ours), evaluator.notes)
    if not cells:
        table.notes.append("no rows or columns: the selected results hold no tasks or swept values")
    elif table.missing:
        table.notes.append(f"{table.missing} of {len(cells)} cells have no result (shown as missing)")
    return table


class _Evaluator:
    """Turns cells into numbers; remembers what it had to skip, for the notes under the table."""

    def __init__(self, spec: TableSpec, results: pd.DataFrame) -> None:
        self.spec = spec
        self.kind = KINDS[spec.kind]
        self.results = results
        # every cell but a transfer matrix's diagonal narrows the table's own selection: filter once
        self.selected = filter_rows(results, spec.select or {})
        self.statistic = STATISTICS[spec.statistic]
        self.notes: list[str] = []
        self._references: dict[tuple[tuple[str, Any], ...], float] = {}

    def value(self, cell: Cell) -> float:
        select = self.spec.select or {}
        if all(cell.match.get(k) == v for k, v in select.items()):
            runs = filter_rows(self.selected, {k: v for k, v in cell.match.items() if k not in select})
        else:
            runs = filter_rows(self.results, cell.match)
        if not self.kind.aggregate:
            value = self._relative(self._statistic(runs), cell.coords, cell)
            return math.nan if value is None else value
        return self._task_mean(runs, cell)

    def _statistic(self, runs: pd.DataFrame) -> float:
        return math.nan if runs.empty else self.statistic(runs)  # no runs: missing, cheaply

    def _task_mean(self, runs: pd.DataFrame, cell: Cell) -> float:
        """Mean over the cell's task set of per-task values; NaN unless every task has one."""
        tasks = sorted(filter_rows(self.results, cell.tasks_from or {})["task"].dropna().unique(), key=str)
        if not tasks:
            return math.nan
        by_task = dict(tuple(runs.groupby("task", sort=False)))
        values, lacking = [], []
        for task in tasks:
            task_runs = by_task.get(task, runs.iloc[0:0])
            value = self._relative(self._statistic(task_runs), {**cell.coords, "task": task}, cell)
            if value is None:
                continue
            if math.isnan(value):
                lacking.append(task)
            values.append(value)
        if lacking:
            self.notes.append(f"row {cell.row}, column {cell.col}: {len(lacking)} of {len(tasks)} tasks "
                              f"lack a result or its reference ({', '.join(map(str, lacking[:5]))}"
                              f"{', ...' if len(lacking) > 5 else ''}), so the mean is missing")
            return math.nan
        return float(sum(values) / len(values)) if values else math.nan

    def _relative(self, value: float, coords: dict[str, Any], cell: Cell) -> float | None:
        """100 * value / reference when the table is relative, the value itself otherwise; None when
        the task must be left out because its reference score is not positive."""
        if self.spec.reference is None or math.isnan(value):
            return value
        denominator = self._reference(coords)
        if math.isnan(denominator):
            return math.nan
        if denominator <= 0:
            # a ratio to a zero or negative score (e.g. Matthews correlation) means nothing
            self.notes.append(f"row {cell.row}, column {cell.col}: reference score {denominator:g} for "
                              f"task {coords.get('task')} is not positive; left out")
            return None
        return 100.0 * value / denominator

    def _reference(self, coords: dict[str, Any]) -> float:
        assert self.spec.reference is not None
        selector = dict(self.spec.reference.select)
        for ref_column, coordinate in reference_on(self.spec).items():
            selector[ref_column] = coords[coordinate]
        key = tuple(sorted((k, repr(v)) for k, v in selector.items()))
        if key not in self._references:
            self._references[key] = best_on_dev(filter_rows(self.results, selector))
        return self._references[key]


def _with_averages(spec: TableSpec, ours: pd.DataFrame) -> pd.DataFrame:
    """Append the Avg column and row: plain means, missing if any of their cells is missing."""
    if spec.avg_column:
        ours[AVG] = ours.mean(axis=1, skipna=False)
    if spec.avg_row:
        ours.loc[AVG] = ours.mean(axis=0, skipna=False)
    return ours


def _published_frame(spec: TableSpec, ours: pd.DataFrame) -> pd.DataFrame:
    paper = pd.DataFrame(math.nan, index=ours.index, columns=ours.columns, dtype=float)
    for row, cells in (spec.published or {}).items():
        for col, value in cells.items():
            if value is not None:
                paper.loc[row, col] = float(value)
    return paper
