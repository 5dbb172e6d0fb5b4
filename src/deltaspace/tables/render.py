"""Render a compiled table: display frames, Markdown and LaTeX.

Frames keep full precision (they feed CSV and Parquet, read by programs); only the text formats
round, to the table's ``decimals`` (or a row's or column's own). A missing number prints as a dash
in text and as an empty field in CSV, never as 0. Tables with a ``spread`` print ``mean ± spread``.
"""

from __future__ import annotations

import math

import pandas as pd

from .compile import CompiledTable
from .spec import AVG

MISSING_TEXT = "–"
MISSING_TEX = "--"


SPREAD_SUFFIX = " (sd)"


def row_entries(table: CompiledTable) -> list[tuple[str, str, str]]:
    """(key, group, label) of every displayed row: the body, the Avg row, then the footer rows."""
    entries = [(r.key, r.group or "", r.label) for r in table.rows]
    if table.spec.avg_row:
        entries.append((AVG, "", table.spec.avg_label))
    entries += [(r.key, r.group or "", r.label) for r in table.footer]
    return entries


def row_part(table: CompiledTable, key: str) -> str:
    """``body``, ``avg`` or ``footer``: the report counts filled cells over the body only."""
    if key == AVG:
        return "avg"
    return "footer" if any(r.key == key for r in table.footer) else "body"


def column_entries(table: CompiledTable) -> list[tuple[str, str]]:
    """(key, label) of every displayed column, the Avg column last."""
    entries = [(c.key, c.label) for c in table.columns]
    if table.spec.avg_column:
        entries.append((AVG, table.spec.avg_label))
    return entries


def display_frame(table: CompiledTable) -> pd.DataFrame:
    """Our numbers with readable headers: ``key``, the group and row label, then one column per
    table column (labels as headers). This is what the Parquet and CSV files hold."""
    spec = table.spec
    rows = row_entries(table)
    frame = pd.DataFrame({"key": [key for key, _, _ in rows]})
    if spec.row_group_label:
        frame[spec.row_group_label] = [group for _, group, _ in rows]
    frame[spec.row_header] = [label for _, _, label in rows]
    keys = [r for r, _, _ in rows]
    for key, label in column_entries(table):
        frame[label] = table.ours.loc[keys, key].to_numpy(dtype=float)
        if table.spread is not None:
            frame[label + SPREAD_SUFFIX] = table.spread.loc[keys, key].to_numpy(dtype=float)
    return frame


def vs_paper_frame(table: CompiledTable) -> pd.DataFrame:
    """Long format, one line per cell: ours, the paper's number and ours minus paper, with what the
    report needs to lay the cell out (row group, body/avg/footer, digits) and the ± spreads."""
    lines = []
    spread, paper_spread = table.spread, table.paper_spread
    for row, group, row_label in row_entries(table):
        for col, col_label in column_entries(table):
            lines.append({
                "row": row, "row_label": row_label, "column": col, "column_label": col_label,
                "ours": table.ours.loc[row, col], "paper": table.paper.loc[row, col],
                "diff": table.diff.loc[row, col],
                "paper_avg_inconsistent": (row, col) in table.spec.published_avg_inconsistent,
                "row_group": group, "part": row_part(table, row), "decimals": table.decimals(row, col),
                "ours_spread": spread.loc[row, col] if spread is not None else math.nan,
                "paper_spread": paper_spread.loc[row, col] if paper_spread is not None else math.nan,
            })
    return pd.DataFrame(lines, columns=VS_PAPER_COLUMNS)


VS_PAPER_COLUMNS = ["row", "row_label", "column", "column_label", "ours", "paper", "diff", "paper_avg_inconsistent",
                    "row_group", "part", "decimals", "ours_spread", "paper_spread"]


