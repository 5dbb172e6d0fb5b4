"""What the subspace stages share: one backbone copy per method, stage-0 selection, and the
multi-task batch streams (the paper's blended training set, or a round-robin over tasks).

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
from ..train.batching import BatchStream, TaskData, collate, split_rows
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


class BlendedTaskStream:
    """unified-dt's multi-task training set (A.2): up to ``cap`` instances sampled from each task's
    training split, blended into one set and shuffled.

    The sample is drawn once from ``seed`` (a task with fewer rows gives all of them, notes §6.14).
    Each epoch every task's sample is shuffled and cut into batches, and the batches of all tasks
    are shuffled together; so one epoch shows every sampled instance once, and a task's share of
    the steps is its share of the blend (COPA's 400 rows are 400 of 1.2M, not 1/60 of the steps as
    in a round-robin, which cycled them 50 times over unified-dt's 300,000 steps at batch 4). A batch holds one task: each task
    decodes its own θ̄ and has its own head, and the expected gradient is the mixed batch's.
    Resumes exactly: an epoch's order depends only on ``seed`` and the epoch number.
    """

    def __init__(self, rows: list[list[dict]], batch_size: int, seed: int, pad_id: int, kind: str,
                 cap: int = 20000) -> None:
        if cap < 1:
            raise ValueError(f"per-task cap must be positive, got {cap}")
        g = torch.Generator().manual_seed(seed)
        self.rows = []
        for task_rows in rows:
            if not task_rows:
                raise ValueError("cannot train on an empty split")
            if len(task_rows) > cap:
                keep = sorted(torch.randperm(len(task_rows), generator=g)[:cap].tolist())
                task_rows = [task_rows[i] for i in keep]
            self.rows.append(task_rows)
        self.batch_size, self.seed, self.pad_id, self.kind = batch_size, seed, pad_id, kind
        self.epoch, self.position = 0, 0
        self._schedule: tuple[int, list[tuple[int, list[int]]]] | None = None

    @property
    def sizes(self) -> list[int]:
        """Rows each task contributes to the blend."""
        return [len(r) for r in self.rows]

    def schedule(self, epoch: int) -> list[tuple[int, list[int]]]:
        """(task index, row indices) of every batch of ``epoch``, in training order."""
        if self._schedule is None or self._schedule[0] != epoch:
            batches = []
            for task, task_rows in enumerate(self.rows):
                g = torch.Generator().manual_seed((self.seed * 100003 + epoch) * 1009 + task)
                order = torch.randperm(len(task_rows), generator=g).tolist()
                batches += [(task, order[i:i + self.batch_size]) for i in range(0, len(order), self.batch_size)]
            g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
            self._schedule = (epoch, [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()])
        return self._schedule[1]

    def __next__(self) -> dict:
        batches = self.schedule(self.epoch)
        if self.position >= len(batches):
            self.epoch, self.position = self.epoch + 1, 0
            batches = self.schedule(self.epoch)
        task, picked = batches[self.position]
        self.position += 1
        return collate([self.rows[task][i] for i in picked], self.pad_id, self.kind, task_index=task)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = state["epoch"], state["position"]


#: How the multi-task stage 1 draws its batches (``fit-subspace --task-mix``).
TASK_MIXES = ("blend", "round-robin")
DEFAULT_PER_TASK_CAP = 20000  # unified-dt A.2: 20,000 sampled instances per task


def default_task_mix(mode: str) -> str:
    """The paper's blend for unified-dt's joint decomposition; a round-robin elsewhere."""
    return "blend" if mode == "joint" else "round-robin"


def task_streams(tasks: list[TaskData], batch_size: int, seed: int, backbone: Backbone, mix: str = "round-robin",
                 cap: int = DEFAULT_PER_TASK_CAP) -> MultiTaskStream | BlendedTaskStream:
    """The training batches of a multi-task stage 1: ``blend`` (unified-dt A.2: up to ``cap`` rows
    per task, shuffled into one set) or ``round-robin`` (one task per step in turn, every task
    equally often whatever its size: this pipeline's stage 1 before the blend, and IPT's MSF, whose
    few-shot tasks have equal sizes anyway)."""
    if mix == "blend":
        return BlendedTaskStream([split_rows(t, "train") for t in tasks], batch_size, seed,
                                 backbone.tokenizer.pad_token_id, backbone.kind, cap)
    if mix != "round-robin":
        raise ValueError(f"unknown task mix {mix!r}; valid: {', '.join(TASK_MIXES)}")
    return MultiTaskStream([BatchStream(split_rows(t, "train"), batch_size, seed + i, backbone.tokenizer.pad_token_id,
                                        backbone.kind) for i, t in enumerate(tasks)])
