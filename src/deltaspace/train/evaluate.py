"""Evaluation: predictions of a delta-adapted backbone on a split, scored by the task's metric."""

from __future__ import annotations

import torch

from ..deltas import Delta
from .batching import eval_batches
from .loop import autocast, device


@torch.no_grad()
def predict_rows(delta: Delta, head, theta: torch.Tensor, rows: list[dict], batch_size: int) -> list[str]:
    """Load θ into the backbone and predict every row (greedy text, or the label head's choice)."""
    backbone = delta.backbone
    backbone.model.eval()
    delta.load(theta)
    pad_id = backbone.tokenizer.pad_token_id
    predictions = []
    for batch in eval_batches(rows, batch_size, pad_id, backbone.kind):
        with autocast():
            predictions += head.predict({k: v.to(device()) for k, v in batch.items()})
    return predictions


def score_rows(metric: str, predictions: list[str], rows: list[dict]) -> float:
    from ..data.metrics import compute

    return float(compute(metric, predictions, [list(r["references"]) for r in rows]))


def evaluate_rows(delta: Delta, head, theta: torch.Tensor, rows: list[dict], metric: str, batch_size: int) -> float:
    return score_rows(metric, predict_rows(delta, head, theta, rows, batch_size), rows)
