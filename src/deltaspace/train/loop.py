"""The training loop every stage shares: optimize an objective's parameters, evaluate on dev
every N steps, keep the best-on-dev snapshot, checkpoint, and resume after preemption.

An *objective* owns the trainable parameters (θ itself in stage 0; projectors or intrinsic
vectors in later stages) and knows its loss on a batch, its dev score and what to keep from
the best step. The loop knows nothing about methods or stages.

Early stopping (``patience``, off by default): the survey trains "max 20,000 steps with early
stop" (its A.1); the loop stops once ``patience`` consecutive evaluations have not improved the
best dev score. The count is part of the checkpoint, so a preempted run stops where an
uninterrupted one would.
"""

from __future__ import annotations

import math
import signal
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from tqdm.auto import tqdm

from ..io import atomic_write
from ..precision import precision


@dataclass
class LoopConfig:
    steps: int = 1000
    lr: float = 5e-4
    batch_size: int = 16
    optimizer: str = "adafactor"  # "adafactor" (constant lr, as unified-dt) | "adamw"
    schedule: str = "constant"  # "constant" | "linear" (decay to 0 after warmup)
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 0.0  # 0: no clipping
    eval_every: int = 100
    checkpoint_every: int = 100
    seed: int = 42
    patience: int | None = None  # stop after this many evaluations without a new best dev score
    micro_batch_size: int | None = None  # forward/backward this many rows at a time (gradient accumulation)

    def __post_init__(self) -> None:
        if self.optimizer not in ("adafactor", "adamw"):
            raise ValueError(f"optimizer must be 'adafactor' or 'adamw', got {self.optimizer!r}")
        if self.schedule not in ("constant", "linear"):
            raise ValueError(f"schedule must be 'constant' or 'linear', got {self.schedule!r}")
        if self.steps < 0:
            raise ValueError(f"steps must be at least 0 (0: evaluate the starting point), got {self.steps}")
        if not self.lr >= 0:  # NaN fails too; 0 is a zero-shot run (steps 0) or an untrained random subspace
            raise ValueError(f"lr must be >= 0 (> 0 to train), got {self.lr}")
        for key in ("batch_size", "eval_every", "checkpoint_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be at least 1 (or unset: the whole batch at once), "
                             f"got {self.micro_batch_size}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be at least 1 evaluation (or unset: no early stopping), "
                             f"got {self.patience}")

    def record(self) -> dict:
        """The settings as a dict for checkpoints and config hashes. Optional settings left unset
        are omitted, so adding one does not change the hash of runs that do not use it."""
        settings = asdict(self)
        for key in ("patience", "micro_batch_size"):
            if settings[key] is None:
                del settings[key]
        return settings


class Objective(Protocol):
    def param_groups(self, lr: float) -> list[dict]: ...
    def loss(self, batch: dict) -> torch.Tensor: ...
    def evaluate(self, step: int) -> float: ...  # dev after `step` optimizer steps
    def snapshot(self) -> dict[str, torch.Tensor]: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


class TrainingDiverged(RuntimeError, ValueError):
    """A non-finite loss: the run stops (the CLI prints one line) and keeps its last good checkpoint."""


class CheckpointError(RuntimeError, ValueError):
    """A checkpoint that cannot resume this run (another configuration, or unreadable)."""


class Preempted(RuntimeError):
    """Raised after a stop request (SIGTERM/SIGINT) once the checkpoint is safely written."""


@dataclass
class LoopOutcome:
    best_step: int
    best_dev: float
    best_snapshot: dict[str, torch.Tensor]
    curve: list[dict] = field(default_factory=list)
    last_step: int = 0  # the step training ended at: cfg.steps, or earlier when it stopped early
    stopped_early: bool = False


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast():
    """The context every forward runs in: bf16 autocast or full precision (see :func:`precision`)."""
    if precision() == "bf16":
        return torch.autocast(device().type, dtype=torch.bfloat16)
    return nullcontext()


