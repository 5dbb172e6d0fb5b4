"""Build the HTML report: gather the compiled tables, the result files and their figures, render one page.

Inputs are what the workflow already wrote: the compiled tables (``deltaspace tables``:
``{id}.vs_paper.csv``, ``{id}.md``, ...) and the results folder (``result.parquet`` of every job, with
``curve.parquet``, ``intrinsic.safetensors`` or ``landscape.png`` beside some of them). Nothing is
recomputed that the tables layer computes: cells, averages and the paper's numbers are read from the
compiled files, and the table specs only supply titles, captions and row groups.

The page is self-contained: CSS inline, every image a ``data:`` URI, no script and no external
reference, so it can be mailed or opened from a cluster's file system without a server.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import yaml

from ..io import atomic_write
from ..provenance import git_commit
from . import plots
from .plots import Figure

MISSING = "—"  # a number we do not have: never shown as 0
WITHIN_GREEN = 2.0  # |ours − paper| ≤ 2 points: green
WITHIN_AMBER = 5.0  # ≤ 5 points: amber; more: red
PAPER_ORDER = ("udt", "ipt", "survey", "decomposition", "quickstart")
OPEN_ROWS = 40  # tables with more rows start collapsed
MAX_PCA_FIGURES = 12
TEMPLATE_DIR = Path(__file__).parent / "templates"
RESULT_FILE, CURVE_FILE, INTRINSIC_FILE, LANDSCAPE_FILE, SYNTHETIC_FILE = (
    "result.parquet", "curve.parquet", "intrinsic.safetensors", "landscape.png", "synthetic-mpc.png")
MAX_HEATMAPS = 12
REPORT_PACKAGES = ("deltaspace", "pandas", "pyarrow", "matplotlib", "seaborn", "jinja2", "numpy")


class ReportError(ValueError):
    """Inputs the report cannot be built from (a folder that does not exist, an unreadable config)."""


# ====================================================================== views the template reads


@dataclass
class CellView:
    ours: str
    paper: str
    diff: str
    level: str  # ok | warn | bad | none (colour of the difference)
    note: str = ""


@dataclass
class RowView:
    key: str
    group: str
    label: str
    cells: list[CellView]
    is_avg: bool = False
    is_footer: bool = False  # a row after Avg that is not averaged (e.g. |θ|)


@dataclass
class TableView:
    id: str
    paper: str
    title: str
    caption: str
    kind: str
    decimals: int
    row_header: str
    group_header: str
    columns: list[tuple[str, str]]
    rows: list[RowView]
    has_paper: bool
    notes: list[str]
    files: list[str]
    known_spec: bool
    filled: int = 0
    body_cells: int = 0
    paper_numbers: int = 0
    compared: int = 0
    within: int = 0
    mean_abs_diff: float = math.nan
    figure: Figure | None = None
    values: list[float] | None = None  # series tables: the swept values of the columns
    raw: pd.DataFrame | None = field(default=None, repr=False)
    figure_kind: str = ""  # the spec's `figure:` (heatmap | lines | curves): drawn in the section's groups
    spec: Any = field(default=None, repr=False)

    @property
    def anchor(self) -> str:
        return f"table-{self.id}"

    @property
    def status(self) -> str:
        if self.body_cells == 0 or self.filled == 0:
            return "empty"
        return "complete" if self.filled == self.body_cells else "partial"

    @property
    def open(self) -> bool:
        """Start expanded unless empty (the summary line says so) or long."""
        return self.status != "empty" and len(self.rows) <= OPEN_ROWS

    @property
    def has_groups(self) -> bool:
        return any(r.group for r in self.rows)

    @property
    def mean_abs_diff_text(self) -> str:
        return MISSING if math.isnan(self.mean_abs_diff) else f"{self.mean_abs_diff:.{self.decimals}f}"


@dataclass
class FigureGroup:
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class PaperSection:
    id: str
    title: str
    tables: list[TableView] = field(default_factory=list)
    not_compiled: list[tuple[str, str]] = field(default_factory=list)
    experiments: list[str] = field(default_factory=list)
    groups: list[FigureGroup] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return f"paper-{self.id}"

    @property
    def filled(self) -> int:
        return sum(t.filled for t in self.tables)

    @property
    def body_cells(self) -> int:
        return sum(t.body_cells for t in self.tables)

    @property
    def figure_count(self) -> int:
        in_groups = {id(f) for g in self.groups for f in g.figures}
        beside_tables = [t.figure for t in self.tables if t.figure is not None and id(t.figure) not in in_groups]
        return len(in_groups) + len(beside_tables)


@dataclass
class StageTime:
    stage: str
    jobs: int
    rows: int
    wall: str
    gpu_hours: str
    devices: str


@dataclass
class Provenance:
    generated_at: str
    report_commit: str
    results_dirs: list[str]
    tables_dir: str
    config_name: str
    config_text: str
    config_hashes: int
    commits: list[tuple[str, int]]
    versions: list[tuple[str, str]]
    report_versions: list[tuple[str, str]]
    stages: list[StageTime]
    jobs: int
    rows: int
    result_files: int
    problems: list[str]


@dataclass
class Report:
    title: str
    sections: list[PaperSection]
    provenance: Provenance
    thresholds: tuple[float, float] = (WITHIN_GREEN, WITHIN_AMBER)
    missing: str = MISSING

    @property
    def tables(self) -> list[TableView]:
        return [t for s in self.sections for t in s.tables]


# ====================================================================== public entry points


def build_report(results: str | Path | Sequence[str | Path], tables: str | Path, out: str | Path, *,
                 config: str | Path | None = None, title: str | None = None,
                 categories: Mapping[str, str] | str | Path | None = None) -> Path:
    """Gather everything, render the page and write it to ``out`` atomically; returns ``out``."""
    report = gather(results, tables, config=config, title=title, categories=categories)
    html = render(report)
    return write_html(html, out)


def gather(results: str | Path | Sequence[str | Path], tables: str | Path | Sequence[str | Path], *,
           config: str | Path | None = None,
           title: str | None = None, categories: Mapping[str, str] | str | Path | None = None) -> Report:
    """Read the inputs and draw the figures: a :class:`Report` the template renders."""
    result_dirs = [Path(results)] if isinstance(results, (str, Path)) else [Path(r) for r in results]
    tables_dirs = [Path(tables)] if isinstance(tables, (str, Path)) else [Path(t) for t in tables]
    for folder, what in [(d, "results") for d in result_dirs] + [(d, "tables") for d in tables_dirs]:
        if not folder.is_dir():
            raise ReportError(f"{what} folder {folder} does not exist (run the workflow, or "
                              f"`deltaspace tables`, first)")
    problems: list[str] = []
    specs, paper_titles = _load_specs(problems)
    category_map = _category_map(categories)
    inventory = scan_results(result_dirs, problems)
    table_views = [read_table(folder, table_id, specs.get(table_id))
                   for table_id, folder in _table_folders(tables_dirs, problems).items()]
    sections = _sections(table_views, specs, paper_titles, inventory)
    _attach_figures(sections, table_views, inventory, category_map)
    provenance = _provenance(inventory, result_dirs, tables_dirs, config, problems)
    return Report(title or "deltaspace report", sections, provenance)


def render(report: Report) -> str:
    """The page as one HTML string."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
                             autoescape=jinja2.select_autoescape(["html"], default=True),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("index.html").render(report=report)


