"""Figures of the report: seaborn/matplotlib on the Agg backend, returned as PNG data URIs.

Every function takes plain data (frames, arrays) and returns :class:`Figure` views, or nothing when
there is nothing to draw; none of them reads files or knows the report's layout. Figures are drawn
on the Agg canvas and closed at once, so building a report with hundreds of runs does not pile up
open figures.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import matplotlib

matplotlib.use("Agg")  # the report is built headless (workflow jobs, CI): never ask for a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DPI = 100
MAX_CURVE_TASKS = 12  # facets of one training-curve figure; the rest are listed as omitted
OURS_COLOUR, PAPER_COLOUR = "#2b6cb0", "#c05621"


@dataclass
class Figure:
    """One image of the report: a title, the PNG as a data URI and a caption under it."""

    title: str
    uri: str
    caption: str = ""


def png_uri(data: bytes) -> str:
    """A PNG as a ``data:`` URI, so the page needs no file beside it."""
    if not data.startswith(PNG_MAGIC):
        raise ValueError("not a PNG image")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure_uri(fig: matplotlib.figure.Figure) -> str:
    """Render a matplotlib figure to a PNG data URI and close it."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return png_uri(buffer.getvalue())


def _theme() -> None:
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.9)


# ------------------------------------------------------------------ training curves


def training_curves(curves: pd.DataFrame, title: str, max_tasks: int = MAX_CURVE_TASKS) -> list[Figure]:
    """Dev metric and training loss against step, one facet per task, one line per run.

    ``curves`` is long format: ``task``, ``method``, ``run`` (a unique run label), ``step`` and the
    columns ``dev_metric`` and/or ``loss``. Colour is the method; runs of one method (learning
    rates, seeds) are separate lines of the same colour.
    """
    if curves.empty:
        return []
    _theme()
    tasks = sorted(curves["task"].astype(str).unique())
    shown, omitted = tasks[:max_tasks], tasks[max_tasks:]
    data = curves[curves["task"].astype(str).isin(shown)].copy()
    data["task"] = data["task"].astype(str)
    figures = []
    for column, label in (("dev_metric", "dev metric"), ("loss", "training loss")):
        if column not in data.columns or data[column].notna().sum() == 0:
            continue
        part = data[data[column].notna()]
        wrap = min(4, len(shown))
        grid = sns.relplot(data=part, x="step", y=column, hue="method", hue_order=sorted(part["method"].unique()),
                           units="run", estimator=None, kind="line",
                           col="task", col_wrap=wrap, col_order=[t for t in shown if t in set(part["task"])],
                           height=2.4, aspect=1.35, linewidth=1.2, alpha=0.8,
                           facet_kws={"sharey": False, "sharex": False})
        grid.set_titles("{col_name}")
        grid.set_axis_labels("step", label)
        if column == "loss" and (part[column] > 0).all() and part[column].max() / max(part[column].min(), 1e-12) > 50:
            for ax in grid.axes.flat:
                ax.set_yscale("log")
        grid.figure.suptitle(f"{title}: {label}", y=1.02)
        caption = f"{part['run'].nunique()} runs over {len(shown)} task(s); one line per run, colour = method."
        if omitted:
            names = ", ".join(omitted[:6]) + (", ..." if len(omitted) > 6 else "")
            caption += f" Not drawn: {len(omitted)} more task(s) ({names})."
        figures.append(Figure(f"{title}: {label} vs step", figure_uri(grid.figure), caption))
    return figures


# ------------------------------------------------------------------ tables as charts


