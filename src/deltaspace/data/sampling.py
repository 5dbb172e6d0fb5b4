"""Deterministic sampling of train/dev/test sets, following CrossFit's few-shot gym.

Every function is a pure function of its inputs and a seed, and uses NumPy's legacy
``RandomState`` permutation, which shuffles exactly like CrossFit's ``np.random.seed(seed);
np.random.shuffle(lines)``: given the same pool in the same order, the same seed picks the same
examples as CrossFit's own files.

* few-shot, K per class (classification): shuffle the pool, group by label in order of first
  appearance, take the first K of each label for train and the next K for dev;
* few-shot, K total (everything else): shuffle, the first K for train, the next K for dev;
* full data (the unified-dt multi-task setting): shuffle, up to 240 for dev, then up to 20,000
  for train. Dev is taken first so that a small pool never leaves dev empty (unified-dt notes
  §6.14: min(20000, |train|) and min(240, ...)).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")

FULL_MAX_TRAIN = 20_000
FULL_MAX_DEV = 240
K_PER_CLASS = 16  # IPT / CrossFit: K = 16 per class for classification
K_TOTAL = 32  # and K = 32 examples for every other task


def shuffled(items: Sequence[T], seed: int) -> list[T]:
    """``items`` in CrossFit's shuffled order for ``seed``."""
    order = np.random.RandomState(seed).permutation(len(items))
    return [items[i] for i in order]


def fewshot_per_class(items: Sequence[T], k: int, seed: int,
                      key: Callable[[T], Hashable]) -> tuple[list[T], list[T]]:
    """K per class for train and the next K per class for dev (CrossFit's classification sampler)."""
    by_label: dict[Hashable, list[T]] = {}
    for item in shuffled(items, seed):
        by_label.setdefault(key(item), []).append(item)
    train = [item for group in by_label.values() for item in group[:k]]
    dev = [item for group in by_label.values() for item in group[k:2 * k]]
    return train, dev


def fewshot_total(items: Sequence[T], k: int, seed: int) -> tuple[list[T], list[T]]:
    """The first K shuffled items for train and the next K for dev (CrossFit's text-to-text sampler)."""
    pool = shuffled(items, seed)
    return pool[:k], pool[k:2 * k]


def full(items: Sequence[T], seed: int, max_train: int = FULL_MAX_TRAIN,
         max_dev: int = FULL_MAX_DEV) -> tuple[list[T], list[T]]:
    """Up to ``max_dev`` shuffled items for dev, then up to ``max_train`` of the rest for train."""
    pool = shuffled(items, seed)
    return pool[max_dev:max_dev + max_train], pool[:max_dev]


def subsample(items: Sequence[T], n: int | None, seed: int) -> list[T]:
    """At most ``n`` items, a seeded random subset kept in the original order (None: all)."""
    if n is None or n >= len(items):
        return list(items)
    keep = sorted(np.random.RandomState(seed).permutation(len(items))[:n])
    return [items[i] for i in keep]


def holdout_split(items: Sequence[T], fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """CrossFit's carve for data without a test split: shuffle, first (1 - fraction) train, rest test."""
    pool = shuffled(items, seed)
    cut = int((1 - fraction) * len(pool))
    return pool[:cut], pool[cut:]