def write_html(html: str, out: str | Path) -> Path:
    """Write the page atomically, readable by others (see :func:`deltaspace.io.atomic_write`)."""
    return atomic_write(out, lambda tmp: tmp.write_text(html, encoding="utf-8"))


# ====================================================================== compiled tables


def _table_folders(tables_dirs: Sequence[Path], problems: list[str]) -> dict[str, Path]:
    """Table id -> the folder compiled into (several folders: the experiments of config/paper/all.yaml);
    an id compiled in two folders is shown from the first, with a problem line."""
    folders: dict[str, Path] = {}
    for folder in tables_dirs:
        for table_id in _table_ids(folder):
            if table_id in folders:
                problems.append(f"table {table_id} is compiled in both {folders[table_id]} and {folder}; "
                                f"showing {folders[table_id]}")
                continue
            folders[table_id] = folder
    return dict(sorted(folders.items()))


def _table_ids(tables_dir: Path) -> list[str]:
    """Every table id with compiled files in the folder (``{id}.vs_paper.csv`` or ``{id}.parquet``)."""
    ids = {p.name[: -len(".vs_paper.csv")] for p in tables_dir.glob("*.vs_paper.csv")}
    ids |= {p.stem for p in tables_dir.glob("*.parquet")}
    return sorted(ids)


def read_table(tables_dir: str | Path, table_id: str, spec: Any = None) -> TableView:
    """One compiled table as the report shows it: ours beside the paper's, with the difference.

    Reads ``{id}.vs_paper.csv`` (long format: ours, paper and diff per cell, as written by
    :func:`deltaspace.tables.write_table`); without it, the ours-only ``{id}.parquet``. ``spec`` (a
    :class:`deltaspace.tables.TableSpec`, optional) supplies title, caption, decimals and row groups.
    """
    tables_dir = Path(tables_dir)
    decimals = spec.decimals if spec is not None else 1
    versus_path = tables_dir / f"{table_id}.vs_paper.csv"
    if versus_path.exists():
        long = pd.read_csv(versus_path, dtype={"row": str, "column": str, "row_label": str, "column_label": str,
                                               "row_group": str, "part": str},
                           keep_default_na=False, na_values=[""])
    else:
        long = _long_from_display(pd.read_parquet(tables_dir / f"{table_id}.parquet"), spec)
    for column in ("ours", "paper", "diff", "ours_spread", "paper_spread", "decimals"):
        long[column] = pd.to_numeric(long.get(column, pd.Series(math.nan, index=long.index)), errors="coerce")
    if "paper_avg_inconsistent" not in long.columns:
        long["paper_avg_inconsistent"] = False
    long["paper_avg_inconsistent"] = long["paper_avg_inconsistent"].astype(str).str.lower().eq("true")
    if "part" not in long.columns:  # files written before footer rows existed: avg or body
        long["part"] = np.where(long["row"] == "avg", "avg", "body")
    long["part"] = long["part"].fillna("body").astype(str)

    groups = {a.key: a.group or "" for a in ((spec.rows or ()) + tuple(spec.footer_rows))} if spec is not None else {}
    if "row_group" in long.columns:  # auto rows in blocks (row_groups): the compiled file knows the groups
        groups.update({r: str(g) for r, g in zip(long["row"], long["row_group"].fillna("")) if str(g)})
    row_order = list(dict.fromkeys(long["row"]))
    column_order = list(dict.fromkeys(long["column"]))
    column_labels = dict(zip(long["column"], long["column_label"]))
    row_labels = dict(zip(long["row"], long["row_label"]))
    by_cell = {(r.row, r.column): r for r in long.itertuples(index=False)}
    has_paper = bool(long["paper"].notna().any())

    footer_rows = set(long.loc[long["part"] == "footer", "row"])
    rows: list[RowView] = []
    previous_group = None
    for row in row_order:
        group = groups.get(row, "")
        shown_group = group if group != previous_group else ""
        previous_group = group
        cells = [_cell(by_cell.get((row, col)), decimals) for col in column_order]
        rows.append(RowView(row, shown_group, str(row_labels.get(row, row)), cells, is_avg=row == "avg",
                            is_footer=row in footer_rows))

    body = long[(long["part"] == "body") & (long["column"] != "avg")]
    compared = long[long["diff"].notna()]
    view = TableView(
        id=table_id,
        paper=spec.paper if spec is not None else table_id.split("-")[0],
        title=spec.title if spec is not None else table_id,
        caption=spec.caption if spec is not None else "",
        kind=spec.kind if spec is not None else "unknown",
        decimals=decimals,
        row_header=spec.row_header if spec is not None else "Row",
        group_header=(spec.row_group_label or "") if spec is not None else "",
        columns=[(c, str(column_labels.get(c, c))) for c in column_order],
        rows=rows,
        has_paper=has_paper,
        notes=_compile_notes(tables_dir / f"{table_id}.md"),
        files=sorted(p.name for p in tables_dir.glob(f"{table_id}.*") if p.name[len(table_id) + 1:].split(".")[0]
                     in ("parquet", "csv", "md", "tex", "vs_paper")),
        known_spec=spec is not None,
        filled=int(body["ours"].notna().sum()),
        body_cells=len(body),
        paper_numbers=int(long["paper"].notna().sum()),
        compared=len(compared),
        within=int((compared["diff"].abs() <= WITHIN_GREEN + 1e-9).sum()),
        mean_abs_diff=float(compared["diff"].abs().mean()) if len(compared) else math.nan,
        raw=long,
        figure_kind=(getattr(spec, "figure", None) or "") if spec is not None else "",
        spec=spec,
    )
    if view.kind == "series":
        view.values = [_as_float(c) for c in column_order]
    if not view.known_spec:
        view.notes.insert(0, f"No table spec named {table_id!r} is installed; shown from its compiled files only.")
    return view


