"""Table specs: one YAML file per paper in ``specs/``, one entry per paper table.

A spec is data, not code: it names the result rows a table reads (selectors), its rows and columns,
how cells aggregate (its ``kind``), and the numbers the paper printed. Adding a table means adding a
YAML entry; :mod:`deltaspace.tables.compile` interprets every spec with the same few rules.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import jsonschema
import yaml

from .errors import TableSpecError
from .schema import SPEC_FILE_SCHEMA
from .values import DEFAULT_VALUE, Value, parse_value

SPEC_DIR = Path(__file__).parent / "specs"
AVG = "avg"  # reserved row/column key of the Avg row and column, in ``published`` too

Selector = Mapping[str, Any]


@dataclass(frozen=True)
class Axis:
    """One row or column: its key (used in ``published``), display label and what it selects."""

    key: str
    label: str
    match: Selector | None = None
    tasks_from: Selector | None = None
    group: str | None = None
    value: Value | None = None  # overrides the table's value for this row or column
    statistic: str | None = None  # overrides the table's statistic
    decimals: int | None = None  # overrides the table's decimals when printing


@dataclass(frozen=True)
class Reference:
    """The denominator of a relative table.

    ``select`` picks the runs (normally stage 0); ``on`` maps a reference column to the cell
    coordinate it must equal, e.g. ``{task: task, method: target_method}`` for transfer.
    """

    select: Selector
    on: Mapping[str, str] | None = None
    statistic: str = "best_on_dev"  # how the denominator's runs become one number
    value: Value | None = None  # what it reads (default: the table's value)


@dataclass(frozen=True)
class TableSpec:
    """One paper table as data (docs/tables.md describes every field); ``paper`` is inherited from
    the file, ``published`` holds the paper's printed numbers."""

    id: str
    paper: str
    title: str
    kind: str
    source: Path
    caption: str = ""
    notes: str = ""
    statistic: str = "best_on_dev"
    value: Value = field(default_factory=lambda: parse_value(DEFAULT_VALUE, "default"))
    spread: str | None = None  # a second statistic printed as "± spread" (seed_std, seed_sem)
    figure: str | None = None  # how the report draws the table (heatmap | lines | curves | group_lines)
    figure_panels: Mapping[str, tuple[str, ...]] | None = None  # group_lines: panel title -> row labels
    measured: bool = False  # values are physical measurements (memory): two runs agree only roughly
    decimals: int = 1
    select: Selector | None = None
    reference: Reference | None = None
    diagonal: Selector | None = None
    param: str | None = None
    values: tuple[float, ...] | None = None  # series; None = every value found in the results
    rows: tuple[Axis, ...] | None = None  # None = every task found in the results ("auto")
    columns: tuple[Axis, ...] | None = None  # None = auto (every value of the column axis found)
    row_axis: str | None = None  # result column auto rows enumerate (default: the kind's)
    column_axis: str | None = None  # result column auto columns enumerate (default: the kind's)
    row_groups: str | None = None  # auto rows: one block of rows per value of this column
    footer_rows: tuple[Axis, ...] = ()  # rows printed after Avg and left out of it (e.g. |θ|)
    row_header: str = "Row"
    row_group_label: str | None = None
    avg_row: bool = False
    avg_column: bool = False
    avg_label: str = "Avg."
    published: Mapping[str, Mapping[str, float | None]] | None = None
    published_spread: Mapping[str, Mapping[str, float | None]] | None = None
    published_avg_inconsistent: frozenset[tuple[str, str]] = frozenset()

    @property
    def where(self) -> str:
        """Where this spec lives, for error messages."""
        return f"{self.source.name}: table {self.id}"


def load_specs(paths: Iterable[Path | str] | None = None) -> dict[str, TableSpec]:
    """Load and validate spec files (default: every ``specs/*.yaml``), keyed by table id.

    Each table is also dry-built into cells, so a spec whose selectors contradict each other fails
    here, at load time, rather than when its results arrive.
    """
    from .cells import check_spec  # cells imports this module

    files = sorted(Path(p) for p in paths) if paths is not None else sorted(SPEC_DIR.glob("*.yaml"))
    if not files:
        raise TableSpecError(f"no table spec files found in {SPEC_DIR}")
    specs: dict[str, TableSpec] = {}
    for path in files:
        for spec in _load_file(path):
            if spec.id in specs:
                raise TableSpecError(f"{path.name}: table id {spec.id!r} is also defined in "
                                     f"{specs[spec.id].source.name}")
            check_spec(spec)
            specs[spec.id] = spec
    return specs