def fmt(value: float, decimals: int, missing: str = MISSING_TEXT, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return missing
    return f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"


def with_spread(value: float, spread: float | None, decimals: int, missing: str = MISSING_TEXT,
                plus_minus: str = "±") -> str:
    """``mean ± spread``; just the mean when there is no spread (one seed), a dash when no mean."""
    text = fmt(value, decimals, missing)
    if text != missing and spread is not None and not math.isnan(spread):
        text += f" {plus_minus} {fmt(spread, decimals)}"
    return text


def _ours(table: CompiledTable, row: str, col: str, missing: str = MISSING_TEXT, plus_minus: str = "±") -> str:
    spread = table.spread.loc[row, col] if table.spread is not None else None
    return with_spread(table.ours.loc[row, col], spread, table.decimals(row, col), missing, plus_minus)


def _paper(table: CompiledTable, row: str, col: str) -> str:
    spread = table.paper_spread.loc[row, col] if table.paper_spread is not None else None
    return with_spread(table.paper.loc[row, col], spread, table.decimals(row, col))


def markdown(table: CompiledTable) -> str:
    """Our table as Markdown, with title, caption and the compile notes."""
    body = _markdown_grid(table, lambda row, col: _ours(table, row, col))
    return _document(table, body, extra=[])


def vs_paper_markdown(table: CompiledTable) -> str:
    """Ours beside the paper's: every cell reads ``ours / paper (ours − paper)``."""
    spec = table.spec

    def cell(row: str, col: str) -> str:
        ours, paper, d = table.ours.loc[row, col], table.paper.loc[row, col], table.decimals(row, col)
        text = f"{_ours(table, row, col)} / {_paper(table, row, col)}"
        if not (math.isnan(ours) or math.isnan(paper)):
            text += f" ({fmt(ours - paper, d, signed=True)})"
        if (row, col) in spec.published_avg_inconsistent:
            text += " †"
        return text

    extra = ["Each cell: ours / paper (ours − paper); – = no number."]
    if spec.published_avg_inconsistent:
        extra.append("† The paper's printed average here is not the mean of its own printed cells; "
                     "compare per-cell numbers instead.")
    if spec.published is None:
        extra.append("The paper has no numbers for this table.")
    return _document(table, _markdown_grid(table, cell), extra)


def latex(table: CompiledTable) -> str:
    """Our table as a booktabs LaTeX ``table`` float."""
    spec = table.spec
    columns = column_entries(table)
    lead = ([spec.row_group_label] if spec.row_group_label else []) + [spec.row_header]
    align = "l" * len(lead) + "r" * len(columns)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_tex(spec.caption or spec.title)}}}",
             rf"\label{{tab:{spec.id}}}", rf"\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(_tex(h) for h in lead + [label for _, label in columns]) + r" \\", r"\midrule"]
    previous = "body"
    for key, group, label in row_entries(table):
        part = row_part(table, key)
        if part != previous:
            lines.append(r"\midrule")
        previous = part
        cells = ([_tex(group)] if spec.row_group_label else []) + [_tex(label)]
        cells += [_ours(table, key, col, MISSING_TEX, r"$\pm$") for col, _ in columns]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def _markdown_grid(table: CompiledTable, cell) -> list[str]:
    spec = table.spec
    columns = column_entries(table)
    lead = ([spec.row_group_label] if spec.row_group_label else []) + [spec.row_header]
    header = lead + [label for _, label in columns]
    lines = ["| " + " | ".join(_md(h) for h in header) + " |",
             "|" + "|".join(["---"] * len(lead) + ["---:"] * len(columns)) + "|"]
    for key, group, label in row_entries(table):
        texts = ([group] if spec.row_group_label else []) + [label] + [cell(key, col) for col, _ in columns]
        lines.append("| " + " | ".join(_md(t) for t in texts) + " |")
    return lines


def _document(table: CompiledTable, grid: list[str], extra: list[str]) -> str:
    spec = table.spec
    parts = [f"# {spec.title}", ""]
    if spec.caption:
        parts += [spec.caption, ""]
    parts += grid + [""]
    notes = extra + ([spec.notes.strip()] if spec.notes else []) + table.notes
    parts += [f"- {note}" for note in notes]
    parts += ["", f"Spec `{spec.id}` ({spec.source.name}), kind `{spec.kind}`, statistic `{spec.statistic}`.", ""]
    return "\n".join(parts)


def _md(text: str) -> str:
    return str(text).replace("|", r"\|").replace("\n", " ")


# LaTeX specials, and the non-ASCII characters the specs use, in forms pdflatex accepts
_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}", "→": r"$\rightarrow$", "³": r"$^{3}$",
        "‰": r"\textperthousand{}", "−": "-", "–": "--", "…": r"\ldots{}", "‖": r"$\|$", "∆": r"$\Delta$",
        "²": r"$^{2}$", "θ": r"$\theta$", "±": r"$\pm$", "×": r"$\times$", "≤": r"$\leq$", "≥": r"$\geq$",
        "σ": r"$\sigma$", "λ": r"$\lambda$"}


def _tex(text: str) -> str:
    return "".join(_TEX.get(char, char) for char in str(text))