def _cell(line: Any, decimals: int) -> CellView:
    if line is None:
        return CellView(MISSING, MISSING, MISSING, "none")
    ours, paper, diff = line.ours, line.paper, line.diff
    if not math.isnan(getattr(line, "decimals", math.nan)):
        decimals = int(line.decimals)  # the cell's own digits (a row or column of counts, of steps)
    if math.isnan(diff) and not (math.isnan(ours) or math.isnan(paper)):
        diff = ours - paper
    level = "none"
    if not math.isnan(diff):
        level = "ok" if abs(diff) <= WITHIN_GREEN + 1e-9 else "warn" if abs(diff) <= WITHIN_AMBER + 1e-9 else "bad"
    note = ("The paper's printed average is not the mean of its own printed cells."
            if line.paper_avg_inconsistent else "")
    return CellView(_with_spread(ours, getattr(line, "ours_spread", math.nan), decimals),
                    _with_spread(paper, getattr(line, "paper_spread", math.nan), decimals) + (" †" if note else ""),
                    _fmt(diff, decimals, signed=True), level, note)


def _with_spread(value: float, spread: float, decimals: int) -> str:
    """``mean ± sd`` for tables with a spread (one seed: the mean alone)."""
    text = _fmt(value, decimals)
    if text != MISSING and spread is not None and not math.isnan(spread):
        text += f" ± {_fmt(spread, decimals)}"
    return text


