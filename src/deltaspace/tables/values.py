"""What a cell reads from its runs: a result column, or arithmetic over result columns.

Most tables read ``test_metric``. Some read another number the runs carry: the generalization gap
of the survey's Table 7 is ``train_metric - dev_metric``, its Table 9 is the tuned share
``100 * size / (backbone_parameters + size)``, the memory study reads ``peak_bytes / 1073741824``
(GiB). A spec says so with ``value:``; this module parses such a value once, at spec load time,
and evaluates it on result frames. Only numbers, column names, ``+ - * /`` and parentheses are
allowed: a spec is data, so nothing here calls functions or reads attributes.

A few names are not stored in ``result.parquet`` but derived from the ``curve.parquet`` written
beside a stage-0 result (one row per evaluation): :data:`CURVE_COLUMNS`. They are computed on
demand, for the runs a table selects, from the file the result row was read from (``_source``,
added by :func:`deltaspace.tables.load_results`).
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from .errors import TableSpecError

DEFAULT_VALUE = "test_metric"
SOURCE_COLUMN = "_source"  # the result file a row came from (load_results adds it)
CURVE_FILE = "curve.parquet"
CONVERGENCE_FRACTION = 0.9


def _steps_to_fraction(curve: pd.DataFrame) -> float:
    """First evaluation step whose dev score reaches 90% of the run's best dev score.

    A convergence-speed number that needs no common scale across tasks: a run that is already at 90%
    of its best at its first evaluation reads as its first evaluation step. Scores that are not
    positive at their best (e.g. Matthews correlation of a collapsed run) have no such fraction: NaN.
    """
    dev = pd.to_numeric(curve["dev_metric"], errors="coerce")
    steps = pd.to_numeric(curve["step"], errors="coerce")
    ok = dev.notna() & steps.notna()
    dev, steps = dev[ok], steps[ok]
    if dev.empty or not dev.max() > 0:
        return math.nan
    reached = steps[dev >= CONVERGENCE_FRACTION * dev.max()]
    return float(reached.min())


def _best_dev(curve: pd.DataFrame) -> float:
    dev = pd.to_numeric(curve["dev_metric"], errors="coerce")
    return float(dev.max()) if dev.notna().any() else math.nan


def _last_step(curve: pd.DataFrame) -> float:
    steps = pd.to_numeric(curve["step"], errors="coerce")
    return float(steps.max()) if steps.notna().any() else math.nan


#: names a value may use that are derived from the run's curve.parquet, with what they mean
CURVE_COLUMNS: dict[str, tuple[Callable[[pd.DataFrame], float], str]] = {
    "steps_to_90": (_steps_to_fraction, "first evaluation step at which dev reaches 90% of the run's best dev"),
    "curve_best_dev": (_best_dev, "best dev score on the curve"),
    "curve_last_step": (_last_step, "last evaluated step (early stopping ends the curve)"),
    "curve_evals": (lambda c: float(len(c)), "number of evaluations on the curve"),
}

_OPERATORS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide}


@dataclass(frozen=True)
class Value:
    """A parsed ``value:``: its text, the result columns it reads and its syntax tree."""

    text: str
    columns: frozenset[str] = field(compare=False)
    tree: ast.expr = field(compare=False)

    @property
    def column(self) -> str:
        """Name of the frame column that holds this value once :func:`with_values` added it."""
        return self.tree.id if isinstance(self.tree, ast.Name) else f"_value:{self.text}"

    @property
    def curve_columns(self) -> frozenset[str]:
        return frozenset(c for c in self.columns if c in CURVE_COLUMNS)

    def evaluate(self, frame: pd.DataFrame) -> pd.Series:
        """The value of every row; NaN where a column is missing, not numeric, or a division by 0."""
        with np.errstate(divide="ignore", invalid="ignore"):
            out = _eval(self.tree, frame)
        if not isinstance(out, pd.Series):
            out = pd.Series(float(out), index=frame.index)
        return out.astype(float).replace([np.inf, -np.inf], np.nan)


def parse_value(text: str | int | float, where: str) -> Value:
    """Parse a ``value:`` of a spec; errors name the spec and say what is allowed."""
    text = str(text).strip()
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise TableSpecError(f"{where}: value {text!r} is not an expression (use result columns, numbers, "
                             f"+ - * / and parentheses, e.g. 'train_metric - dev_metric')") from None
    columns: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            columns.add(node.id)
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise TableSpecError(f"{where}: value {text!r}: only numbers may appear as constants")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _OPERATORS:
                raise TableSpecError(f"{where}: value {text!r}: only + - * / are allowed")
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd)):
                raise TableSpecError(f"{where}: value {text!r}: only unary + and - are allowed")
        elif not isinstance(node, (ast.Load, ast.operator, ast.unaryop)):
            raise TableSpecError(f"{where}: value {text!r}: {type(node).__name__} is not allowed (use result "
                                 f"columns, numbers, + - * / and parentheses)")
    if not columns:
        raise TableSpecError(f"{where}: value {text!r} reads no result column")
    return Value(text, frozenset(columns), tree)


def _eval(node: ast.expr, frame: pd.DataFrame):
    if isinstance(node, ast.Name):
        if node.id not in frame.columns:
            return pd.Series(math.nan, index=frame.index, dtype=float)
        return pd.to_numeric(frame[node.id], errors="coerce").astype(float)
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, frame)
        return -operand if isinstance(node.op, ast.USub) else operand
    assert isinstance(node, ast.BinOp)
    return _OPERATORS[type(node.op)](_eval(node.left, frame), _eval(node.right, frame))


def with_values(results: pd.DataFrame, values: Iterable[Value], curve_rows: pd.Index | None = None) -> pd.DataFrame:
    """``results`` with one column per value (plain column values need none) and, for the rows in
    ``curve_rows`` (default: all), the curve-derived columns those values read."""
    values = list(dict.fromkeys(values))
    needed = sorted({c for v in values for c in v.curve_columns if c not in results.columns})
    derived = [v for v in values if v.column not in results.columns]
    if not needed and not derived:
        return results
    results = results.copy()
    if needed:
        results = _add_curve_columns(results, needed, results.index if curve_rows is None else curve_rows)
    for value in derived:
        results[value.column] = value.evaluate(results)
    return results


def _add_curve_columns(results: pd.DataFrame, names: list[str], rows: pd.Index) -> pd.DataFrame:
    """Read each selected run's curve.parquet once and add the derived columns (NaN where a run has
    no curve: a table cell then stays missing rather than guessing)."""
    for name in names:
        results[name] = math.nan
    if SOURCE_COLUMN not in results.columns:
        return results
    sources = results.loc[rows, SOURCE_COLUMN].dropna().astype(str)
    for source, index in sources.groupby(sources).groups.items():
        curve = _read_curve(Path(source).parent / CURVE_FILE)
        if curve is None:
            continue
        for name in names:
            results.loc[index, name] = CURVE_COLUMNS[name][0](curve)
    return results


def _read_curve(path: Path) -> pd.DataFrame | None:
    try:
        curve = pd.read_parquet(path)
    except (OSError, ValueError):
        return None
    if not {"step", "dev_metric"} <= set(curve.columns) or curve.empty:
        return None
    return curve