def average_bars(columns: Sequence[str], ours: Sequence[float], paper: Sequence[float], title: str,
                 ylabel: str) -> Figure | None:
    """Grouped bars of a table's Avg row, ours beside the paper's; None when we have no number."""
    if not any(_finite(v) for v in ours):
        return None
    _theme()
    rows = [{"column": c, "source": "ours", "value": o} for c, o in zip(columns, ours) if _finite(o)]
    rows += [{"column": c, "source": "paper", "value": p} for c, p in zip(columns, paper) if _finite(p)]
    frame = pd.DataFrame(rows)
    sources = [s for s in ("ours", "paper") if s in set(frame["source"])]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.75 * len(columns) * len(sources) + 2.5), 3.2))
    sns.barplot(data=frame, x="column", y="value", hue="source", order=list(columns), hue_order=sources,
                palette={"ours": OURS_COLOUR, "paper": PAPER_COLOUR}, ax=ax, legend=len(sources) > 1)
    for container in ax.containers:
        ax.bar_label(container, fmt="%.1f", fontsize=7, padding=1)
    ax.margins(y=0.12)
    ax.set_xlabel("")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if len(sources) > 1:
        ax.legend(title="", fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if len(columns) > 6:
        ax.tick_params(axis="x", labelrotation=30)
    caption = "Avg row of the table"
    caption += ", ours beside the paper's" if len(sources) > 1 else " (ours; the paper has no number)"
    caption += "; a missing bar is a missing number (never 0)."
    return Figure(title, figure_uri(fig), caption)


def series_lines(values: Sequence[float], series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
                 title: str, xlabel: str, ylabel: str) -> Figure | None:
    """A series table as curves: x = the swept value (d_I), one line per row; the paper's numbers
    as hollow markers of the same colour. ``series``: (label, ours, paper) per row."""
    if not any(_finite(v) for _, ours, _ in series for v in ours):
        return None
    _theme()
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    palette = sns.color_palette("colorblind", len(series))
    x = np.asarray(values, dtype=float)
    for colour, (label, ours, paper) in zip(palette, series):
        y = np.asarray(ours, dtype=float)
        if np.isfinite(y).any():
            ax.plot(x[np.isfinite(y)], y[np.isfinite(y)], marker="o", color=colour, label=label, linewidth=1.6)
        p = np.asarray(paper, dtype=float)
        if np.isfinite(p).any():
            ax.scatter(x[np.isfinite(p)], p[np.isfinite(p)], marker="D", s=46, facecolors="none",
                       edgecolors=[colour], linewidths=1.6, label=f"{label} (paper)", zorder=3)
    _log_x_if_wide(ax, x)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="best")
    caption = "Lines: ours; hollow diamonds: the numbers the paper states. Missing points are runs not yet done."
    return Figure(title, figure_uri(fig), caption)