def make_optimizer(groups: list[dict], cfg: LoopConfig):
    if cfg.optimizer == "adafactor":
        from transformers.optimization import Adafactor

        optimizer = Adafactor(groups, lr=cfg.lr, scale_parameter=False, relative_step=False, warmup_init=False,
                              weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "linear":
            return max(0.0, (cfg.steps - step) / max(1, cfg.steps - cfg.warmup_steps))
        return 1.0

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class StopFlag:
    """Turns SIGTERM/SIGINT (what Slurm sends at a time limit) into a request to checkpoint and stop."""

    def __init__(self) -> None:
        self.requested = False

    @contextmanager
    def installed(self):
        def handler(signum, _frame):
            self.requested = True

        previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def backward(objective: Objective, batch: dict, micro_batch_size: int | None) -> torch.Tensor:
    """The batch's loss, with its gradient accumulated into the parameters.

    With ``micro_batch_size`` smaller than the batch, the rows go through forward and backward that
    many at a time (gradient accumulation: a batch that does not fit in device memory still trains
    at its batch size); each chunk's mean loss is weighted by its share of the rows, so the gradient
    is the batch's up to how target tokens spread over the chunks. A non-finite chunk loss is
    returned at once, before its backward.
    """
    rows = len(next(iter(batch.values())))
    if not micro_batch_size or micro_batch_size >= rows:
        with autocast():
            loss = objective.loss(batch)
        if torch.isfinite(loss):
            loss.backward()
        return loss
    total = 0.0
    for start in range(0, rows, micro_batch_size):
        chunk = {k: v[start:start + micro_batch_size] for k, v in batch.items()}
        with autocast():
            loss = objective.loss(chunk)
        if not torch.isfinite(loss):
            return loss.detach()
        share = len(chunk["input_ids"]) / rows
        (loss * share).backward()
        total += loss.item() * share
    return torch.tensor(total)


def run_loop(objective: Objective, stream, cfg: LoopConfig, workdir: str | Path, *, tokens_per_batch=None,
             progress: bool = True, stop_after: int | None = None, desc: str = "train") -> LoopOutcome:
    """Train ``objective`` for ``cfg.steps`` steps (fewer if ``cfg.patience`` stops it early),
    resuming from ``workdir/checkpoint.pt`` if present; 0 steps evaluates the starting point.

    ``stop_after`` simulates a preemption signal after that step (tests and drills use it).
    """
    if cfg.steps == 0:  # nothing to train: the starting point is the answer (a zero-shot baseline)
        dev = objective.evaluate(0)
        curve = [{"step": 0, "loss": math.nan, "dev_metric": dev, "tokens_per_second": 0.0, "wall_seconds": 0.0}]
        return LoopOutcome(0, dev, objective.snapshot(), curve, last_step=0, stopped_early=False)
    workdir = Path(workdir)
    ckpt_path = workdir / "checkpoint.pt"
    torch.manual_seed(cfg.seed)
    groups = objective.param_groups(cfg.lr)
    optimizer, scheduler = make_optimizer(groups, cfg)
    params = [p for g in groups for p in g["params"]]
    step, best_step, best_dev, best_snapshot, curve = 0, -1, -math.inf, {}, []
    stale, stopped_early = 0, False  # evaluations since the last new best; early stop reached
    if ckpt_path.exists():
        try:
            state = torch.load(ckpt_path, weights_only=False)
        except Exception as exc:  # torch raises several types for a damaged file
            raise CheckpointError(f"{ckpt_path}: cannot read the checkpoint ({type(exc).__name__}: {exc}); "
                                  f"delete it to start over") from None
        if state["config"] != cfg.record():
            raise CheckpointError(f"{ckpt_path} was written with a different configuration; delete it to start over")
        objective.load_state_dict(state["objective"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        stream.load_state_dict(state["stream"])
        _set_rng_state(state["rng"])
        step, best_step, best_dev = state["step"], state["best_step"], state["best_dev"]
        best_snapshot, curve = state["best_snapshot"], state["curve"]
        window = state["window"]
        stale, stopped_early = state.get("stale", 0), state.get("stopped_early", False)
    else:
        window = {"loss": 0.0, "tokens": 0}

    saved_step = step if ckpt_path.exists() else 0  # the step of the checkpoint on disk

    def save_checkpoint() -> None:
        nonlocal saved_step
        state = {"config": cfg.record(), "objective": objective.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "stream": stream.state_dict(), "rng": _rng_state(),
                 "step": step, "best_step": best_step, "best_dev": best_dev, "best_snapshot": best_snapshot,
                 "curve": curve, "window": window, "stale": stale, "stopped_early": stopped_early}
        atomic_write(ckpt_path, lambda tmp: torch.save(state, tmp))
        saved_step = step

    stop = StopFlag()
    bar = tqdm(total=cfg.steps, initial=step, desc=desc, disable=not progress, dynamic_ncols=True)
    window_start = time.perf_counter()
    with stop.installed():
        while step < cfg.steps and not stopped_early:
            batch = {k: v.to(device()) for k, v in next(stream).items()}
            optimizer.zero_grad(set_to_none=True)
            loss = backward(objective, batch, cfg.micro_batch_size)
            if not torch.isfinite(loss):
                bar.close()
                kept = (f"the last good checkpoint (step {saved_step}) is kept in {ckpt_path}" if saved_step
                        else "no checkpoint was written yet")
                raise TrainingDiverged(f"{desc}: the loss is {loss.item()} at step {step + 1} (lr {cfg.lr:g}); "
                                       f"{kept}; lower the learning rate or clip gradients (--max-grad-norm)")
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            step += 1
            window["loss"] += loss.item()
            window["tokens"] += int(tokens_per_batch(batch)) if tokens_per_batch else 0
            bar.update(1)
            if step % cfg.eval_every == 0 or step == cfg.steps:
                elapsed = time.perf_counter() - window_start
                dev = objective.evaluate(step)
                n = cfg.eval_every if step % cfg.eval_every == 0 else step % cfg.eval_every
                curve.append({"step": step, "loss": window["loss"] / n, "dev_metric": dev,
                              "tokens_per_second": window["tokens"] / elapsed if elapsed > 0 else 0.0,
                              "wall_seconds": elapsed})
                if dev > best_dev:
                    best_step, best_dev, best_snapshot, stale = step, dev, objective.snapshot(), 0
                else:
                    stale += 1
                stopped_early = cfg.patience is not None and stale >= cfg.patience and step < cfg.steps
                bar.set_postfix(loss=f"{window['loss'] / n:.4f}", dev=f"{dev:.2f}", best=f"{best_dev:.2f}")
                window, window_start = {"loss": 0.0, "tokens": 0}, time.perf_counter()
            preempt = stop.requested or (stop_after is not None and step >= stop_after)
            if step % cfg.checkpoint_every == 0 or preempt or stopped_early:
                save_checkpoint()  # after an early stop too: a rerun must not train past it
            if preempt and step < cfg.steps and not stopped_early:
                bar.close()
                raise Preempted(f"stopped at step {step}; checkpoint in {ckpt_path}; rerun the same command to resume")
    bar.close()
    return LoopOutcome(best_step, best_dev, best_snapshot, curve, last_step=step, stopped_early=stopped_early)
