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
