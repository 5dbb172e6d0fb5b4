"""From a spec to cells: what each (row, column) of a table selects, reads and how it aggregates.

Every kind is the same machine with different defaults. A cell's selector is the merge of the
table's ``select``, its row's ``match`` and its column's ``match``; where a row or column gives no
``match``, the kind's axis column fills it in (``task`` for rows of task tables, ``method`` for
columns of optimization tables, source and target method for a transfer matrix, source and target
task for task transfer). Aggregating kinds (``series``, ``task_mean``) average per-task values over
a task set instead of reading one task. ``rows: auto`` and ``columns: auto`` enumerate the values
of an axis column found in the selected results (``row_axis``/``column_axis`` override the kind's),
optionally in blocks of rows, one per value of ``row_groups`` (a task-transfer matrix per method).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .errors import TableSpecError
from .select import filter_rows
from .spec import Axis, Selector, TableSpec, value_key
from .values import Value


@dataclass(frozen=True)
class Kind:
    row_axis: str | None  # result column a row key names when the row has no ``match``
    col_axis: str | None
    aggregate: bool  # True: the cell is a mean over tasks of per-task values
    reference_on: Mapping[str, str] | None  # default reference column -> cell coordinate
    diagonal_on: Mapping[str, str] | None = None  # diagonal cells: result column -> cell coordinate


KINDS: dict[str, Kind] = {
    "absolute": Kind("task", "method", False, None),
    "relative": Kind("task", "method", False, {"task": "task", "method": "method"}),
    "relative_optimization": Kind("task", "method", False, {"task": "task", "method": "method"}),
    "relative_transfer": Kind("task", None, False, {"task": "task", "method": "target_method"}),
    "transfer_matrix": Kind("source_method", "target_method", False, {"task": "task", "method": "target_method"},
                            {"method": "target_method"}),
    # survey §5.4: a source task's delta evaluated zero-shot on a target task, over the target's own score
    "task_transfer": Kind("source_task", "task", False, {"task": "task", "method": "method"},
                          {"task": "task", "method": "method"}),
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
    value: Value | None = None  # what the cell reads (None: the table's value)
    statistic: str | None = None  # how its runs become one number (None: the table's statistic)
    diagonal: bool = False  # a transfer matrix's diagonal: the method's own score, read from other rows


@dataclass(frozen=True)
class Layout:
    """Rows, columns, footer rows and the cells of all of them."""

    rows: list[Axis]
    columns: list[Axis]
    footer: list[Axis]
    cells: list[Cell]


def check_spec(spec: TableSpec) -> None:
    """Fail now if the spec cannot build cells, whatever results arrive later."""
    kind = KINDS[spec.kind]
    if spec.rows is None and row_axis(spec) is None:
        raise TableSpecError(f"{spec.where}: rows: auto needs a row_axis (the result column whose values are "
                             f"the rows): kind {spec.kind} has none")
    if spec.columns is None and spec.kind != "series" and column_axis(spec) is None:
        raise TableSpecError(f"{spec.where}: columns: auto needs a column_axis (the result column whose values "
                             f"are the columns): kind {spec.kind} has none")
    axes = (spec.rows or ()) + (spec.columns or ()) + spec.footer_rows
    if not kind.aggregate and any(a.tasks_from is not None for a in axes):
        raise TableSpecError(f"{spec.where}: tasks_from only applies to kinds that average over tasks "
                             f"(series, task_mean), not {spec.kind}")
    if kind.aggregate and (spec.spread or any(a.value or a.statistic for a in axes)):
        raise TableSpecError(f"{spec.where}: kind {spec.kind} averages over tasks; spread and per-row or "
                             f"per-column value/statistic are for the other kinds")
    if spec.spread and any(a.statistic for a in axes):
        raise TableSpecError(f"{spec.where}: spread needs one statistic for the whole table, not per row or column")
    layout = build_cells(spec, None)
    headers = ["key", spec.row_header, spec.row_group_label, *(c.label for c in layout.columns),
               spec.avg_label if spec.avg_column else None]
    headers = [h for h in headers if h is not None]
    clashes = sorted({h for h in headers if headers.count(h) > 1})
    if clashes:
        raise TableSpecError(f"{spec.where}: column headers must be unique; repeated: {', '.join(clashes)}")


def row_axis(spec: TableSpec) -> str | None:
    return spec.row_axis or KINDS[spec.kind].row_axis


def column_axis(spec: TableSpec) -> str | None:
    return spec.column_axis or KINDS[spec.kind].col_axis


def build_cells(spec: TableSpec, results: pd.DataFrame | None) -> Layout:
    """Rows, columns and cells of a table; ``results`` is only read for ``auto`` rows and columns."""
    kind = KINDS[spec.kind]
    rows = list(spec.rows) if spec.rows is not None else _auto_rows(spec, results)
    columns = _columns(spec, results)
    footer = list(spec.footer_rows)
    cells = [_cell(spec, kind, row, col) for row in rows + footer for col in columns]
    return Layout(rows, columns, footer, cells)


def reference_on(spec: TableSpec) -> Mapping[str, str]:
    """Reference column -> cell coordinate: the spec's ``reference.on``, else the kind's default."""
    kind = KINDS[spec.kind]
    if spec.reference is not None and spec.reference.on is not None:
        return spec.reference.on
    return kind.reference_on or {}


def merge(where: str, *selectors: Selector | None) -> dict[str, Any]:
    """Intersection of selectors. A value narrows a list that holds it (a table that selects
    ``method: [lora, adapter]`` has a column ``method: lora``); two selectors whose values for one
    column cannot both hold are a spec error."""
    merged: dict[str, Any] = {}
    for selector in selectors:
        for column, value in (selector or {}).items():
            if column in merged:
                value = _narrow(merged[column], value)
                if value is _CONFLICT:
                    raise TableSpecError(f"{where}: selectors disagree on {column!r} "
                                         f"({merged[column]!r} vs {selector[column]!r})")
            merged[column] = value
    return merged


_CONFLICT = object()


def _narrow(a: Any, b: Any) -> Any:
    if a == b:
        return a
    left, right = (a if isinstance(a, list) else [a]), (b if isinstance(b, list) else [b])
    both = [v for v in left if v in right]
    if not both or (not isinstance(a, list) and not isinstance(b, list)):
        return _CONFLICT
    return both[0] if len(both) == 1 else both


def _cell(spec: TableSpec, kind: Kind, row: Axis, col: Axis) -> Cell:
    where = f"{spec.where}, row {row.key}, column {col.key}"
    row_match = row.match if row.match is not None else _axis_match(spec, row_axis(spec), row, "row")
    col_match = col.match if col.match is not None else _axis_match(spec, column_axis(spec), col, "column")
    coords = merge(where, spec.select, row_match, col_match)
    match = coords
    value = _override(where, "value", row.value, col.value)
    statistic = _override(where, "statistic", row.statistic, col.statistic)
    diagonal = _is_diagonal(spec, coords)
    if diagonal:
        # the diagonal of a transfer matrix is the method's own score (optimization, stage 0), read from
        # other rows with the reference's statistic: it has no transfer runs of its own
        keep = {column: coords[coordinate] for column, coordinate in (kind.diagonal_on or {}).items()
                if coordinate in coords}
        missing = sorted(set((kind.diagonal_on or {}).values()) - set(coords))
        if missing:
            raise TableSpecError(f"{where}: a diagonal cell needs rows/columns that select {', '.join(missing)}")
        base = {k: v for k, v in (spec.select or {}).items() if k not in spec.diagonal}
        match = merge(where, base, spec.diagonal, keep)
        if spec.reference is not None:
            value, statistic = spec.reference.value or value, spec.reference.statistic
    tasks_from = None
    if kind.aggregate:
        if row.tasks_from is not None or col.tasks_from is not None:
            tasks_from = merge(where, spec.select, row.tasks_from, col.tasks_from)
        else:
            tasks_from = merge(where, spec.select, row_match)
    _check_reference_coords(spec, kind, coords, where)
    return Cell(row.key, col.key, match, coords, tasks_from, value, statistic, diagonal)


def _is_diagonal(spec: TableSpec, coords: Mapping[str, Any]) -> bool:
    """A cell whose row and column name the same thing (source = target) when the spec has a diagonal."""
    if spec.diagonal is None:
        return False
    kind = KINDS[spec.kind]
    a, b = kind.row_axis, kind.col_axis
    return a in coords and b in coords and coords[a] == coords[b]


def _override(where: str, name: str, row_value: Any, col_value: Any) -> Any:
    if row_value is not None and col_value is not None and row_value != col_value:
        raise TableSpecError(f"{where}: the row and the column both set {name}, differently")
    return col_value if col_value is not None else row_value


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
    if spec.kind == "series":
        values = spec.values if spec.values is not None else _auto_values(spec, spec.param, results)
        return [Axis(key=value_key(v), label=value_key(v), match={spec.param: v}) for v in values]
    if spec.columns is not None:
        return list(spec.columns)
    axis = column_axis(spec)
    return [Axis(key=_key(v), label=_key(v), match={axis: v}) for v in _found(spec, axis, results)]


def _auto_rows(spec: TableSpec, results: pd.DataFrame | None) -> list[Axis]:
    """rows: auto — one row per value of the row axis among the selected results, sorted; with
    ``row_groups``, one block per value of that column holding the row-axis values it has."""
    axis = row_axis(spec)
    if spec.row_groups is None:
        return [Axis(key=_key(v), label=_key(v), match={axis: v}) for v in _found(spec, axis, results)]
    if results is None or axis not in results.columns or spec.row_groups not in results.columns:
        return []
    selected = filter_rows(results, spec.select or {})
    pairs = selected[[spec.row_groups, axis]].dropna().drop_duplicates()
    rows = []
    for group in _sorted(pairs[spec.row_groups].unique()):
        for value in _sorted(pairs.loc[pairs[spec.row_groups] == group, axis].unique()):
            rows.append(Axis(key=f"{_key(group)}/{_key(value)}", label=_key(value), group=_key(group),
                             match={spec.row_groups: group, axis: value}))
    return rows


def _found(spec: TableSpec, axis: str, results: pd.DataFrame | None) -> list[Any]:
    if results is None or axis not in results.columns:
        return []
    return _sorted(filter_rows(results, spec.select or {})[axis].dropna().unique())


def _sorted(values) -> list[Any]:
    """Numbers numerically (batch size 8 before 64), everything else as text."""
    values = list(values)
    numeric = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
    if len(values) and numeric.notna().all() and not any(isinstance(v, str) for v in values):
        return [v for _, v in sorted(zip(numeric.tolist(), values), key=lambda p: p[0])]
    return sorted(values, key=str)


def _key(value: Any) -> str:
    """Row/column key of an auto value: 8 for 8 and 8.0, text as is."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_)):
        return value_key(float(value))
    return str(value)


def _auto_values(spec: TableSpec, param: str | None, results: pd.DataFrame | None) -> list[float]:
    """values: auto — every swept value present among the selected results, ascending."""
    if results is None or param not in results.columns:
        return []
    found = pd.to_numeric(filter_rows(results, spec.select or {})[param], errors="coerce").dropna()
    return sorted(found.unique().tolist())

