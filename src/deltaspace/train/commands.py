"""`deltaspace train`: stage 0, one method on one prepared task at one learning rate and seed."""

from __future__ import annotations

import argparse

from ..deltas import METHODS, UnknownMethodError, check_method_name
from ..heads import HEADS
from ..options import non_negative_float, non_negative_int, parse_sets, positive_float, positive_int
from .loop import LoopConfig, Preempted


def add_loop_arguments(p) -> None:
    """The loop settings every training-like command takes."""
    d = LoopConfig()
    p.add_argument("--lr", type=non_negative_float, required=True, help="learning rate (> 0; 0 only where nothing is trained: --steps 0, --mode random)")
    p.add_argument("--seed", type=int, default=d.seed, help=f"seed of θ's init, batch order and dropout ({d.seed})")
    p.add_argument("--steps", type=non_negative_int, default=d.steps, help=f"optimizer steps ({d.steps})")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, help=f"training batch size ({d.batch_size})")
    p.add_argument("--micro-batch-size", type=positive_int, default=None, metavar="N",
                   help="forward and backward N rows at a time, accumulating the batch's gradient (default: "
                        "the whole batch); for batches that do not fit in device memory")
    p.add_argument("--eval-every", type=positive_int, default=d.eval_every,
                   help=f"score dev every N steps and at the last one ({d.eval_every})")
    p.add_argument("--checkpoint-every", type=positive_int, default=d.checkpoint_every,
                   help=f"write checkpoint.pt every N steps ({d.checkpoint_every})")
    p.add_argument("--optimizer", choices=["adafactor", "adamw"], default=d.optimizer,
                   help=f"optimizer ({d.optimizer}: constant lr, as unified-dt)")
    p.add_argument("--schedule", choices=["constant", "linear"], default=d.schedule,
                   help=f"learning-rate schedule after warmup ({d.schedule})")
    p.add_argument("--warmup-steps", type=non_negative_int, default=d.warmup_steps, help=f"linear warmup steps ({d.warmup_steps})")
    p.add_argument("--weight-decay", type=non_negative_float, default=d.weight_decay,
                   help=f"weight decay on the trained parameters ({d.weight_decay:g})")
    p.add_argument("--max-grad-norm", type=non_negative_float, default=d.max_grad_norm,
                   help=f"gradient clipping norm, 0 = none ({d.max_grad_norm:g})")
    p.add_argument("--eval-batch-size", type=positive_int, default=32, help="batch size for dev/test predictions (32)")
    p.add_argument("--experiment", default="adhoc", help="experiment name recorded in the results")
    p.add_argument("--setting", default="single", help="setting name recorded in the results")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (batch jobs)")
    p.add_argument("--stop-after-step", type=int, default=None, help=argparse_hidden())


def argparse_hidden():
    return argparse.SUPPRESS  # a preemption drill for tests: behave as if SIGTERM came after step N


def loop_config(args) -> LoopConfig:
    steps = args.steps if args.steps is not None else LoopConfig().steps
    return LoopConfig(steps=steps, lr=args.lr, batch_size=args.batch_size, optimizer=args.optimizer,
                      schedule=args.schedule, warmup_steps=args.warmup_steps, weight_decay=args.weight_decay,
                      max_grad_norm=args.max_grad_norm, eval_every=args.eval_every,
                      checkpoint_every=args.checkpoint_every, seed=args.seed,
                      patience=getattr(args, "patience", None),  # only `deltaspace train` has --patience
                      micro_batch_size=args.micro_batch_size)


def method_name(text: str) -> str:
    """argparse type: a registered method or a composite ``a+b+c`` of them."""
    try:
        return check_method_name(text)
    except UnknownMethodError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def init_ist(args) -> tuple[list, list] | None:
    """``--init-from-ist`` with its ``--ist-subspace``: both or neither."""
    if bool(args.init_from_ist) != bool(args.ist_subspace):
        raise ValueError("--init-from-ist (the IST runs) and --ist-subspace (the subspace they optimized in) go "
                         "together")
    return (args.ist_subspace, args.init_from_ist) if args.init_from_ist else None


