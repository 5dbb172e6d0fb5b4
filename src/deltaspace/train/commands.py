"""`deltaspace train`: stage 0, one method on one prepared task at one learning rate and seed."""

from __future__ import annotations

from ..deltas import METHODS
from ..options import parse_sets
from .loop import LoopConfig, Preempted


def add_loop_arguments(p) -> None:
    """The loop settings every training-like command takes."""
    d = LoopConfig()
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--optimizer", choices=["adafactor", "adamw"], default=d.optimizer)
    p.add_argument("--schedule", choices=["constant", "linear"], default=d.schedule)
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--max-grad-norm", type=float, default=d.max_grad_norm)
    p.add_argument("--eval-batch-size", type=int, default=32)
    p.add_argument("--experiment", default="adhoc", help="experiment name recorded in the results")
    p.add_argument("--setting", default="single", help="setting name recorded in the results")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (batch jobs)")
    p.add_argument("--stop-after-step", type=int, default=None, help=argparse_hidden())


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS  # a preemption drill for tests: behave as if SIGTERM came after step N


def loop_config(args) -> LoopConfig:
    return LoopConfig(steps=args.steps, lr=args.lr, batch_size=args.batch_size, optimizer=args.optimizer,
                      schedule=args.schedule, warmup_steps=args.warmup_steps, weight_decay=args.weight_decay,
                      max_grad_norm=args.max_grad_norm, eval_every=args.eval_every,
                      checkpoint_every=args.checkpoint_every, seed=args.seed)


def _run(args) -> int:
    from .stage0 import train_stage0

    try:
        result = train_stage0(args.data, args.method, args.backbone, parse_sets(args.set), loop_config(args), args.out,
                              experiment=args.experiment, setting=args.setting,
                              eval_batch_size=args.eval_batch_size, progress=not args.no_progress,
                              stop_after=args.stop_after_step)
    except Preempted as stop:
        print(f"deltaspace train: {stop}")
        return 143  # 128 + SIGTERM: the scheduler sees a preempted job and reruns it
    row = result.iloc[0]
    print(f"{row.task} {row.method} lr={row.lr:g} seed={row.seed}: best step {row.best_step}, "
          f"dev {row.dev_metric:.2f}, test {row.test_metric:.2f} ({row.metric})")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="stage 0: train a delta method on one prepared task")
    p.add_argument("--data", required=True, help="prepared task folder (from `deltaspace prepare`)")
    p.add_argument("--method", required=True, choices=sorted(METHODS))
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="method option, e.g. r=8")
    p.add_argument("--backbone", required=True)
    p.add_argument("--out", required=True, help="output folder: theta.safetensors, curve.parquet, result.parquet")
    add_loop_arguments(p)
    p.set_defaults(func=_run)
