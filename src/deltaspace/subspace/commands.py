"""`deltaspace fit-subspace | optimize-subspace | landscape`: the subspace stages' entry points."""

from __future__ import annotations

from ..deltas import METHODS
from ..options import non_negative_float, positive_float, positive_int
from ..train.commands import add_loop_arguments, loop_config
from ..train.loop import Preempted
from .runtime import DEFAULT_PER_TASK_CAP, TASK_MIXES
from ..plan import IPT_MODES
from .stages import MODES


def _preemptible(command: str, run) -> int:
    try:
        result = run()
    except Preempted as stop:
        print(f"deltaspace {command}: {stop}")
        return 143
    cols = [c for c in ("stage", "task", "source_method", "target_method", "dev_metric", "test_metric")
            if c in result]
    print(result[cols].drop_duplicates().to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    return 0


def _fit(args) -> int:
    from .run import fit_subspace
    from .runtime import parse_method_sets

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; valid methods: {', '.join(METHODS)}")
    if args.mode in IPT_MODES and (len(methods) != 1 or methods[0] not in IPT_MODES[args.mode]):
        raise ValueError(f"--mode {args.mode} builds IPT's subspace of one method: --methods "
                         f"{' or '.join(IPT_MODES[args.mode])}, not {args.methods!r}")
    return _preemptible("fit-subspace", lambda: fit_subspace(
        args.mode, args.backbone, methods, parse_method_sets(args.set, methods), args.y, args.train_data,
        args.stage0 or [], loop_config(args), args.out, recon_weight=args.recon_weight, lr_vector=args.lr_vector,
        experiment=args.experiment, setting=args.setting, eval_batch_size=args.eval_batch_size,
        progress=not args.no_progress, stop_after=args.stop_after_step, task_mix=args.task_mix,
        per_task_cap=args.per_task_cap, recon_form=args.recon_form, test_data=args.test_data))


def _optimize(args) -> int:
    from .run import optimize_subspace

    return _preemptible("optimize-subspace", lambda: optimize_subspace(
        args.subspace, args.method, args.data, loop_config(args), args.out, experiment=args.experiment,
        setting=args.setting, subset=args.subset, eval_batch_size=args.eval_batch_size, progress=not args.no_progress,
        stop_after=args.stop_after_step))


def _landscape(args) -> int:
    from .run import landscape

    result = landscape(args.subspace, args.intrinsic, args.data, args.out, lo=args.lo, hi=args.hi, step=args.step,
                       split=args.split, max_examples=args.max_examples, stage0=args.stage0 or [],
                       experiment=args.experiment, setting=args.setting, eval_batch_size=args.eval_batch_size,
                       progress=not args.no_progress)
    best = result.loc[result.relative.idxmax()]
    print(f"{len(result)} scores; best P={best.relative:.3f} at (α, β) = ({best.alpha:g}, {best.beta:g}); "
          f"plot: {args.out}/landscape.png")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("fit-subspace", help="stage 1: fit a subspace shared by delta methods")
    p.add_argument("--mode", choices=MODES, required=True,
                   help="joint decomposition, shared-vector (simplified) pipeline, IPT's MSF, or IPT's "
                   "random subspace of the prompt (Random_prompt) or of every weight (Random_all-param, "
                   "--methods finetune), which train nothing")
    p.add_argument("--backbone", required=True)
    p.add_argument("--methods", required=True, help="comma-separated, e.g. adapter,prefix,lora")
    p.add_argument("--set", action="append", metavar="METHOD.KEY=VALUE", help="method option, e.g. lora.r=8")
    p.add_argument("--y", type=positive_int, required=True, help="intrinsic dimension (d_I in IPT)")
    p.add_argument("--train-data", nargs="*", default=[], help="prepared folders of the training tasks")
    p.add_argument("--stage0", nargs="*", help="stage-0 output folders (every LR/seed; the best on dev is used)")
    p.add_argument("--test-data", nargs="*", default=[],
                   help="msf: prepared folders of unseen tasks whose own stage-0 prompts (in --stage0) the fitted "
                        "auto-encoder reconstructs and scores (IPT's T_test (MSF), rows with subset test)")
    p.add_argument("--recon-weight", type=non_negative_float, default=10.0, help="reconstruction weight (10; IPT: 200)")
    p.add_argument("--recon-form", choices=("sum", "mean"), default="sum",
                   help="msf: L_AE as the paper's sum of squares over a prompt (default) or the released code's "
                        "element mean (1/(n·d) of it)")
    p.add_argument("--lr-vector", type=positive_float, default=None, help="shared mode: learning rate of the task vectors")
    p.add_argument("--task-mix", choices=TASK_MIXES, default=None,
                   help="multi-task batches: blend = up to --per-task-cap instances per task shuffled into one set "
                        "(unified-dt A.2; the default of --mode joint), round-robin = one task per step in turn, "
                        "every task equally often (the default of the other modes)")
    p.add_argument("--per-task-cap", type=positive_int, default=DEFAULT_PER_TASK_CAP,
                   help="blend: instances sampled per task (unified-dt A.2: 20000)")
    p.add_argument("--out", required=True)
    add_loop_arguments(p)
    p.set_defaults(func=_fit)

    p = subparsers.add_parser("optimize-subspace", help="stages 2-3: tune an intrinsic vector, transfer it")
    p.add_argument("--subspace", required=True, nargs="+",
                   help="folder(s) written by fit-subspace (an LR grid: the best on dev is used)")
    p.add_argument("--method", required=True, choices=sorted(METHODS))
    p.add_argument("--data", required=True, help="prepared folder of an unseen task")
    p.add_argument("--subset", default="", help="the task's role, recorded in the results (IPT: train-same, "
                   "train-diff, test, test-in, test-out)")
    p.add_argument("--out", required=True)
    add_loop_arguments(p)
    p.set_defaults(func=_optimize)

    p = subparsers.add_parser("landscape", help="performance landscape around the subspace solutions")
    p.add_argument("--subspace", required=True, nargs="+", help="fit-subspace folder(s); the best on dev is used")
    p.add_argument("--intrinsic", nargs="+", required=True, help="optimize-subspace folders (best per method used)")
    p.add_argument("--data", required=True)
    p.add_argument("--stage0", nargs="*", help="stage-0 folders of the task, for E_PET")
    p.add_argument("--out", required=True)
    p.add_argument("--lo", type=float, default=-4.0)
    p.add_argument("--hi", type=float, default=4.0)
    p.add_argument("--step", type=positive_float, default=0.4)
    p.add_argument("--split", choices=["dev", "test"], default="test")
    p.add_argument("--max-examples", type=positive_int, default=None)
    p.add_argument("--eval-batch-size", type=positive_int, default=32)
    p.add_argument("--experiment", default="adhoc")
    p.add_argument("--setting", default="single")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_landscape)