def d_intrinsic_curves(frame: pd.DataFrame, title: str, ylabel: str) -> Figure | None:
    """Relative (or absolute) performance against d_I from result rows.

    ``frame``: one row per (panel, series, d_intrinsic) with ``value`` (mean over tasks) and
    ``tasks`` (how many tasks the mean covers); one panel per setting (task split).
    """
    if frame.empty:
        return None
    _theme()
    panels = sorted(frame["panel"].astype(str).unique())
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels) + 0.6, 3.4), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        part = frame[frame["panel"].astype(str) == panel].sort_values("d_intrinsic")
        sns.lineplot(data=part, x="d_intrinsic", y="value", hue="series", marker="o", ax=ax, palette="colorblind")
        _log_x_if_wide(ax, part["d_intrinsic"].to_numpy(dtype=float))
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("d_I (intrinsic dimension)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7, title="")
    fig.suptitle(title, y=1.02)
    caption = "Each point: mean over tasks of the best-on-dev run at that d_I."
    return Figure(title, figure_uri(fig), caption)


# ------------------------------------------------------------------ PCA of intrinsic vectors


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows onto their first two principal components: (coordinates n x 2, explained
    variance ratio of the two). A single component (two points) leaves the second coordinate 0."""
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(2, vt.shape[0])
    coords = centred @ vt[:k].T
    variance = singular ** 2
    ratio = variance[:k] / variance.sum() if variance.sum() > 0 else np.zeros(k)
    if k < 2:
        coords = np.hstack([coords, np.zeros((coords.shape[0], 2 - k))])
        ratio = np.append(ratio, 0.0)
    return coords, ratio


def intrinsic_pca(points: pd.DataFrame, vectors: np.ndarray, title: str, style_label: str = "style") -> Figure | None:
    """Scatter of the 2-D PCA of intrinsic vectors, colour = task category, marker = ``style``.

    ``points`` has one row per vector: ``task``, ``category`` and optionally a ``style_label`` column
    that sets the marker (seen/unseen subset, the tuned method or the vector's key). Returns None for
    fewer than three vectors.
    """
    if len(points) < 3:
        return None
    _theme()
    coords, ratio = pca_2d(np.asarray(vectors, dtype=float))
    data = points.reset_index(drop=True).copy()
    data["PC1"], data["PC2"] = coords[:, 0], coords[:, 1]
    style = style_label if style_label in data.columns and data[style_label].nunique() > 1 else None
    categories = sorted(data["category"].astype(str).unique())
    fig, ax = plt.subplots(figsize=(5.4, 4.0))
    sns.scatterplot(data=data, x="PC1", y="PC2", hue="category", hue_order=categories, style=style, s=55,
                    palette=sns.color_palette("tab10" if len(categories) <= 10 else "husl", len(categories)), ax=ax)
    if len(data) <= 30:
        for _, row in data.iterrows():
            ax.annotate(str(row["task"]), (row["PC1"], row["PC2"]), xytext=(4, 3), textcoords="offset points",
                        fontsize=6, alpha=0.75)
    ax.set_xlabel(f"PC1 ({100 * ratio[0]:.0f}% of variance)")
    ax.set_ylabel(f"PC2 ({100 * ratio[1]:.0f}% of variance)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    caption = f"{len(data)} intrinsic vectors of dimension {vectors.shape[1]}, colour = task category"
    caption += f", marker = {style_label}." if style else "."
    return Figure(title, figure_uri(fig), caption)


# ------------------------------------------------------------------ helpers


def _finite(value: float | None) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and math.isfinite(float(value))


def _log_x_if_wide(ax, x: Iterable[float]) -> None:
    x = np.asarray([v for v in x if np.isfinite(v) and v > 0], dtype=float)
    if x.size and x.max() / x.min() >= 20:
        ax.set_xscale("log")
        ticks = sorted(set(x.tolist()))
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{t:g}" for t in ticks])
        ax.minorticks_off()


# ------------------------------------------------------------------ survey figures: convergence, transfer, memory


def convergence_curves(curves: pd.DataFrame, title: str, max_tasks: int = MAX_CURVE_TASKS) -> Figure | None:
    """Survey Figures 6-8: dev score against step, one panel per task, one line per method.

    ``curves`` is long format with ``task``, ``method``, ``step`` and ``dev_metric``: the curve of the
    run each (task, method) selects on dev, so every line is the run its table cell reports. A dot marks
    the best evaluation (the checkpoint that was tested).
    """
    if curves.empty or curves["dev_metric"].notna().sum() == 0:
        return None
    _theme()
    tasks = sorted(curves["task"].astype(str).unique())
    shown, omitted = tasks[:max_tasks], tasks[max_tasks:]
    methods = sorted(curves["method"].astype(str).unique())
    palette = dict(zip(methods, sns.color_palette("colorblind", len(methods))))
    cols = min(4, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols + 0.5, 2.6 * rows + 0.4), squeeze=False)
    for ax, task in zip(axes.flat, shown):
        part = curves[curves["task"].astype(str) == task]
        for method, line in part.groupby("method", sort=True):
            line = line.sort_values("step")
            ax.plot(line["step"], line["dev_metric"], color=palette[str(method)], lw=1.5, label=str(method))
            if line["dev_metric"].notna().any():
                best = line.loc[line["dev_metric"].idxmax()]
                ax.plot([best["step"]], [best["dev_metric"]], "o", color=palette[str(method)], ms=4)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("dev score", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(shown):]:
        ax.set_axis_off()
    height = fig.get_size_inches()[1]
    top = 1 - 0.75 / height  # room above the panels for the title and the legend, whatever the rows
    fig.tight_layout(rect=(0, 0, 1, top))
    handles = [plt.Line2D([], [], color=palette[m], lw=2) for m in methods]
    fig.legend(handles, methods, loc="lower center", ncol=min(len(methods), 6), fontsize=8,
               bbox_to_anchor=(0.5, top), frameon=False)
    fig.suptitle(title, y=1 - 0.08 / height, fontsize=10)
    caption = (f"{len(shown)} task(s); per task and method the run selected on dev (its best evaluation, the "
               f"tested checkpoint, is the dot).")
    if omitted:
        caption += f" Not drawn: {len(omitted)} more task(s) ({', '.join(omitted[:6])}{', ...' if len(omitted) > 6 else ''})."
    return Figure(title, figure_uri(fig), caption)


def heatmap(matrix: pd.DataFrame, title: str, clip: float = 150.0) -> Figure | None:
    """Survey Figure 12: one source x target matrix of relative transfer (%), numbers in the cells.

    Colours saturate at ``clip`` (a transfer can exceed 100%, A26: only the colour is clipped, the
    printed number is not); missing cells are blank.
    """
    values = matrix.to_numpy(dtype=float)
    if not np.isfinite(values).any():
        return None
    _theme()
    n_rows, n_cols = matrix.shape
    fig, ax = plt.subplots(figsize=(0.62 * n_cols + 2.6, 0.42 * n_rows + 1.6))
    annotate = n_rows * n_cols <= 400
    sns.heatmap(matrix.astype(float), ax=ax, cmap="viridis", vmin=0, vmax=clip, annot=annotate, fmt=".0f",
                annot_kws={"fontsize": 7}, linewidths=0.4, linecolor="white",
                cbar_kws={"label": "relative performance (%)", "shrink": 0.8}, mask=~np.isfinite(values))
    ax.grid(False)  # the theme's grid would cross the blank (missing) cells
    ax.set_facecolor("white")
    ax.set_xlabel("target task")
    ax.set_ylabel("source task")
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    ax.tick_params(axis="y", labelrotation=0, labelsize=8)
    caption = (f"100 x zero-shot score / the target's own score; colours saturate at {clip:.0f}%, blank = no run. "
               f"{int(np.isfinite(values).sum())} of {values.size} cells.")
    return Figure(title, figure_uri(fig), caption)


def memory_lines(frame: pd.DataFrame, title: str, ylabel: str) -> Figure | None:
    """Survey Figure 9: peak memory against batch size, one panel per backbone, one line per method.

    ``frame``: ``panel``, ``series``, ``x`` (the column label, e.g. a batch size; drawn at evenly
    spaced positions so the static "0" fits beside 64) and ``value``.
    """
    frame = frame[np.isfinite(frame["value"].to_numpy(dtype=float))]
    if frame.empty:
        return None
    _theme()
    panels = list(dict.fromkeys(frame["panel"].astype(str)))
    xs = list(dict.fromkeys(frame["x"].astype(str)))
    series = sorted(frame["series"].astype(str).unique())
    palette = dict(zip(series, sns.color_palette("colorblind", len(series))))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 0.8, 3.4), squeeze=False, sharey=False)
    for ax, panel in zip(axes[0], panels):
        part = frame[frame["panel"].astype(str) == panel]
        for name, line in part.groupby("series", sort=True):
            pos = [xs.index(str(x)) for x in line["x"]]
            ax.plot(pos, line["value"], marker="o", color=palette[str(name)], label=str(name), lw=1.6)
        values = part["value"].to_numpy(dtype=float)
        if (values > 0).all() and values.max() / values.min() > 20:
            ax.set_yscale("log")
        ax.set_xticks(range(len(xs)), xs)
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.set_title(panel or title, fontsize=10)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle(title, y=1.03, fontsize=10)
    fig.tight_layout()
    caption = "One line per method; a missing point is a measurement not taken or out of memory (never 0)."
    return Figure(title, figure_uri(fig), caption)


def group_lines(frame: pd.DataFrame, panels: Sequence[tuple[str, Sequence[str]]], title: str,
                xlabel: str, ylabel: str, spread_label: str = "its spread") -> Figure | None:
    """A table's Avg column against its row groups (decomposition Figures 4-5: the All Avg. of each
    method against the rank), one line per row label with its ± spread as error bars, the paper's
    numbers as hollow diamonds, one panel per ``(title, labels)`` of ``panels``.

    ``frame``: ``series`` (the row label), ``x`` (the row group), ``value``, ``spread`` and
    ``paper``. A series found in one group only (a rank-free method such as fully fine-tuning) is a
    horizontal line across the panel, as the paper draws its FT line.
    """
    values = frame["value"].to_numpy(dtype=float)
    if not np.isfinite(values).any():
        return None
    _theme()
    points = frame.groupby("series", sort=False)["x"].nunique()
    xs = list(dict.fromkeys(frame.loc[frame["series"].map(points) > 1, "x"].astype(str)))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels) + 1.0, 3.6), squeeze=False)
    for ax, (panel, labels) in zip(axes[0], panels):
        for label, colour in zip(labels, sns.color_palette("colorblind", len(labels))):  # colours per panel
            line = frame[frame["series"] == label]
            if line.empty:
                continue
            if points.get(label, 0) == 1:
                row = line.iloc[0]
                if _finite(row["value"]):
                    ax.axhline(row["value"], color=colour, linestyle="--", linewidth=1.2, label=label)
                if _finite(row["paper"]):
                    ax.axhline(row["paper"], color=colour, linestyle=":", linewidth=1.0)
                continue
            pos = np.array([xs.index(str(x)) for x in line["x"]], dtype=float)
            y, err, paper = (line[c].to_numpy(dtype=float) for c in ("value", "spread", "paper"))
            shown = np.isfinite(y)
            if shown.any():
                ax.errorbar(pos[shown], y[shown], yerr=np.where(np.isfinite(err), err, 0.0)[shown], marker="o",
                            color=colour, label=label, linewidth=1.6, capsize=3)
            if np.isfinite(paper).any():
                ax.scatter(pos[np.isfinite(paper)], paper[np.isfinite(paper)], marker="D", s=40, facecolors="none",
                           edgecolors=[colour], linewidths=1.4, zorder=3)
        ax.set_xticks(range(len(xs)), xs)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(panel, fontsize=10)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    fig.suptitle(title, y=1.03, fontsize=10)
    fig.tight_layout()
    caption = (f"Ours: the mean with {spread_label} as the bar; hollow diamonds (and dotted lines): the "
               "paper's printed numbers. A dashed line is a method without a rank. Missing points: runs not yet done.")
    return Figure(title, figure_uri(fig), caption)
