"""Compile a table spec against result files: ours, the paper's, and the difference.

Tables are pure functions of the result Parquet files (and, for convergence numbers, of the
``curve.parquet`` beside them): nothing here trains, caches or reads anything else. A cell with no
runs is NaN, never 0, and so is every Avg that would include it: a partially finished workflow must
not produce a table that looks complete.
"""

from __future__ import annotations

import glob
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from .cells import KINDS, Cell, build_cells, reference_on
from .errors import ResultsError
from .select import SPREAD_OF_AVERAGE, STATISTICS, filter_rows, mean_of_cells
from .spec import AVG, Axis, TableSpec
from .values import SOURCE_COLUMN, with_values

REQUIRED_COLUMNS = ("task", "dev_metric", "test_metric")
METRIC_COLUMNS = ("dev_metric", "test_metric")


def load_results(paths: str | Path | Iterable[str | Path], allow_empty: bool = False) -> pd.DataFrame:
    """Concatenate result Parquet files given as paths or globs (``**`` recurses).

    Every file must be a result file: it has ``task``, ``dev_metric`` and ``test_metric``, or it
    names its ``stage`` (measurement stages such as ``efficiency`` have no scores; their missing
    metric columns read as missing). A stray training curve matched by a broad glob has neither,
    so it fails loudly instead of adding bogus runs. Each row records its file in ``_source``, so
    that numbers derived from the run's ``curve.parquet`` can find it. Nothing matching is an error
    (a mistyped glob), unless ``allow_empty``: then every table compiles with every cell missing.
    """
    patterns = [paths] if isinstance(paths, (str, Path)) else list(paths)
    files: list[Path] = []
    for pattern in patterns:
        matched = sorted(glob.glob(str(pattern), recursive=True))
        files.extend(Path(m) for m in matched if Path(m).is_file())
    files = sorted(set(files))
    if not files:
        if allow_empty:
            return pd.DataFrame({c: pd.Series(dtype=float if c in METRIC_COLUMNS else object)
                                 for c in (*REQUIRED_COLUMNS, "experiment", "stage", "method", SOURCE_COLUMN)})
        raise ResultsError(f"no result files match {', '.join(map(str, patterns)) or '(nothing given)'}")
    frames = []
    for path in files:
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise ResultsError(f"cannot read result file {path}: {exc}") from None
        missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
        if missing and "stage" not in frame.columns:
            raise ResultsError(f"{path} is not a result file: it lacks column(s) {', '.join(missing)} "
                               f"and names no stage")
        frame = frame.copy()
        frame[SOURCE_COLUMN] = str(path)
        frames.append(frame)
    results = pd.concat(frames, ignore_index=True, sort=False)
    for column in REQUIRED_COLUMNS:
        if column not in results.columns:
            results[column] = math.nan
    for column in METRIC_COLUMNS:
        results[column] = pd.to_numeric(results[column], errors="coerce")
    return results


@dataclass
class CompiledTable:
    """One compiled table. Frames are indexed by row key (footer rows last) and have column keys as
    columns, the Avg row and column (key ``avg``) included where the spec asks for them.
    ``spread`` / ``paper_spread`` hold the "±" numbers of tables with a ``spread`` (else None)."""

    spec: TableSpec
    rows: list[Axis]
    columns: list[Axis]
    ours: pd.DataFrame
    paper: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    footer: list[Axis] = field(default_factory=list)
    spread: pd.DataFrame | None = None
    paper_spread: pd.DataFrame | None = None

    @property
    def diff(self) -> pd.DataFrame:
        """Ours minus the paper's; NaN where either is missing."""
        return self.ours - self.paper

    @property
    def missing(self) -> int:
        """Number of body cells (Avg and footer excluded) we could not fill."""
        body = self.ours.loc[[r.key for r in self.rows], [c.key for c in self.columns]]
        return int(body.isna().sum().sum())

    def decimals(self, row: str, col: str) -> int:
        """Digits to print in a cell: the column's ``decimals``, else the row's, else the table's."""
        for axes, key in ((self.columns, col), (self.rows + self.footer, row)):
            for axis in axes:
                if axis.key == key and axis.decimals is not None:
                    return axis.decimals
        return self.spec.decimals


