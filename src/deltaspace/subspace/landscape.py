"""Performance landscape around the three subspace solutions (unified-dt §2.7, Figure 2).

The plane through I_A, I_P, I_L (the stage-2 solutions of Adapter, Prefix, LoRA) gets an
orthonormal frame by Gram-Schmidt with origin I_A; every grid point I_A + α u + β v is decoded by
every method's Proj↑ and evaluated, and the plotted value is

    P(α, β) = (1/3) Σ_m E_m(Proj↑_m(I_A + α u + β v)) / E_PET,

with E_PET the mean original-space score of the three methods (one normalizer for all three).
Here α, β are landscape coordinates only (unified-dt §6 item 5).
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure


def landscape_axes(
    I_A: torch.Tensor, I_P: torch.Tensor, I_L: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, tuple[float, float]]]:
    """Origin I_A, u along I_P − I_A, v the Gram-Schmidt rest of I_L − I_A, and the (α, β)
    coordinates of the three solutions keyed "adapter", "prefix", "lora".

    Computed in float64 and returned in the inputs' dtype: in float32, Gram-Schmidt loses
    orthogonality when I_L lies close to the line through I_A and I_P.
    """
    origin, prefix, lora = (t.detach().to(torch.float64) for t in (I_A, I_P, I_L))
    along = prefix - origin
    if float(along.norm()) == 0.0:
        raise ValueError("I_P equals I_A: the first landscape axis is undefined")
    u = along / along.norm()
    v_raw = lora - origin
    v_perp = v_raw - (v_raw @ u) * u
    if float(v_perp.norm()) <= 1e-12 * max(float(v_raw.norm()), 1.0):
        raise ValueError("I_L lies on the line through I_A and I_P: the second axis is undefined")
    v = v_perp / v_perp.norm()
    coords = {
        "adapter": (0.0, 0.0),
        "prefix": (float(along.norm()), 0.0),
        "lora": (float(v_raw @ u), float(v_perp.norm())),
    }
    return I_A.detach(), u.to(I_A.dtype), v.to(I_A.dtype), coords


def grid(lo: float = -4.0, hi: float = 4.0, step: float = 0.4) -> torch.Tensor:
    """Grid values lo, lo+step, ..., hi (float64), 21 values for the paper's (−4, 4, 0.4).

    Values are computed in exact rational arithmetic from the decimal spelling of the arguments
    and rounded once, so every value is the float nearest its decimal (−3.6, not
    −3.5999999999999996), the endpoints are exact, and values can serve as DataFrame keys.
    """
    lo_q, hi_q, step_q = (Fraction(repr(float(x))) for x in (lo, hi, step))
    if step_q <= 0 or hi_q < lo_q:
        raise ValueError(f"need step > 0 and hi >= lo, got lo={lo}, hi={hi}, step={step}")
    count = (hi_q - lo_q) / step_q
    if count.denominator != 1:
        raise ValueError(f"(hi - lo) / step = {float(count)} is not an integer")
    return torch.tensor([float(lo_q + k * step_q) for k in range(int(count) + 1)], dtype=torch.float64)


def grid_points(
    origin: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    alphas: torch.Tensor,
    betas: torch.Tensor,
) -> torch.Tensor:
    """Intrinsic vectors origin + α u + β v, shape (len(alphas), len(betas), y): [i, j] is the
    point (alphas[i], betas[j])."""
    a = alphas.to(origin)[:, None, None]
    b = betas.to(origin)[None, :, None]
    return origin + a * u + b * v


def relative_landscape(scores: pd.DataFrame, e_pet: float) -> pd.DataFrame:
    """P(α, β): the mean over methods of each grid point's score, divided by E_PET.

    scores has columns alpha, beta, method, score (one row per point and method); e_pet is the
    mean original-space score of the methods, on the same scale as `score`. Returns columns alpha,
    beta, relative (1.0 = the methods' original-space level). Every point must have been scored
    for every method: a mean over fewer methods would silently change the formula.
    """
    if not e_pet > 0:
        raise ValueError(f"E_PET must be positive, got {e_pet}")
    methods = scores["method"].nunique()
    grouped = scores.groupby(["alpha", "beta"], sort=True)
    per_point = grouped.agg(score=("score", "mean"), methods=("method", "nunique"), rows=("method", "size"))
    incomplete = per_point[(per_point["methods"] != methods) | (per_point["rows"] != methods)]
    if len(incomplete):
        raise ValueError(f"{len(incomplete)} grid points lack or repeat a method's score")
    out = per_point.reset_index()[["alpha", "beta", "score"]]
    return out.assign(relative=out["score"] / e_pet).drop(columns="score")


def _cell_edges(centers: np.ndarray) -> np.ndarray:
    mid = (centers[1:] + centers[:-1]) / 2
    first = centers[0] - (mid[0] - centers[0]) if len(mid) else centers[0] - 0.5
    last = centers[-1] + (centers[-1] - mid[-1]) if len(mid) else centers[-1] + 0.5
    return np.concatenate([[first], mid, [last]])


def plot_landscape(
    df: pd.DataFrame,
    coords: Mapping[str, tuple[float, float]],
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Heatmap of P(α, β) with the solutions marked and labelled, like unified-dt Figure 2.

    df: output of `relative_landscape`; coords: method -> (α, β) from `landscape_axes`.
    Draws on a bare matplotlib Figure (Agg canvas), so no global pyplot state or backend switch.
    """
    table = df.pivot(index="beta", columns="alpha", values="relative").sort_index().sort_index(axis=1)
    alphas, betas = table.columns.to_numpy(float), table.index.to_numpy(float)
    fig = Figure(figsize=(5.6, 4.6), dpi=120)
    ax = fig.add_subplot()
    mesh = ax.pcolormesh(_cell_edges(alphas), _cell_edges(betas), table.to_numpy(float), cmap="viridis")
    fig.colorbar(mesh, ax=ax, label="P(α, β)")
    middle = (alphas[0] + alphas[-1]) / 2
    for marker, (method, (alpha, beta)) in zip("o^s*Dv", coords.items()):
        ax.scatter([alpha], [beta], marker=marker, s=70, c="white", edgecolors="black", zorder=3)
        right = alpha <= middle  # label towards the centre so it stays inside the figure
        ax.annotate(method, (alpha, beta), xytext=(7 if right else -7, 7), textcoords="offset points",
                    ha="left" if right else "right", fontsize=9, zorder=4,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8})
    ax.set_xlabel("α")
    ax.set_ylabel("β")
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    from ..io import atomic_write

    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
