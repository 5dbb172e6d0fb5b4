"""Picking runs out of the results: selectors, and the statistics that turn a cell's runs into one number.

The selection rule mirrors the papers: a cell's runs span a hyper-parameter grid (learning rates,
seeds, for transfer also checkpoints), and the reported number is the test metric of the run that is
best on dev. Selecting on test would flatter every method, so test never takes part in the choice.
For transfer rows ``dev_metric`` must be the *target* method's dev score (unified-dt notes §6 item 8):
the choice is then the one the paper describes.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

# Columns that tell two runs of one cell apart as hyper-parameters (not seeds); the seed statistics
# pick one setting of these and average or spread over its seeds.
HYPERPARAMETERS = ("lr", "batch_size")
TIE_BREAK = ("seed", "lr")  # equal dev scores: the lowest seed, then the lowest lr, wins


def filter_rows(results: pd.DataFrame, selector: Mapping[str, Any]) -> pd.DataFrame:
    """Rows matching every ``column: value`` of the selector (a list means any of its values,
    ``None`` a missing value). A column the results lack matches nothing, never everything, except
    ``None``: where no run has the column, every run's value is missing (``template: null`` selects
    the runs that were not labelled with a template)."""
    if results.empty or not selector:
        return results
    mask = np.ones(len(results), dtype=bool)
    for column, wanted in selector.items():
        values = wanted if isinstance(wanted, list) else [wanted]
        if column not in results.columns:
            if None in values:
                continue
            return results.iloc[0:0]
        present = [v for v in values if v is not None]
        hit = results[column].isin(present).to_numpy() if present else np.zeros(len(results), dtype=bool)
        if len(present) < len(values):
            hit |= results[column].isna().to_numpy()
        mask &= hit
    return results[mask]


def best_on_dev(runs: pd.DataFrame, value: str = "test_metric") -> float:
    """``value`` (the test metric) of the run with the best dev metric; NaN when no run has a dev score."""
    runs = runs[runs["dev_metric"].notna()]
    if runs.empty:
        return math.nan
    ties = [c for c in TIE_BREAK if c in runs.columns]
    ordered = runs.sort_values(["dev_metric", *ties], ascending=[False, *([True] * len(ties))],
                               kind="stable", na_position="last")
    return float(ordered[value].iloc[0])


def seed_mean(runs: pd.DataFrame, value: str = "test_metric") -> float:
    """Mean ``value`` over the seeds of the hyper-parameter setting with the best mean dev.

    For papers that report the mean of several seeds (the decomposition paper's 5 runs, the survey's
    combination tables) rather than one best run.
    """
    best = _best_setting(runs, value)
    return math.nan if best is None else float(best[value].mean())


def seed_std(runs: pd.DataFrame, value: str = "test_metric") -> float:
    """Sample standard deviation (ddof=1) of ``value`` over the seeds of the best setting.

    IPT Table 2 reports the spread over 10 runs of the selected hyper-parameters. Only settings run
    with at least two seeds have a spread, so only they compete (a grid searched with one seed and
    repeated at its winner still works); with none the cell is missing rather than 0.
    """
    best = _best_setting(runs, value, min_runs=2)
    return math.nan if best is None else float(best[value].std(ddof=1))


def seed_sem(runs: pd.DataFrame, value: str = "test_metric") -> float:
    """Standard error of the seed mean, sd / sqrt(n), over the seeds of the best setting: the
    decomposition paper's error bars ("SEM over five runs"). The same setting as ``seed_std``."""
    best = _best_setting(runs, value, min_runs=2)
    return math.nan if best is None else float(best[value].std(ddof=1) / math.sqrt(len(best)))


def mean(runs: pd.DataFrame, value: str = "test_metric") -> float:
    """Plain mean of ``value`` over every run of the cell: no dev score takes part.

    For numbers that are not chosen on dev: measurements (peak memory), parameter shares, the
    synthetic study (its learning rate is already chosen on the fitted objective), and task transfer
    (the source run was chosen on the source's dev; the transfer itself has no dev score).
    """
    values = pd.to_numeric(runs[value], errors="coerce").dropna() if len(runs) else pd.Series(dtype=float)
    return float(values.mean()) if len(values) else math.nan


STATISTICS: dict[str, Callable[[pd.DataFrame, str], float]] = {
    "best_on_dev": best_on_dev,
    "seed_mean": seed_mean,
    "seed_std": seed_std,
    "seed_sem": seed_sem,
    "mean": mean,
}


def mean_of_cells(cells: pd.DataFrame) -> pd.Series:
    """Per row of ``cells``, the mean of its cells; missing if any is: an Avg cell of the table."""
    return cells.mean(axis=1, skipna=False)


def _sem_of_mean(sems: pd.DataFrame) -> pd.Series:
    """SEM of a mean of n independent cell means: sqrt(sum of SEM^2) / n (each task's runs train
    apart, so their errors add in quadrature; the mean of the SEMs would overstate the error)."""
    return (sems ** 2).sum(axis=1, min_count=sems.shape[1]).pow(0.5) / sems.shape[1]


#: How an Avg cell's spread follows from the spreads of the cells it averages (one row of a frame
#: each): the survey prints the mean of its sds; the SEM of a mean adds in quadrature.
SPREAD_OF_AVERAGE: dict[str, Callable[[pd.DataFrame], pd.Series]] = {
    "seed_std": mean_of_cells,
    "seed_sem": _sem_of_mean,
}


def _best_setting(runs: pd.DataFrame, value: str, min_runs: int = 1) -> pd.DataFrame | None:
    """The runs of the hyper-parameter setting with the best mean dev score (among settings with at
    least ``min_runs`` runs that have a ``value``)."""
    runs = runs[runs["dev_metric"].notna() & runs[value].notna()]
    keys = [c for c in HYPERPARAMETERS if c in runs.columns]
    groups = [group for _, group in runs.groupby(keys, dropna=False, sort=True)] if keys else [runs]
    groups = [g for g in groups if len(g) >= min_runs]
    if not groups:
        return None
    # stable: among equal mean dev scores the first setting in sorted order wins
    return max(groups, key=lambda g: g["dev_metric"].mean())