def select_specs(specs: Mapping[str, TableSpec], ids: Iterable[str] | None = None,
                 papers: Iterable[str] | None = None) -> list[TableSpec]:
    """The specs named by id or by paper (union of both); all specs when neither is given."""
    ids, papers = list(ids or ()), list(papers or ())
    for table_id in ids:
        if table_id not in specs:
            close = difflib.get_close_matches(table_id, specs, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise TableSpecError(f"unknown table id {table_id!r}.{hint} Valid ids: {', '.join(sorted(specs))}")
    known_papers = sorted({s.paper for s in specs.values()})
    for paper in papers:
        if paper not in known_papers:
            raise TableSpecError(f"unknown paper {paper!r}. Valid papers: {', '.join(known_papers)}")
    if not ids and not papers:
        return list(specs.values())
    return [s for s in specs.values() if s.id in ids or s.paper in papers]


def _load_file(path: Path) -> list[TableSpec]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TableSpecError(f"{path.name}: not valid YAML: {exc}") from None
    except OSError as exc:
        raise TableSpecError(f"cannot read table spec {path}: {exc.strerror}") from None
    _unquoted_on(data)
    _validate_schema(path, data)
    return [_build_table(path, data["paper"], entry) for entry in data["tables"]]


def _unquoted_on(data: Any) -> None:
    """YAML 1.1 reads an unquoted ``on:`` key as the boolean true; in ``reference`` it means ``on``."""
    for entry in (data.get("tables") or []) if isinstance(data, dict) else []:
        reference = entry.get("reference") if isinstance(entry, dict) else None
        if isinstance(reference, dict) and True in reference and "on" not in reference:
            reference["on"] = reference.pop(True)


def _validate_schema(path: Path, data: Any) -> None:
    validator = jsonschema.Draft202012Validator(SPEC_FILE_SCHEMA)
    errors = list(validator.iter_errors(data))
    if not errors:
        return
    # a misspelt key also makes the right key "missing"; naming the unknown key is the useful message
    unknown = [e for e in errors if e.validator == "additionalProperties"]
    error = unknown[0] if unknown else jsonschema.exceptions.best_match(errors)
    where = _json_path(error.absolute_path)
    table = _table_id_at(data, error.absolute_path)
    raise TableSpecError(f"{path.name}: at {where}{table}: {error.message}")


def _json_path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".") or "top level"


def _table_id_at(data: Any, path: Iterable[Any]) -> str:
    parts = list(path)
    if len(parts) >= 2 and parts[0] == "tables" and isinstance(parts[1], int):
        table = data["tables"][parts[1]]
        if isinstance(table, dict) and "id" in table:
            return f" (table {table['id']})"
    return ""


def _build_table(path: Path, paper: str, entry: dict[str, Any]) -> TableSpec:
    where = f"{path.name}: table {entry['id']}"
    reference = None
    if "reference" in entry:
        ref = entry["reference"]
        reference = Reference(select=ref["select"], on=ref.get("on"), statistic=ref.get("statistic", "best_on_dev"),
                              value=parse_value(ref["value"], f"{where}, reference") if "value" in ref else None)
    spec = TableSpec(
        id=entry["id"],
        paper=paper,
        title=entry["title"],
        kind=entry["kind"],
        source=path,
        caption=entry.get("caption", ""),
        notes=entry.get("notes", ""),
        statistic=entry.get("statistic", "best_on_dev"),
        value=parse_value(entry.get("value", DEFAULT_VALUE), where),
        spread=entry.get("spread"),
        figure=entry.get("figure"),
        figure_panels={k: tuple(v) for k, v in entry["figure_panels"].items()} if "figure_panels" in entry else None,
        measured=entry.get("measured", False),
        decimals=entry.get("decimals", 1),
        select=entry.get("select"),
        reference=reference,
        diagonal=entry.get("diagonal"),
        param=entry.get("param"),
        values=None if entry.get("values", "auto") == "auto" else tuple(entry["values"]),
        rows=_axes(entry.get("rows"), where),
        columns=_axes(entry.get("columns"), where),
        row_axis=entry.get("row_axis"),
        column_axis=entry.get("column_axis"),
        row_groups=entry.get("row_groups"),
        footer_rows=_axes(entry.get("footer_rows"), where) or (),
        row_header=entry.get("row_header", "Row"),
        row_group_label=entry.get("row_group_label", str(entry.get("row_groups", "")).capitalize() or None),
        avg_row=entry.get("avg_row", False),
        avg_column=entry.get("avg_column", False),
        avg_label=entry.get("avg_label", "Avg."),
        published=_published(entry.get("published")),
        published_spread=_published(entry.get("published_spread")),
        published_avg_inconsistent=frozenset((str(r), str(c)) for r, c in entry.get("published_avg_inconsistent", [])),
    )
    _check_cross_references(spec)
    return spec


