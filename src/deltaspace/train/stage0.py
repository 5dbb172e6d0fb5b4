"""Stage 0: train a delta method's θ directly, in its original space, on one task."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from ..backbones import load_backbone
from ..deltas import Delta, build_delta
from ..heads import make_head, training_loss
from ..io import write_json, write_parquet
from ..provenance import provenance
from .batching import BatchStream, TaskData, load_task_data, split_rows
from .evaluate import evaluate_rows
from .loop import LoopConfig, device, run_loop


class ThetaObjective:
    """θ itself is the trainable parameter; the backbone reads it through ``delta.bound``."""

    def __init__(self, delta: Delta, head, theta0: torch.Tensor, dev_rows: list[dict], metric: str,
                 eval_batch_size: int) -> None:
        self.delta, self.head = delta, head
        self.theta = nn.Parameter(theta0.clone().to(device()))
        self.dev_rows, self.metric, self.eval_batch_size = dev_rows, metric, eval_batch_size

    def param_groups(self, lr: float) -> list[dict]:
        return [{"params": [self.theta], "lr": lr}]

    def loss(self, batch: dict) -> torch.Tensor:
        return training_loss(self.delta, self.head, self.theta, batch)

    def evaluate(self) -> float:
        return evaluate_rows(self.delta, self.head, self.theta.detach(), self.dev_rows, self.metric,
                             self.eval_batch_size)

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {"theta": self.theta.detach().cpu().clone()}

    def state_dict(self) -> dict:
        return {"theta": self.theta.detach().cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.theta.copy_(state["theta"])


def check_backbone_matches(data: TaskData, backbone: str) -> None:
    prepared = data.manifest.get("backbone")
    if prepared is not None and prepared != backbone:
        raise ValueError(f"{data.path}: prepared (tokenized) for backbone {prepared!r}, not {backbone!r}; "
                         f"run `deltaspace prepare --backbone {backbone}`")


def train_stage0(data_dir: str | Path, method: str, backbone_name: str, options: dict, cfg: LoopConfig,
                 out: str | Path, *, experiment: str = "adhoc", setting: str = "single", eval_batch_size: int = 32,
                 progress: bool = True, stop_after: int | None = None) -> pd.DataFrame:
    """Train, select the best dev step, test it, and write θ, the curve and the result row."""
    started = time.perf_counter()
    out = Path(out)
    data = load_task_data(data_dir)
    check_backbone_matches(data, backbone_name)
    backbone = load_backbone(backbone_name, seed=cfg.seed)
    backbone.model.to(device())
    delta = build_delta(method, backbone, **options)
    head = make_head(backbone, delta, data.verbalizers)
    objective = ThetaObjective(delta, head, delta.init(cfg.seed), split_rows(data, "dev"), data.metric,
                               eval_batch_size)
    stream = BatchStream(split_rows(data, "train"), cfg.batch_size, cfg.seed, backbone.tokenizer.pad_token_id,
                         backbone.kind)
    outcome = run_loop(objective, stream, cfg, out, tokens_per_batch=lambda b: b["attention_mask"].sum(),
                       progress=progress, stop_after=stop_after, desc=f"{data.name}/{method}")
    theta = outcome.best_snapshot["theta"]
    test = evaluate_rows(delta, head, theta, split_rows(data, "test"), data.metric, eval_batch_size)
    save_theta(out, theta, delta, backbone_name)
    write_parquet(pd.DataFrame(outcome.curve), out / "curve.parquet")
    config = {"task": data.name, "data_sha256": data.manifest.get("content_sha256"), "method": method,
              "options": delta.options, "backbone": backbone_name, "loop": asdict(cfg), "experiment": experiment,
              "setting": setting}
    row = {"experiment": experiment, "stage": "stage0", "setting": setting, "task": data.name, "method": method,
           "source_method": method, "target_method": method, "backbone": backbone_name, "seed": cfg.seed,
           "lr": cfg.lr, "steps": cfg.steps, "best_step": outcome.best_step, "dev_metric": outcome.best_dev,
           "test_metric": test, "metric": data.metric, "size": delta.size,
           **provenance(config, time.perf_counter() - started)}
    result = pd.DataFrame([row])
    write_parquet(result, out / "result.parquet")
    (out / "checkpoint.pt").unlink(missing_ok=True)
    return result


def save_theta(out: Path, theta: torch.Tensor, delta: Delta, backbone: str) -> None:
    """θ as safetensors plus a JSON sidecar saying what it means (method, options, manifest)."""
    from safetensors.torch import save_file

    from ..io import atomic_write

    atomic_write(out / "theta.safetensors", lambda tmp: save_file({"theta": theta.contiguous()}, str(tmp)))
    write_json({**delta.describe(), "backbone": backbone}, out / "theta.json")


def load_theta(path: str | Path) -> tuple[torch.Tensor, dict]:
    """θ and its sidecar from a folder written by :func:`save_theta`."""
    import json

    from safetensors.torch import load_file

    path = Path(path)
    return load_file(str(path / "theta.safetensors"))["theta"], json.loads((path / "theta.json").read_text())