def _fmt(value: float, decimals: int, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return MISSING
    if signed and round(value, decimals) == 0:
        return f"±{0:.{decimals}f}"  # no "−0.0": a difference that rounds away has no sign
    text = f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"
    return text.replace("-", "−")


def _long_from_display(display: pd.DataFrame, spec: Any) -> pd.DataFrame:
    """Ours-only long format from a display frame (``key``, row group and header, one column per label)."""
    if spec is not None:
        lead = {"key", spec.row_header, spec.row_group_label}
        label_column = spec.row_header if spec.row_header in display.columns else None
    else:  # no spec: the text columns are the row labels, the numeric ones the table's columns
        lead = {"key"} | {c for c in display.columns if not pd.api.types.is_numeric_dtype(display[c])}
        texts = [c for c in display.columns if c in lead and c != "key"]
        label_column = texts[-1] if texts else None
    columns = [c for c in display.columns if c not in lead]
    lines = []
    for _, row in display.iterrows():
        key = str(row["key"]) if "key" in display.columns else str(row.name)
        for col in columns:
            lines.append({"row": key, "row_label": str(row[label_column]) if label_column else key,
                          "column": str(col), "column_label": str(col), "ours": row[col],
                          "paper": math.nan, "diff": math.nan})
    return pd.DataFrame(lines, columns=["row", "row_label", "column", "column_label", "ours", "paper", "diff"])


def _compile_notes(markdown_path: Path) -> list[str]:
    """The notes the tables layer printed under the table (bullet lines of ``{id}.md``)."""
    if not markdown_path.exists():
        return []
    return [line[2:].strip() for line in markdown_path.read_text(encoding="utf-8").splitlines()
            if line.startswith("- ") and line[2:].strip()]


def _as_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _load_specs(problems: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Installed table specs by id, and paper titles by paper name. A broken spec file costs the
    report its titles, not the report itself."""
    from ..tables import TablesError, load_specs

    try:
        specs = load_specs()
    except TablesError as exc:
        problems.append(f"table specs could not be loaded ({exc}); tables are shown from their files only")
        return {}, {}
    titles: dict[str, str] = {}
    for source in sorted({s.source for s in specs.values()}):
        try:
            data = yaml.load(source.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            titles[data["paper"]] = data.get("title", data["paper"])
        except (OSError, yaml.YAMLError, KeyError, TypeError):
            continue
    return specs, titles


# ====================================================================== results folder


@dataclass
class Inventory:
    """Every result row (with the folder of its job) and the files the figures read."""

    rows: pd.DataFrame
    folders: dict[Path, set[str]]  # folder -> names of the report-relevant files it holds
    results_by_folder: dict[Path, pd.DataFrame]
    root_of: dict[Path, Path]
    root_experiments: dict[Path, set[str]] = field(default_factory=dict)

    def experiment_of(self, folder: Path, known: Iterable[str] = ()) -> str | None:
        rows = self.results_by_folder.get(folder)
        if rows is not None and "experiment" in rows.columns and rows["experiment"].notna().any():
            return str(rows["experiment"].dropna().iloc[0])
        known = set(known)
        for part in reversed(folder.parts):
            if part in known:
                return part
        # a folder without results (a landscape's) under a results root that holds one experiment
        root = self.root_of.get(folder)
        experiments = self.root_experiments.get(root) if root is not None else None
        return next(iter(experiments)) if experiments and len(experiments) == 1 else None

    def relative(self, path: Path) -> str:
        root = self.root_of.get(path if path.is_dir() else path.parent)
        try:
            return str(path.relative_to(root)) if root is not None else str(path)
        except ValueError:
            return str(path)


def scan_results(result_dirs: Sequence[Path], problems: list[str]) -> Inventory:
    """Walk the results folders once; read every ``result.parquet``."""
    wanted = {RESULT_FILE, CURVE_FILE, INTRINSIC_FILE, LANDSCAPE_FILE, SYNTHETIC_FILE}
    folders: dict[Path, set[str]] = {}
    root_of: dict[Path, Path] = {}
    for root in result_dirs:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            names = wanted.intersection(filenames)
            if names:
                folder = Path(dirpath)
                folders[folder] = names
                root_of[folder] = root
    frames, by_folder = [], {}
    for folder in sorted(folders):
        if RESULT_FILE not in folders[folder]:
            continue
        path = folder / RESULT_FILE
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            problems.append(f"skipped unreadable {path}: {exc}")
            continue
        if ("task" not in frame.columns or "test_metric" not in frame.columns) and "stage" not in frame.columns:
            # a measurement stage (efficiency) names its stage and has no scores; anything else is not a result
            problems.append(f"skipped {path}: not a result file (no task/test_metric column and no stage)")
            continue
        frame = frame.copy()
        frame["_job"] = str(folder)
        by_folder[folder] = frame
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame(columns=["_job"])
    for column in ("dev_metric", "test_metric", "wall_seconds", "d_intrinsic"):
        if column in rows.columns:
            rows[column] = pd.to_numeric(rows[column], errors="coerce")
    root_experiments: dict[Path, set[str]] = defaultdict(set)
    for folder, frame in by_folder.items():
        if "experiment" in frame.columns:
            root_experiments[root_of[folder]].update(str(e) for e in frame["experiment"].dropna().unique())
    return Inventory(rows, folders, by_folder, root_of, dict(root_experiments))


# ====================================================================== sections and figures


def _sections(tables: list[TableView], specs: Mapping[str, Any], paper_titles: Mapping[str, str],
              inventory: Inventory) -> list[PaperSection]:
    """One section per paper with compiled tables or results, in the design's paper order; results
    of experiments no spec selects get an "other" section."""
    experiments_of = _paper_experiments(specs)
    present_papers = {t.paper for t in tables}
    result_experiments = set()
    if "experiment" in inventory.rows.columns:
        result_experiments = {str(e) for e in inventory.rows["experiment"].dropna().unique()}
    for paper, experiments in experiments_of.items():
        if result_experiments & set(experiments):
            present_papers.add(paper)
    order = [p for p in PAPER_ORDER if p in present_papers] + sorted(present_papers - set(PAPER_ORDER))
    sections = []
    compiled = {t.id for t in tables}
    for paper in order:
        section = PaperSection(paper, paper_titles.get(paper, paper))
        spec_order = [s.id for s in specs.values() if s.paper == paper]
        rank = {table_id: i for i, table_id in enumerate(spec_order)}
        section.tables = sorted((t for t in tables if t.paper == paper), key=lambda t: (rank.get(t.id, 10**6), t.id))
        section.not_compiled = [(s.id, s.title) for s in specs.values() if s.paper == paper and s.id not in compiled]
        section.experiments = sorted(experiments_of.get(paper, []))
        sections.append(section)
    claimed = {e for s in sections for e in s.experiments}
    leftover = sorted(result_experiments - claimed)
    unlabelled = len(inventory.rows) > 0 and ("experiment" not in inventory.rows.columns
                                              or bool(inventory.rows["experiment"].isna().any()))
    # figure files (a landscape folder has no result.parquet) whose experiment no section claims
    figure_names = {LANDSCAPE_FILE, INTRINSIC_FILE, CURVE_FILE, SYNTHETIC_FILE}
    for folder, names in inventory.folders.items():
        if names & figure_names:
            experiment = inventory.experiment_of(folder, claimed)
            if experiment is None:
                unlabelled = True
            elif experiment not in claimed and experiment not in leftover:
                leftover.append(experiment)
    leftover.sort()
    if leftover or unlabelled:
        other = PaperSection("other", "Other results (experiments no table spec selects)")
        other.experiments = leftover + ([""] if unlabelled else [])
        sections.append(other)
    return sections


def _paper_experiments(specs: Mapping[str, Any]) -> dict[str, list[str]]:
    """paper -> the experiment names its specs select."""
    found: dict[str, set[str]] = defaultdict(set)
    for spec in specs.values():
        experiment = (spec.select or {}).get("experiment")
        values = experiment if isinstance(experiment, list) else [experiment]
        found[spec.paper].update(str(v) for v in values if v is not None)
    # an experiment selected by several papers' specs belongs to the first in PAPER_ORDER
    owner: dict[str, str] = {}
    for paper in [p for p in PAPER_ORDER if p in found] + sorted(set(found) - set(PAPER_ORDER)):
        for experiment in sorted(found[paper]):
            owner.setdefault(experiment, paper)
    result: dict[str, list[str]] = defaultdict(list)
    for experiment, paper in owner.items():
        result[paper].append(experiment)
    return dict(result)


def _attach_figures(sections: list[PaperSection], tables: list[TableView], inventory: Inventory,
                    category_map: Mapping[str, str]) -> None:
    known_experiments = {e for s in sections for e in s.experiments if e}
    for table in tables:
        if table.kind != "series" and not table.figure_kind:
            table.figure = _average_figure(table)
    for section in sections:
        experiments = set(section.experiments)
        in_section = _membership(experiments, other=section.id == "other")
        rows = _rows_of(inventory.rows, experiments, section.id == "other")
        section.groups = [
            _landscape_group(section, inventory, in_section, known_experiments),
            _d_intrinsic_group(section, rows),
            _pca_group(section, inventory, in_section, known_experiments, category_map),
            _curve_group(section, inventory, in_section, known_experiments),
        ]
        # groups of the survey and decomposition studies: only where their tables or files exist
        section.groups += [g for g in (_convergence_group(section, inventory), _transfer_group(section),
                                       _memory_group(section), _group_lines_group(section),
                                       _synthetic_group(section, inventory, in_section, known_experiments))
                           if g is not None]


def _membership(experiments: set[str], other: bool):
    """Whether a folder's experiment (None: unknown) belongs to a section; "other" takes the unknown."""
    if other:
        return lambda experiment: experiment is None or experiment == "" or experiment in experiments
    return lambda experiment: experiment is not None and experiment in experiments


def _rows_of(rows: pd.DataFrame, experiments: set[str], other: bool) -> pd.DataFrame:
    if "experiment" not in rows.columns:
        return rows if other else rows.iloc[0:0]
    mask = rows["experiment"].astype("string").isin(experiments)
    if other:
        mask |= rows["experiment"].isna()
    return rows[mask.fillna(False).astype(bool)]


def _average_figure(table: TableView) -> Figure | None:
    """Bars of the Avg row for tables that have one."""
    if table.raw is None or "avg" not in set(table.raw["row"]):
        return None
    avg = table.raw[(table.raw["row"] == "avg") & (table.raw["column"] != "avg")]
    if avg.empty or len(avg) > 24:
        return None
    relative = table.kind.startswith("relative") or table.kind == "transfer_matrix"
    return plots.average_bars(list(avg["column_label"]), avg["ours"].tolist(), avg["paper"].tolist(),
                              f"{table.id}: Avg row", "relative performance (%)" if relative else "score")


def _inline_pngs(group: FigureGroup, inventory: Inventory, name: str, experiment_of, in_section, caption) -> None:
    """Add every ``name`` image under the results whose experiment is in this section to ``group``
    (a file that cannot be read becomes a note, not a failure)."""
    for folder in sorted(f for f, names in inventory.folders.items() if name in names):
        if not in_section(experiment_of(folder)):
            continue
        path = folder / name
        try:
            uri = plots.png_uri(path.read_bytes())
        except (OSError, ValueError) as exc:
            group.notes.append(f"{inventory.relative(path)}: not inlined ({exc}).")
            continue
        group.figures.append(Figure(inventory.relative(folder), uri, caption(inventory.relative(path))))


def _landscape_group(section: PaperSection, inventory: Inventory, in_section, known: set[str]) -> FigureGroup:
    group = FigureGroup("Performance landscapes (unified-dt Figure 2)")
    _inline_pngs(group, inventory, LANDSCAPE_FILE, lambda folder: _landscape_experiment(inventory, folder, known),
                 in_section, lambda path: f"P(α, β) around the three subspace solutions, inlined from {path}.")
    if not group.figures and not group.notes:
        group.notes.append(f"No {LANDSCAPE_FILE} under the results for this paper's experiments "
                           f"(`deltaspace landscape` writes one).")
    return group


def _landscape_experiment(inventory: Inventory, folder: Path, known: set[str]) -> str | None:
    experiment = inventory.experiment_of(folder, known)
    if experiment is None and (folder / "grid.parquet").exists():
        try:
            grid = pd.read_parquet(folder / "grid.parquet", columns=None)
            if "experiment" in grid.columns and grid["experiment"].notna().any():
                experiment = str(grid["experiment"].dropna().iloc[0])
        except (OSError, ValueError):
            pass
    return experiment


def _d_intrinsic_group(section: PaperSection, rows: pd.DataFrame) -> FigureGroup:
    """IPT Figure 3: the compiled series tables (ours with the paper's points); without them, the
    curves straight from result rows that carry ``d_intrinsic``."""
    group = FigureGroup("d_I curves (IPT Figure 3)")
    for table in section.tables:
        if table.kind != "series" or table.raw is None:
            continue
        series = []
        body = table.raw[table.raw["column"] != "avg"]
        for row in dict.fromkeys(body["row"]):
            part = body[body["row"] == row]
            series.append((str(part["row_label"].iloc[0]), part["ours"].tolist(), part["paper"].tolist()))
        relative = "relative" in table.title.lower() or "E_rel" in table.caption
        figure = plots.series_lines(table.values or [], series, table.title, "d_I (intrinsic dimension)",
                                    "relative performance (%)" if relative else "score")
        if figure is None:
            group.notes.append(f"{table.id}: no numbers of ours yet.")
        else:
            table.figure = figure
            group.figures.append(figure)
    if group.figures:
        return group
    if "d_intrinsic" not in rows.columns or rows["d_intrinsic"].notna().sum() == 0:
        if not group.notes:
            group.notes.append("No result rows with a d_intrinsic column for this paper's experiments.")
        return group
    frame, ylabel, note = d_intrinsic_frame(rows)
    figure = plots.d_intrinsic_curves(frame, f"{section.id}: performance vs d_I", ylabel)
    if figure is not None:
        group.figures.append(figure)
    if note:
        group.notes.append(note)
    return group


def d_intrinsic_frame(rows: pd.DataFrame, reference_method: str = "prompt") -> tuple[pd.DataFrame, str, str]:
    """Mean over tasks of best-on-dev test scores per (setting, series, d_I), relative to the
    stage-0 ``reference_method`` run of the same experiment and task when there is one.

    Returns the frame for :func:`plots.d_intrinsic_curves`, the y label and a note.
    """
    from ..tables.select import best_on_dev

    swept = rows[rows["d_intrinsic"].notna()].copy()
    stage0 = rows.iloc[0:0]
    if "stage" in rows.columns and "method" in rows.columns:
        stage0 = rows[(rows["stage"] == "stage0") & (rows["method"] == reference_method)]
    relative = not stage0.empty
    swept["panel"] = swept["setting"].astype("string").fillna("all") if "setting" in swept.columns else "all"
    if "stage" in swept.columns:
        series = swept["stage"].astype("string").fillna("?")
    else:
        series = pd.Series("runs", index=swept.index, dtype="string")
    if "subset" in swept.columns:
        subset = swept["subset"].astype("string")
        series = series.where(subset.isna(), series + " / " + subset.fillna(""))
    swept["series"] = series
    experiment = swept["experiment"].astype("string").fillna("") if "experiment" in swept.columns else ""
    swept["_experiment"] = experiment
    references: dict[tuple[str, str], float] = {}
    if relative:
        exp0 = stage0["experiment"].astype("string").fillna("") if "experiment" in stage0.columns else ""
        for (exp, task), runs in stage0.assign(_experiment=exp0).groupby(["_experiment", "task"]):
            references[(str(exp), str(task))] = best_on_dev(runs)
    lines, skipped = [], 0
    for (panel, name, d), cell in swept.groupby(["panel", "series", "d_intrinsic"]):
        values = []
        for (exp, task), runs in cell.groupby(["_experiment", "task"]):
            value = best_on_dev(runs)
            if math.isnan(value):
                continue
            if relative:
                ref = references.get((str(exp), str(task)), math.nan)
                if not ref > 0:
                    skipped += 1
                    continue
                value = 100.0 * value / ref
            values.append(value)
        if values:
            lines.append({"panel": str(panel), "series": str(name), "d_intrinsic": float(d),
                          "value": float(np.mean(values)), "tasks": len(values)})
    frame = pd.DataFrame(lines, columns=["panel", "series", "d_intrinsic", "value", "tasks"])
    ylabel = f"relative to {reference_method} tuning (%)" if relative else "test score"
    note = ""
    if relative and skipped:
        note = f"{skipped} (task, d_I) point(s) left out: no positive stage-0 {reference_method} score for the task."
    elif not relative:
        note = f"No stage-0 {reference_method} runs found: absolute test scores are shown, not relative ones."
    return frame, ylabel, note


def _pca_group(section: PaperSection, inventory: Inventory, in_section, known: set[str],
               category_map: Mapping[str, str]) -> FigureGroup:
    """IPT Figure 7: 2-D PCA of the intrinsic vectors, one plot per (experiment, setting, dimension)."""
    group = FigureGroup("PCA of intrinsic vectors by task category (IPT Figure 7)")
    points, vectors, skipped = [], [], Counter()
    for folder in sorted(f for f, names in inventory.folders.items() if INTRINSIC_FILE in names):
        experiment = inventory.experiment_of(folder, known)
        if not in_section(experiment):
            continue
        rows = inventory.results_by_folder.get(folder)
        if rows is None or rows.empty:
            skipped["no result.parquet beside it (task unknown)"] += 1
            continue
        try:
            tensors = load_vectors(folder / INTRINSIC_FILE)
        except Exception as exc:  # noqa: BLE001 — a corrupt file must not sink the report
            group.notes.append(f"{inventory.relative(folder / INTRINSIC_FILE)}: unreadable ({exc}).")
            continue
        first = rows.iloc[0]
        for key, vector in tensors.items():
            if vector.ndim != 1:
                skipped[f"tensor {key!r} is not 1-D"] += 1
                continue
            points.append({"experiment": experiment or "", "task": str(first["task"]),
                           "setting": _text(first.get("setting")), "subset": _text(first.get("subset")) or "—",
                           "method": _text(first.get("source_method")) or _text(first.get("method")) or "—",
                           "key": key, "dim": int(vector.shape[0]),
                           "category": _category(first, category_map)})
            vectors.append(vector.astype(float))
    for reason, count in skipped.items():
        group.notes.append(f"{count} vector file(s) or tensor(s) skipped: {reason}.")
    if not points:
        group.notes.append(f"No {INTRINSIC_FILE} with 1-D vectors under the results for this paper's experiments.")
        return group
    frame = pd.DataFrame(points)
    if (frame["category"] == "unknown").all():
        group.notes.append("Task categories are unknown (no category column, map or registry entry): every point "
                           "is coloured 'unknown'. Pass --categories FILE to colour by category.")
    drawn = 0
    for (experiment, setting, dim), part in frame.groupby(["experiment", "setting", "dim"], sort=True):
        label = " / ".join(p for p in (str(experiment), str(setting), f"d = {dim}") if p)
        if len(part) < 3:
            group.notes.append(f"{label}: {len(part)} vector(s); PCA needs at least 3.")
            continue
        if drawn >= MAX_PCA_FIGURES:
            group.notes.append(f"{label}: not drawn (more than {MAX_PCA_FIGURES} PCA plots).")
            continue
        style_label = next((c for c in ("subset", "method", "key") if part[c].nunique() > 1), "key")
        figure = plots.intrinsic_pca(part, np.stack([vectors[i] for i in part.index]), f"PCA: {label}", style_label)
        if figure is not None:
            group.figures.append(figure)
            drawn += 1
    return group


def load_vectors(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as a NumPy array (bfloat16 goes through torch)."""
    try:
        from safetensors.numpy import load_file

        return dict(load_file(str(path)))
    except (TypeError, ValueError):
        from safetensors.torch import load_file as load_torch

        return {k: v.float().numpy() for k, v in load_torch(str(path)).items()}


def _category(row: pd.Series, category_map: Mapping[str, str]) -> str:
    if "category" in row.index and isinstance(row["category"], str) and row["category"]:
        return row["category"]
    task = str(row["task"])
    if task in category_map:
        return str(category_map[task])
    return _registry_category(task)


_REGISTRY: list[Any] = []


def _registry_category(task: str) -> str:
    """The task's category from the task registry (config/tasks), or 'unknown'."""
    if not _REGISTRY:
        try:
            from ..data.registry import load_registry

            _REGISTRY.append(load_registry())
        except Exception:  # noqa: BLE001 — no registry here: categories stay unknown
            _REGISTRY.append(None)
    registry = _REGISTRY[0]
    if registry is None:
        return "unknown"
    try:
        return str(registry.get(task).category)
    except Exception:  # noqa: BLE001 — a task the registry does not know
        return "unknown"


def _curve_group(section: PaperSection, inventory: Inventory, in_section, known: set[str]) -> FigureGroup:
    """Training curves: dev metric and loss against step for every curve.parquet beside a result."""
    group = FigureGroup("Training curves")
    frames, orphans = [], 0
    for folder in sorted(f for f, names in inventory.folders.items() if CURVE_FILE in names):
        experiment = inventory.experiment_of(folder, known)
        if not in_section(experiment):
            continue
        rows = inventory.results_by_folder.get(folder)
        if rows is None or rows.empty:
            orphans += 1
            continue
        try:
            curve = pd.read_parquet(folder / CURVE_FILE)
        except (OSError, ValueError) as exc:
            group.notes.append(f"{inventory.relative(folder / CURVE_FILE)}: unreadable ({exc}).")
            continue
        if "step" not in curve.columns or curve.empty:
            continue
        first = rows.iloc[0]
        method = _text(first.get("source_method")) or _text(first.get("method")) or "?"
        stages = "+".join(sorted(rows["stage"].dropna().astype(str).unique())) if "stage" in rows.columns else "?"
        keep = [c for c in ("step", "dev_metric", "loss") if c in curve.columns]
        frame = curve[keep].copy()
        frame["task"] = str(first["task"])
        frame["method"] = method
        frame["run"] = inventory.relative(folder)
        frame["group"] = " / ".join(p for p in (experiment or "", stages, _text(first.get("setting"))) if p)
        frames.append(frame)
    if orphans:
        group.notes.append(f"{orphans} {CURVE_FILE} file(s) without a {RESULT_FILE} beside them were skipped.")
    if not frames:
        group.notes.append(f"No {CURVE_FILE} beside a {RESULT_FILE} for this paper's experiments.")
        return group
    curves = pd.concat(frames, ignore_index=True)
    for column in ("step", "dev_metric", "loss"):
        if column in curves.columns:
            curves[column] = pd.to_numeric(curves[column], errors="coerce")
    for name, part in curves.groupby("group", sort=True):
        group.figures.extend(plots.training_curves(part, str(name)))
    return group


def _convergence_group(section: PaperSection, inventory: Inventory) -> FigureGroup | None:
    """Survey Figures 6-8 for every compiled table drawn as ``curves``: per task, the dev curve of the
    run each method selects on dev (the run the table reports), one line per method."""
    from ..tables.select import filter_rows

    tables = [t for t in section.tables if t.figure_kind == "curves" and t.spec is not None]
    if not tables:
        return None
    group = FigureGroup("Convergence: dev score vs step (survey Figures 6-8)")
    rows = inventory.rows
    for table in tables:
        runs = filter_rows(rows, table.spec.select or {}) if len(rows) else rows
        methods = _column_methods(table.spec)
        if methods and "method" in runs.columns:
            runs = runs[runs["method"].isin(methods)]
        if runs.empty or "method" not in runs.columns:
            group.notes.append(f"{table.id}: no runs yet.")
            continue
        frames, without = [], 0
        for (task, method), cell in runs.groupby(["task", "method"], sort=True):
            best = best_run(cell)
            if best is None:
                continue
            curve_path = Path(str(best["_job"])) / CURVE_FILE
            try:
                curve = pd.read_parquet(curve_path, columns=["step", "dev_metric"])
            except (OSError, ValueError, KeyError):
                without += 1
                continue
            frames.append(curve.assign(task=str(task), method=str(method)))
        if without:
            group.notes.append(f"{table.id}: {without} selected run(s) have no readable {CURVE_FILE}.")
        figure = plots.convergence_curves(pd.concat(frames, ignore_index=True), table.title) if frames else None
        if figure is None:
            group.notes.append(f"{table.id}: no curves to draw yet.")
        else:
            group.figures.append(figure)
    return group


def _column_methods(spec: Any) -> list[str]:
    """The methods a spec's columns select (empty: any)."""
    found: list[str] = []
    for axis in spec.columns or ():
        method = (axis.match or {}).get("method")
        for m in method if isinstance(method, list) else [method]:
            if m is not None and m not in found:
                found.append(str(m))
    return found


def best_run(runs: pd.DataFrame) -> pd.Series | None:
    """The run a best-on-dev cell reports: highest dev score, ties to the lowest seed, then lr
    (:func:`deltaspace.tables.select.best_on_dev`)."""
    from ..tables.select import TIE_BREAK

    runs = runs[runs["dev_metric"].notna()] if "dev_metric" in runs.columns else runs.iloc[0:0]
    if runs.empty:
        return None
    ties = [c for c in TIE_BREAK if c in runs.columns]
    ordered = runs.sort_values(["dev_metric", *ties], ascending=[False, *([True] * len(ties))], kind="stable")
    return ordered.iloc[0]


def _body(table: TableView) -> pd.DataFrame:
    raw = table.raw if table.raw is not None else pd.DataFrame(columns=["row", "column", "part"])
    body = raw[(raw["part"] == "body") & (raw["column"] != "avg")].copy()
    body["row_group"] = body["row_group"].fillna("").astype(str) if "row_group" in body.columns else ""
    groups = {r.key: r.group for r in (table.spec.rows or ())} if table.spec is not None and table.spec.rows else {}
    if groups:
        body["row_group"] = [groups.get(r) or g for r, g in zip(body["row"], body["row_group"])]
    return body


def _transfer_group(section: PaperSection) -> FigureGroup | None:
    """Survey Figure 12: one heatmap per block of rows (per method) of every table drawn as ``heatmap``."""
    tables = [t for t in section.tables if t.figure_kind == "heatmap"]
    if not tables:
        return None
    group = FigureGroup("Task-level transferability (survey Figure 12)")
    for table in tables:
        body = _body(table)
        drawn = 0
        for name, block in body.groupby("row_group", sort=False):
            matrix = block.pivot_table(index="row_label", columns="column_label", values="ours", aggfunc="first",
                                       dropna=False, sort=False)
            matrix = matrix.reindex(index=list(dict.fromkeys(block["row_label"])),
                                    columns=list(dict.fromkeys(block["column_label"])))
            if drawn >= MAX_HEATMAPS:
                group.notes.append(f"{table.id}: block {name} not drawn (more than {MAX_HEATMAPS}).")
                continue
            figure = plots.heatmap(matrix, f"{table.id}: {name}" if name else table.id)
            if figure is None:
                group.notes.append(f"{table.id}{': ' + str(name) if name else ''}: no numbers yet.")
            else:
                group.figures.append(figure)
                drawn += 1
        if body.empty:
            group.notes.append(f"{table.id}: no rows yet (no transfer results).")
    return group


def _memory_group(section: PaperSection) -> FigureGroup | None:
    """Survey Figure 9: every table drawn as ``lines`` (rows = methods in blocks per backbone, columns =
    batch sizes), as peak memory against batch size."""
    tables = [t for t in section.tables if t.figure_kind == "lines"]
    if not tables:
        return None
    group = FigureGroup("Memory: peak memory vs batch size (survey Figure 9)")
    for table in tables:
        body = _body(table)
        frame = pd.DataFrame({"panel": body["row_group"], "series": body["row_label"].astype(str),
                              "x": body["column_label"].astype(str), "value": body["ours"]})
        unit = table.title[table.title.rfind("(") + 1: -1] if table.title.endswith(")") else "value"
        figure = plots.memory_lines(frame, table.title, f"peak memory ({unit})")
        if figure is None:
            group.notes.append(f"{table.id}: no measurements yet.")
        else:
            group.figures.append(figure)
    return group


SPREAD_LABELS = {"seed_std": "the sd over seeds", "seed_sem": "the standard error over seeds (SEM)"}


def _group_lines_group(section: PaperSection) -> FigureGroup | None:
    """Decomposition Figures 4-5: every table drawn as ``group_lines``, its Avg column (All Avg.)
    against its row groups (the rank), with the ± spread (SEM over the 5 seeds) as error bars."""
    tables = [t for t in section.tables if t.figure_kind == "group_lines" and t.spec is not None]
    if not tables:
        return None
    group = FigureGroup("Average score vs rank, with error bars (decomposition Figures 4-5)")
    for table in tables:
        raw = table.raw if table.raw is not None else pd.DataFrame(columns=["row", "column", "part"])
        avg = raw[(raw["part"] == "body") & (raw["column"] == "avg")]
        groups = {r.key: r.group or "" for r in table.spec.rows}
        frame = pd.DataFrame({"series": avg["row_label"].astype(str), "x": [groups.get(r, "") for r in avg["row"]],
                              "value": avg["ours"], "spread": avg["ours_spread"], "paper": avg["paper"]})
        panels = list((table.spec.figure_panels or {table.title: list(dict.fromkeys(frame["series"]))}).items())
        figure = plots.group_lines(frame, panels, table.title, table.group_header or "group",
                                   table.spec.avg_label, SPREAD_LABELS.get(table.spec.spread or "", "no spread"))
        if figure is None:
            group.notes.append(f"{table.id}: no averages yet (every row needs all of its columns).")
        else:
            group.figures.append(figure)
    return group


def _synthetic_group(section: PaperSection, inventory: Inventory, in_section, known: set[str]) -> FigureGroup | None:
    """The decomposition paper's synthetic study: every synthetic-mpc.png of this section's experiments."""
    group = FigureGroup("Synthetic MPC study: error vs rank per decomposed form (decomposition paper, Props 1-2)")
    _inline_pngs(group, inventory, SYNTHETIC_FILE, lambda folder: inventory.experiment_of(folder, known), in_section,
                 lambda path: "Relative error of each form at matched rank (mean over seeds) above the Eckart-Young "
                              f"bound, the gap to it, and the rank-free forms; inlined from {path} "
                              "(deltaspace synthetic-mpc).")
    return group if group.figures or group.notes else None


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    return str(value)


def _category_map(categories: Mapping[str, str] | str | Path | None) -> dict[str, str]:
    """task -> category from a mapping or a file: YAML/JSON mapping, or CSV with task,category columns."""
    if categories is None:
        return {}
    if isinstance(categories, Mapping):
        return {str(k): str(v) for k, v in categories.items()}
    path = Path(categories)
    try:
        if path.suffix.lower() == ".csv":
            frame = pd.read_csv(path)
            if not {"task", "category"} <= set(frame.columns):
                raise ReportError(f"{path}: a category CSV needs columns task and category")
            return dict(zip(frame["task"].astype(str), frame["category"].astype(str)))
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ReportError(f"cannot read category map {path}: {exc}") from None
    if not isinstance(data, Mapping):
        raise ReportError(f"{path}: a category map must map task names to categories")
    return {str(k): str(v) for k, v in data.items()}


# ====================================================================== provenance


def _provenance(inventory: Inventory, result_dirs: Sequence[Path], tables_dirs: Sequence[Path],
                config: str | Path | None,
                problems: list[str]) -> Provenance:
    rows = inventory.rows
    config_name, config_text = "", ""
    if config is not None:
        path = Path(config)
        try:
            config_text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ReportError(f"cannot read config {path}: {exc.strerror}") from None
        config_name = str(path)
        if path.suffix.lower() == ".json":
            try:
                config_text = json.dumps(json.loads(config_text), indent=2, sort_keys=True)
            except json.JSONDecodeError:
                pass
    commits = Counter(rows["git_commit"].dropna().astype(str)) if "git_commit" in rows.columns else Counter()
    return Provenance(
        generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        report_commit=git_commit(),
        results_dirs=[str(d) for d in result_dirs],
        tables_dir=", ".join(str(d) for d in tables_dirs),
        config_name=config_name,
        config_text=config_text,
        config_hashes=int(rows["config_hash"].nunique()) if "config_hash" in rows.columns else 0,
        commits=commits.most_common(),
        versions=_versions(rows),
        report_versions=[(name, _version(name)) for name in REPORT_PACKAGES] + [("python", platform.python_version())],
        stages=stage_times(rows),
        jobs=int(rows["_job"].nunique()) if len(rows) else 0,
        rows=len(rows),
        result_files=sum(1 for names in inventory.folders.values() if RESULT_FILE in names),
        problems=problems,
    )


def stage_times(rows: pd.DataFrame) -> list[StageTime]:
    """Wall time and GPU-hours per stage, counting each job once.

    A job's rows share its wall time (``optimize-subspace`` writes one row per target method), so a
    job counts with the largest ``wall_seconds`` of its rows, under the stages its rows name
    (``optimize+transfer``). GPU-hours are the wall hours of jobs whose ``device`` is not the CPU.
    """
    if rows.empty:
        return []
    jobs = []
    for _, part in rows.groupby("_job", sort=True):
        stages = "+".join(sorted(part["stage"].dropna().astype(str).unique())) if "stage" in part.columns else ""
        wall = part["wall_seconds"].max() if "wall_seconds" in part.columns else math.nan
        devices = device_labels(part)
        gpu = any(d and not d.lower().startswith("cpu") for d in devices)
        jobs.append({"stage": stages or "(no stage)", "rows": len(part), "wall": wall, "gpu": gpu,
                     "devices": devices})
    frame = pd.DataFrame(jobs)
    out = []
    for stage, part in frame.groupby("stage", sort=False):
        out.append(_stage_time(str(stage), part))
    order = {"stage0": 0, "fit": 1, "msf": 2, "optimize": 3, "optimize+transfer": 3, "transfer": 4, "ist": 5}
    out.sort(key=lambda s: (order.get(s.stage, 50), s.stage))
    out.append(_stage_time("total", frame))
    return out


def device_labels(rows: pd.DataFrame) -> list[str]:
    """The devices the rows ran on, each with the precision it computed in where the rows record
    one ("cpu bf16"; rows written before the ``precision`` column say the device alone)."""
    if "device" not in rows.columns:
        return []
    rows = rows.dropna(subset=["device"])
    labels = rows["device"].astype(str)
    if "precision" in rows.columns:
        labels = labels.where(rows["precision"].isna(), labels + " " + rows["precision"].astype(str))
    return sorted(labels.unique())


def _stage_time(stage: str, part: pd.DataFrame) -> StageTime:
    wall = part["wall"].dropna()
    gpu = part.loc[part["gpu"], "wall"].dropna()
    devices = Counter(d for ds in part["devices"] for d in ds)
    return StageTime(stage=stage, jobs=len(part), rows=int(part["rows"].sum()),
                     wall=_duration(float(wall.sum())) if len(wall) else MISSING,
                     gpu_hours=f"{gpu.sum() / 3600:.2f}" if len(gpu) else "0",
                     devices=", ".join(f"{d} ({n})" for d, n in devices.most_common()) or MISSING)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _versions(rows: pd.DataFrame) -> list[tuple[str, str]]:
    """package -> every version the runs recorded, with how many runs used each."""
    if "versions" not in rows.columns:
        return []
    seen: dict[str, Counter] = defaultdict(Counter)
    for text in rows["versions"].dropna().astype(str):
        try:
            versions = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(versions, dict):
            for package, version in versions.items():
                seen[package][str(version) if version is not None else "not installed"] += 1
    return [(package, ", ".join(f"{v} ({n} rows)" for v, n in counts.most_common()))
            for package, counts in sorted(seen.items())]


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"
