"""From a spec to cells: what each (row, column) of a table selects.

Every kind is the same machine with different defaults. A cell's selector is the merge of the
table's ``select``, its row's ``match`` and its column's ``match``; where a row or column gives no
``match``, the kind's axis column fills it in (``task`` for rows of task tables, ``method`` for
columns of optimization tables, source and target method for a transfer matrix). Aggregating kinds
(``series``, ``task_mean``) average per-task values over a task set instead of reading one task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import pandas as pd

from .errors import TableSpecError
from .select import filter_rows
from .spec import Axis, Selector, TableSpec, value_key


@dataclass(frozen=True)
class Kind:
    row_axis: str | None  # result column a row key names when the row has no ``match``
    col_axis: str | None
    aggregate: bool  # True: the cell is a mean over tasks of per-task values
    reference_on: Mapping[str, str] | None  # default reference column -> cell coordinate


KINDS: dict[str, Kind] = {
    "absolute": Kind("task", "method", False, None),
    "relative_optimization": Kind("task", "method", False, {"task": "task", "method": "method"}),
    "relative_transfer": Kind("task", None, False, {"task": "task", "method": "target_method"}),
    "transfer_matrix": Kind("source_method", "target_method", False, {"task": "task", "method": "target_method"}),
    "series": Kind(None, None, True, {"task": "task"}),
    "task_mean": Kind(None, None, True, {"task": "task"}),
}


@dataclass(frozen=True)
class Cell:
    row: str
    col: str
    match: dict[str, Any]  # selects the numerator runs
    coords: dict[str, Any]  # what the reference lookup reads (``task`` is added per task when aggregating)
    tasks_from: dict[str, Any] | None = None  # aggregating kinds: the rows whose tasks form the task set


def check_spec(spec: TableSpec) -> None:
    """Fail now if the spec cannot build cells, whatever results arrive later."""
    kind = KINDS[spec.kind]
    if spec.rows is None and kind.row_axis is None:
        raise TableSpecError(f"{spec.where}: rows: auto needs a kind whose rows are tasks or methods, "
                             f"not {spec.kind}")
    if not kind.aggregate and any(a.tasks_from is not None for a in (spec.rows or ()) + (spec.columns or ())):
        raise TableSpecError(f"{spec.where}: tasks_from only applies to kinds that average over tasks "
                             f"(series, task_mean), not {spec.kind}")
    _, columns, _ = build_cells(spec, None)
    headers = ["key", spec.row_header, spec.row_group_label, *(c.label for c in columns),
               spec.avg_label if spec.avg_column else None]
    headers = [h for h in headers if h is not None]
    clashes = sorted({h for h in headers if headers.count(h) > 1})
    if clashes:
        raise TableSpecError(f"{spec.where}: column headers must be unique; repeated: {', '.join(clashes)}")


def build_cells(spec: TableSpec, results: pd.DataFrame | None) -> tuple[list[Axis], list[Axis], list[Cell]]:
    """Rows, columns and cells of a table; ``results`` is only read for ``auto`` rows and values."""
    kind = KINDS[spec.kind]
    rows = list(spec.rows) if spec.rows is not None else _auto_axes(spec, results, kind.row_axis)
    columns = _columns(spec, results)
    cells = [_cell(spec, kind, row, col) for row in rows for col in columns]
    return rows, columns, cells


def reference_on(spec: TableSpec) -> Mapping[str, str]:
    """Reference column -> cell coordinate: the spec's ``reference.on``, else the kind's default."""
    kind = KINDS[spec.kind]
    if spec.reference is not None and spec.reference.on is not None:
        return spec.reference.on
    return kind.reference_on or {}


def merge(where: str, *selectors: Selector | None) -> dict[str, Any]:
    """Union of selectors; two selectors that constrain one column differently are a spec error."""
    merged: dict[str, Any] = {}
    for selector in selectors:
        for column, value in (selector or {}).items():
            if column in merged and merged[column] != value:
                raise TableSpecError(f"{where}: selectors disagree on {column!r} "
                                     f"({merged[column]!r} vs {value!r})")
            merged[column] = value
    return merged


def _cell(spec: TableSpec, kind: Kind, row: Axis, col: Axis) -> Cell:
    where = f"{spec.where}, row {row.key}, column {col.key}"
    row_match = row.match if row.match is not None else _axis_match(spec, kind.row_axis, row, "row")
    col_match = col.match if col.match is not None else _axis_match(spec, kind.col_axis, col, "column")
    coords = merge(where, spec.select, row_match, col_match)
    match = coords
    if spec.diagonal is not None and row.key == col.key:
        # the diagonal of a transfer matrix is the optimization of that method, read from other rows
        if "target_method" not in coords:
            raise TableSpecError(f"{where}: a diagonal cell needs a column that selects target_method")
        base = {k: v for k, v in (spec.select or {}).items() if k not in spec.diagonal}
        match = merge(where, base, spec.diagonal, {"method": coords["target_method"]})
    tasks_from = None
    if kind.aggregate:
        if row.tasks_from is not None or col.tasks_from is not None:
            tasks_from = merge(where, spec.select, row.tasks_from, col.tasks_from)
        else:
            tasks_from = merge(where, spec.select, row_match)
    _check_reference_coords(spec, kind, coords, where)
    return Cell(row.key, col.key, match, coords, tasks_from)


def _axis_match(spec: TableSpec, axis: str | None, entry: Axis, side: str) -> dict[str, Any]:
    if axis is None:
        if entry.tasks_from is not None:
            return {}  # it only restricts the task set (a task split, T_train vs T_test)
        raise TableSpecError(f"{spec.where}: {side} {entry.key} needs a match (or tasks_from): kind "
                             f"{spec.kind} does not say which result column its {side}s select")
    return {axis: entry.key}


def _check_reference_coords(spec: TableSpec, kind: Kind, coords: Mapping[str, Any], where: str) -> None:
    if spec.reference is None:
        return
    supplied = set(coords) | ({"task"} if kind.aggregate else set())
    for ref_column, coordinate in reference_on(spec).items():
        if coordinate not in supplied:
            raise TableSpecError(f"{where}: reference.on maps {ref_column!r} to {coordinate!r}, "
                                 f"which this cell does not select")


def _columns(spec: TableSpec, results: pd.DataFrame | None) -> list[Axis]:
    if spec.kind != "series":
        return list(spec.columns or ())
    values = spec.values if spec.values is not None else _auto_values(spec, results)
    return [Axis(key=value_key(v), label=value_key(v), match={spec.param: v}) for v in values]


def _auto_axes(spec: TableSpec, results: pd.DataFrame | None, axis: str | None) -> list[Axis]:
    """rows: auto — one row per value of the row axis among the selected results, sorted."""
    if results is None or axis not in results.columns:
        return []
    found = filter_rows(results, spec.select or {})[axis].dropna().unique()
    return [Axis(key=str(v), label=str(v)) for v in sorted(found, key=str)]


def _auto_values(spec: TableSpec, results: pd.DataFrame | None) -> list[float]:
    """values: auto — every swept value present among the selected results, ascending."""
    if results is None or spec.param not in results.columns:
        return []
    found = pd.to_numeric(filter_rows(results, spec.select or {})[spec.param], errors="coerce").dropna()
    return sorted(found.unique().tolist())