def _run(args) -> int:
    from .stage0 import parse_records, train_stage0

    if args.epochs is not None and args.steps is not None and args.steps != LoopConfig().steps:
        raise ValueError(f"--epochs {args.epochs:g} and --steps {args.steps} both set the training length; "
                         "give one of them")
    records = parse_records(args.record)
    try:
        result = train_stage0(args.data, args.method, args.backbone, parse_sets(args.set), loop_config(args), args.out,
                              experiment=args.experiment, setting=args.setting,
                              eval_batch_size=args.eval_batch_size, progress=not args.no_progress,
                              stop_after=args.stop_after_step, head=args.head, epochs=args.epochs,
                              init_from=args.init_from, init_ist=init_ist(args), record=records,
                              train_eval=args.train_eval)
    except Preempted as stop:
        print(f"deltaspace train: {stop}")
        return 143  # 128 + SIGTERM: the scheduler sees a preempted job and reruns it
    row = result.iloc[0]
    stopped = f", stopped early at step {row.steps_run}" if row.stopped_early else ""
    print(f"{row.task} {row.method} lr={row.lr:g} seed={row.seed}: best step {row.best_step}{stopped}, "
          f"dev {row.dev_metric:.2f}, test {row.test_metric:.2f} ({row.metric})")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="stage 0: train a delta method on one prepared task",
                              description="Stage 0: train a delta method's θ on one prepared task; writes "
                                          "theta.safetensors, theta.json, curve.parquet and result.parquet.")
    p.add_argument("--data", required=True, help="prepared task folder (from `deltaspace prepare`)")
    p.add_argument("--method", required=True, type=method_name, metavar="METHOD",
                   help="a delta method, or several joined by + trained together (e.g. prompt+bitfit+adapter); "
                        f"methods: {', '.join(METHODS)}")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="method option, e.g. r=8; for a composite component.key, e.g. prompt.n=10")
    p.add_argument("--backbone", required=True, help="backbone name or model folder; the data must be prepared for it")
    p.add_argument("--out", required=True, help="output folder: theta.safetensors, curve.parquet, result.parquet")
    add_loop_arguments(p)
    p.set_defaults(steps=None)  # None = not given, so --epochs can tell an explicit --steps apart
    g = p.add_argument_group("stage-0 options")
    g.add_argument("--epochs", type=positive_float, default=None, metavar="E",
                   help="train ceil(E * train rows / batch size) steps instead of --steps")
    g.add_argument("--patience", type=positive_int, default=None, metavar="P",
                   help="early stopping: stop after P evaluations in a row without a new best dev score "
                        "(default: off)")
    g.add_argument("--head", choices=list(HEADS), default="label",
                   help="label (default): text generation on seq2seq, the parameter-free label head on encoders; "
                        "classifier: a trainable RoBERTa-style head on encoders, trained as METHOD+classifier "
                        "(its weights are part of θ); mlm: the pretrained masked-LM head scores the task's label "
                        "words at a [MASK] appended as [CLS] x [SEP] [MASK] [SEP]; mlm-template: the same at the "
                        "[MASK] of the task's manual template (registry `prompt`; survey Tables 4-7). Regression "
                        "on encoders needs classifier, mlm or mlm-template")
    g.add_argument("--init-from", nargs="+", metavar="RUN_DIR", default=None,
                   help="sequential combination: start from the run with the best dev_metric among these stage-0 "
                        "output folders, copying every θ slice whose name exists there and freezing it")
    g.add_argument("--init-from-ist", nargs="+", metavar="RUN_DIR", default=None,
                   help="IPT's two-stage prompt tuning: start θ at the intrinsic vector of the best-on-dev of these "
                        "optimize-subspace runs, decoded by --ist-subspace's decoder; every entry trains")
    g.add_argument("--ist-subspace", nargs="+", metavar="FIT_DIR", default=None,
                   help="the fit-subspace folder(s) the --init-from-ist runs optimized in (the best on dev is used)")
    g.add_argument("--train-eval", type=int, default=None, metavar="N",
                   help="also score the selected checkpoint on a fixed random sample of at most N training "
                        "examples (train_metric: the survey's generalization gap, Table 7)")
    g.add_argument("--record", action="append", metavar="KEY=VALUE",
                   help="extra or overriding result column, e.g. method=hadapter (repeatable; numbers stay numbers)")
    p.set_defaults(func=_run)