def _axes(entries: list[dict[str, Any]] | str | None, where: str) -> tuple[Axis, ...] | None:
    if entries is None or entries == "auto":
        return None
    return tuple(Axis(key=str(e["key"]), label=e.get("label", str(e["key"])), match=e.get("match"),
                      tasks_from=e.get("tasks_from"), group=e.get("group"),
                      value=parse_value(e["value"], f"{where}, {e['key']}") if "value" in e else None,
                      statistic=e.get("statistic"), decimals=e.get("decimals")) for e in entries)


def _published(table: dict[Any, dict[Any, float | None]] | None) -> dict[str, dict[str, float | None]] | None:
    if table is None:
        return None
    return {str(row): {str(col): value for col, value in cells.items()} for row, cells in table.items()}


def _check_figure(spec: TableSpec) -> None:
    """``group_lines`` draws the Avg column against the row groups: it needs both, and its panels
    must name row labels the table has."""
    if spec.figure_panels is not None and spec.figure != "group_lines":
        raise TableSpecError(f"{spec.where}: figure_panels only applies to figure: group_lines")
    if spec.figure != "group_lines":
        return
    if not spec.avg_column or spec.rows is None or not any(a.group for a in spec.rows):
        raise TableSpecError(f"{spec.where}: figure group_lines draws the Avg column against the row groups; "
                             f"it needs avg_column: true and explicit rows with a group")
    labels = {a.label for a in spec.rows}
    for panel, wanted in (spec.figure_panels or {}).items():
        unknown = [label for label in wanted if label not in labels]
        if unknown:
            raise TableSpecError(f"{spec.where}: figure_panels.{panel}: {unknown} are not row labels of the table "
                                 f"(labels: {', '.join(sorted(labels))})")


def _check_cross_references(spec: TableSpec) -> None:
    """Keys must be unique and every published number must land on a row and column of the table."""
    if spec.row_groups is not None and spec.rows is not None:
        raise TableSpecError(f"{spec.where}: row_groups only applies to rows: auto (explicit rows name their "
                             f"own group)")
    if spec.row_axis is not None and spec.rows is not None:
        raise TableSpecError(f"{spec.where}: row_axis only applies to rows: auto (explicit rows give a match)")
    if spec.column_axis is not None and spec.columns is not None:
        raise TableSpecError(f"{spec.where}: column_axis only applies to columns: auto")
    _check_figure(spec)
    for name, axes in (("rows", (spec.rows or ()) + spec.footer_rows), ("columns", spec.columns)):
        keys = [a.key for a in axes or ()]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise TableSpecError(f"{spec.where}: duplicate {name} keys: {', '.join(dupes)}")
        if AVG in keys:
            raise TableSpecError(f"{spec.where}: {name} key {AVG!r} is reserved for the Avg {name[:-1]}")
    if spec.published is None:
        if spec.published_avg_inconsistent:
            raise TableSpecError(f"{spec.where}: published_avg_inconsistent given without published numbers")
        if spec.published_spread is not None:
            raise TableSpecError(f"{spec.where}: published_spread given without published numbers")
        return
    if spec.rows is None:
        raise TableSpecError(f"{spec.where}: published numbers need explicit rows, not rows: auto")
    if spec.columns is None and spec.kind != "series":
        raise TableSpecError(f"{spec.where}: published numbers need explicit columns, not columns: auto")
    if spec.kind == "series" and spec.values is None:
        raise TableSpecError(f"{spec.where}: published numbers need explicit values, not values: auto")
    row_keys = [a.key for a in spec.rows + spec.footer_rows] + ([AVG] if spec.avg_row else [])
    col_keys = column_keys(spec) + ([AVG] if spec.avg_column else [])
    for name, published in (("published", spec.published), ("published_spread", spec.published_spread)):
        for row, cells in (published or {}).items():
            if row not in row_keys:
                raise TableSpecError(f"{spec.where}: {name} row {row!r} is not a row of the table "
                                     f"(rows: {', '.join(row_keys)})")
            for col in cells:
                if col not in col_keys:
                    raise TableSpecError(f"{spec.where}: {name}.{row}.{col}: {col!r} is not a column of the "
                                         f"table (columns: {', '.join(col_keys)})")
    for row, col in sorted(spec.published_avg_inconsistent):
        if AVG not in (row, col):
            raise TableSpecError(f"{spec.where}: published_avg_inconsistent names [{row}, {col}], "
                                 f"which is not an Avg cell")
        if spec.published.get(row, {}).get(col) is None:
            raise TableSpecError(f"{spec.where}: published_avg_inconsistent names [{row}, {col}], "
                                 f"which has no published number")


def column_keys(spec: TableSpec) -> list[str]:
    """Column keys in display order (a series' columns are its swept values)."""
    if spec.kind == "series":
        return [value_key(v) for v in spec.values or ()]
    return [a.key for a in spec.columns or ()]


def value_key(value: float) -> str:
    """The column key of a swept value: ``5`` for 5 and 5.0, ``0.5`` for 0.5."""
    return str(int(value)) if float(value).is_integer() else str(value)