def compile_table(spec: TableSpec, results: pd.DataFrame) -> CompiledTable:
    """Evaluate every cell of ``spec`` on ``results`` (a frame from :func:`load_results`)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in results.columns]
    if missing:  # measurement rows (efficiency) have no scores: a column absent is every value missing
        results = results.assign(**{c: math.nan for c in missing})
    layout = build_cells(spec, results)
    evaluator = _Evaluator(spec, results, layout.cells)
    index = [r.key for r in layout.rows + layout.footer]
    columns = [c.key for c in layout.columns]
    ours = pd.DataFrame(math.nan, index=index, columns=columns, dtype=float)
    spread = ours.copy() if spec.spread else None
    for cell in layout.cells:
        ours.loc[cell.row, cell.col] = evaluator.value(cell)
        if spread is not None:
            spread.loc[cell.row, cell.col] = evaluator.value(cell, spec.spread)
    body = [r.key for r in layout.rows]
    ours = _with_averages(spec, ours, body)
    if spread is not None:
        spread = _with_averages(spec, spread, body, SPREAD_OF_AVERAGE[spec.spread])
    table = CompiledTable(spec, layout.rows, layout.columns, ours, _published_frame(spec.published, ours),
                          evaluator.notes, layout.footer, spread,
                          _published_frame(spec.published_spread, ours) if spec.spread else None)
    if not layout.rows or not layout.columns:
        table.notes.append("no rows or columns: the selected results hold no tasks or swept values")
    elif table.missing:
        body_cells = len(layout.rows) * len(layout.columns)
        table.notes.append(f"{table.missing} of {body_cells} cells have no result (shown as missing)")
    return table


class _Evaluator:
    """Turns cells into numbers; remembers what it had to skip, for the notes under the table."""

    def __init__(self, spec: TableSpec, results: pd.DataFrame, cells: list[Cell]) -> None:
        self.spec = spec
        self.kind = KINDS[spec.kind]
        values = {spec.value} | {c.value for c in cells if c.value is not None}
        if spec.reference is not None and spec.reference.value is not None:
            values.add(spec.reference.value)
        # every cell but a diagonal one narrows the table's own selection: filter once; curve-derived
        # numbers are read only for the runs the table selects
        selected = filter_rows(results, spec.select or {})
        self.results = with_values(results, values, curve_rows=selected.index)
        self.selected = self.results.loc[selected.index]
        self.notes: list[str] = []
        self._references: dict[tuple[tuple[str, Any], ...], float] = {}

    def value(self, cell: Cell, statistic: str | None = None) -> float:
        """The cell's number (or, with ``statistic``, that statistic of the same runs: the spread)."""
        # a cell's selector narrows the table's (cells.merge), so its runs are among the selected ones;
        # a diagonal cell reads other rows (the method's own runs)
        runs = filter_rows(self.results if cell.diagonal else self.selected, cell.match)
        statistic = statistic or cell.statistic or self.spec.statistic
        value = (cell.value or self.spec.value).column
        if not self.kind.aggregate:
            number = self._relative(self._statistic(runs, statistic, value), cell.coords, cell)
            return math.nan if number is None else number
        return self._task_mean(runs, cell, statistic, value)

    @staticmethod
    def _statistic(runs: pd.DataFrame, statistic: str, value: str) -> float:
        return math.nan if runs.empty else STATISTICS[statistic](runs, value)  # no runs: missing, cheaply

    def _task_mean(self, runs: pd.DataFrame, cell: Cell, statistic: str, value: str) -> float:
        """Mean over the cell's task set of per-task values; NaN unless every task has one."""
        tasks = sorted(filter_rows(self.results, cell.tasks_from or {})["task"].dropna().unique(), key=str)
        if not tasks:
            return math.nan
        by_task = dict(tuple(runs.groupby("task", sort=False)))
        values, lacking = [], []
        for task in tasks:
            task_runs = by_task.get(task, runs.iloc[0:0])
            number = self._relative(self._statistic(task_runs, statistic, value), {**cell.coords, "task": task}, cell)
            if number is None:
                continue
            if math.isnan(number):
                lacking.append(task)
            values.append(number)
        if lacking:
            note = (f"row {cell.row}, column {cell.col}: {len(lacking)} of {len(tasks)} tasks "
                    f"lack a result or its reference ({', '.join(map(str, lacking[:5]))}"
                    f"{', ...' if len(lacking) > 5 else ''}), so the mean is missing")
            if note not in self.notes:
                self.notes.append(note)
            return math.nan
        return float(sum(values) / len(values)) if values else math.nan

    def _relative(self, number: float, coords: dict[str, Any], cell: Cell) -> float | None:
        """100 * number / reference when the table is relative, the number itself otherwise; None when
        the task must be left out because its reference score is not positive."""
        if self.spec.reference is None or math.isnan(number):
            return number
        denominator = self._reference(coords)
        if math.isnan(denominator):
            return math.nan
        if denominator <= 0:
            # a ratio to a zero or negative score (e.g. Matthews correlation) means nothing
            note = (f"row {cell.row}, column {cell.col}: reference score {denominator:g} for "
                    f"task {coords.get('task')} is not positive; left out")
            if note not in self.notes:
                self.notes.append(note)
            return None
        return 100.0 * number / denominator

    def _reference(self, coords: dict[str, Any]) -> float:
        reference = self.spec.reference
        assert reference is not None
        selector = dict(reference.select)
        for ref_column, coordinate in reference_on(self.spec).items():
            selector[ref_column] = coords[coordinate]
        key = tuple(sorted((k, repr(v)) for k, v in selector.items()))
        if key not in self._references:
            value = (reference.value or self.spec.value).column  # default: the same quantity as the cells
            self._references[key] = self._statistic(filter_rows(self.results, selector), reference.statistic, value)
        return self._references[key]


def _with_averages(spec: TableSpec, frame: pd.DataFrame, body: list[str],
                   average: Callable[[pd.DataFrame], pd.Series] = mean_of_cells) -> pd.DataFrame:
    """Append the Avg column and row: plain means over the body (footer rows are not averaged and
    get no Avg), missing if any of their cells is missing. A spread frame passes its ``average``:
    how the spread of a mean follows from the spreads of its cells (one row per Avg cell)."""
    if spec.avg_column:
        frame[AVG] = average(frame.loc[body]).reindex(frame.index)
    if spec.avg_row:
        frame.loc[AVG] = average(frame.loc[body].T)
        order = body + [AVG] + [k for k in frame.index if k not in body and k != AVG]
        frame = frame.loc[order]
    return frame


def _published_frame(published, ours: pd.DataFrame) -> pd.DataFrame:
    paper = pd.DataFrame(math.nan, index=ours.index, columns=ours.columns, dtype=float)
    for row, cells in (published or {}).items():
        for col, value in cells.items():
            if value is not None:
                paper.loc[row, col] = float(value)
    return paper
