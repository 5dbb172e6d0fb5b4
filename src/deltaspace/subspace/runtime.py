"""What the subspace stages share: one backbone copy per method, stage-0 selection, and the
multi-task batch stream.

Each method gets its own copy of the frozen backbone because a method's modules are never
neutral to another's forward pass (a prefix always adds keys), and the subspace stages drive
several methods at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ..backbones import Backbone, load_backbone
from ..deltas import Delta, build_delta
from ..heads import make_head, training_loss
from ..train.batching import BatchStream, TaskData, split_rows
from ..train.evaluate import evaluate_rows
from ..train.loop import device


@dataclass
class MethodRuntime:
    method: str
    backbone: Backbone
    delta: Delta

    def head(self, data: TaskData):
        return make_head(self.backbone, self.delta, data.verbalizers)

    def task_loss(self, theta: torch.Tensor, head, batch: dict) -> torch.Tensor:
        return training_loss(self.delta, head, theta, batch)

    def score(self, theta: torch.Tensor, head, rows: list[dict], metric: str, batch_size: int) -> float:
        return evaluate_rows(self.delta, head, theta.detach(), rows, metric, batch_size)


def build_runtimes(backbone: str, methods: list[str], options: dict[str, dict], seed: int) -> dict[str, MethodRuntime]:
    runtimes = {}
    for method in methods:
        bb = load_backbone(backbone, seed=seed)
        bb.model.to(device())
        runtimes[method] = MethodRuntime(method, bb, build_delta(method, bb, **options.get(method, {})))
    return runtimes


def parse_method_sets(pairs: list[str] | None, methods: list[str]) -> dict[str, dict]:
    """``--set lora.r=8`` → {"lora": {"r": "8"}}; the method must be one of ``methods``."""
    options: dict[str, dict] = {m: {} for m in methods}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        method, dot, option = key.partition(".")
        if not sep or not dot:
            raise ValueError(f"--set expects METHOD.key=value, got {pair!r}")
        if method not in options:
            raise ValueError(f"--set {pair!r}: method {method!r} is not one of {', '.join(methods)}")
        options[method][option] = value
    return options


@dataclass
class Stage0Solution:
    task: str
    method: str
    path: Path
    dev_metric: float
    test_metric: float
    options: dict


def best_stage0(folders: list[str | Path]) -> dict[tuple[str, str], Stage0Solution]:
    """Per (task, method), the stage-0 run best on dev among ``folders`` (the LR grid × seeds).

    The workflow passes every run of the grid; choosing here keeps selection in one place.
    Ties go to the first folder in sorted order, so the choice is deterministic.
    """
    best: dict[tuple[str, str], Stage0Solution] = {}
    for folder in sorted(Path(f) for f in folders):
        result = pd.read_parquet(folder / "result.parquet").iloc[0]
        sidecar = json.loads((folder / "theta.json").read_text())
        key = (result.task, result.method)
        if key not in best or result.dev_metric > best[key].dev_metric:
            best[key] = Stage0Solution(result.task, result.method, folder, float(result.dev_metric),
                                       float(result.test_metric), sidecar["options"])
    return best


class MultiTaskStream:
    """Round-robin over the tasks' batch streams: each step trains on one task's batch, so over
    ``len(tasks)`` steps every training task contributes equally (the blended training set)."""

    def __init__(self, streams: list[BatchStream]) -> None:
        self.streams, self.turn = streams, 0

    def __next__(self) -> dict:
        index = self.turn % len(self.streams)
        self.turn += 1
        batch = next(self.streams[index])
        batch["task_index"] = torch.full((batch["input_ids"].shape[0],), index, dtype=torch.long)
        return batch

    def state_dict(self) -> dict:
        return {"turn": self.turn, "streams": [s.state_dict() for s in self.streams]}

    def load_state_dict(self, state: dict) -> None:
        self.turn = state["turn"]
        for stream, s in zip(self.streams, state["streams"]):
            stream.load_state_dict(s)


def task_streams(tasks: list[TaskData], batch_size: int, seed: int, backbone: Backbone) -> MultiTaskStream:
    return MultiTaskStream([BatchStream(split_rows(t, "train"), batch_size, seed + i, backbone.tokenizer.pad_token_id,
                                        backbone.kind) for i, t in enumerate(tasks)])
