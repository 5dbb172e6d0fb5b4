"""The decomposition paper's commands: `deltaspace synthetic-mpc` (the synthetic study of
Propositions 1-2 and MPC) and `deltaspace permille-parity` (its ‰Params column from configs)."""

from __future__ import annotations

import argparse

from ..options import positive_int


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def _run(args) -> int:
    import pandas as pd

    from .synthetic import ALL_METHODS, StudyConfig, ordering, run_and_write, summary

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip()) if args.methods else ALL_METHODS
    cfg = StudyConfig(ranks=_ints(args.ranks), seeds=args.seeds, n=args.n, m=args.m, steps=args.steps,
                      target_rank=args.target_rank or min(args.n, args.m) // 2, decay=args.decay,
                      mpc_weight=args.mpc_weight, lrs=_floats(args.lrs), methods=methods)
    result = run_and_write(cfg, args.out, experiment=args.experiment, progress=args.progress)
    frame = result.assign(selected=True)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print("mean relative error ‖∆W* − ∆W‖²/‖∆W*‖² over seeds (best lr per run):")
        print(summary(frame).to_string(float_format=lambda x: f"{x:.4f}", na_rep=""))
        for suffix in ("", "-mpco"):
            share = ordering(frame, suffix)
            if len(share):
                print(share.to_string(float_format=lambda x: f"{x:.2f}"))
    print(f"wrote {args.out}/result.parquet ({len(result)} rows, experiment {args.experiment}), grid.parquet, "
          f"summary.csv, synthetic-mpc.png in {result['wall_seconds'].iloc[0]:.0f} s")
    return 0


def _parity(args) -> int:
    from ..io import write_parquet
    from .paper import BACKBONES, parity_markdown, parity_table

    backbones = tuple(args.backbone) if args.backbone else BACKBONES
    unknown = sorted(set(backbones) - set(BACKBONES))
    if unknown:
        raise ValueError(f"the decomposition paper has no table for {unknown}; its backbones: {', '.join(BACKBONES)}")
    table = parity_table(backbones)
    print(parity_markdown(table), end="")
    bad = table[~table.agrees]
    print(f"{len(table) - len(bad)}/{len(table)} cells within the paper's rounding; "
          f"{len(bad)} known deviation(s)" + "".join(f"\n  {r.backbone} {r.row} r={r['rank']}: {r.known_deviation}"
                                                  for _, r in bad.iterrows()))
    if args.out:
        write_parquet(table, f"{args.out}/parity.parquet")
    return 0 if all(bad.known_deviation != "") else 1


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "synthetic-mpc", help="decomposition paper: LoRA/TriLoRA/FLoRA/MPC/PA on synthetic matrix approximation",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fit ∆W ≈ W* − W for random low-rank targets with each decomposed form at matched rank "
                    "(Propositions 1-2 and MPC of the decomposition paper). Writes DIR/result.parquet (stage "
                    "synthetic-mpc: one row per form x rank x seed at the kept learning rate, with the relative "
                    "error, the Eckart-Young bound, the parameter count and provenance), grid.parquet (every "
                    "learning rate tried), summary.csv and synthetic-mpc.png (error vs rank per form, with the "
                    "bound), each written atomically.",
        epilog="Cost: the defaults (n = m = 64, ranks 2,4,8,16, 3 seeds, 500 steps, 3 learning rates) take about "
               "45 s on 2 cores. For the quickstart use small settings, about 20 s on one core:\n"
               "  deltaspace synthetic-mpc --out DIR --experiment quickstart --n 32 --m 32 --ranks 2,4,8 "
               "--seeds 2 --steps 300")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--experiment", default="decomposition",
                   help="the result rows' experiment column, which the table specs select (default decomposition; "
                        "the quickstart uses quickstart)")
    p.add_argument("--ranks", default="2,4,8,16", help="comma-separated ranks r")
    p.add_argument("--seeds", type=positive_int, default=3, help="number of seeds (targets), 0..seeds-1")
    p.add_argument("--n", type=int, default=64, help="rows of W (input dimension)")
    p.add_argument("--m", type=int, default=64, help="columns of W (output dimension)")
    p.add_argument("--steps", type=positive_int, default=500, help="Adam steps per fit")
    p.add_argument("--target-rank", type=int, default=None, help="rank of ∆W* (default min(n, m) / 2)")
    p.add_argument("--decay", type=float, default=0.85, help="spectrum of ∆W*: σ_i ∝ decay^i")
    p.add_argument("--mpc-weight", type=float, default=0.1, help="λ of the MPC regularizers")
    p.add_argument("--lrs", default="3e-3,1e-2,3e-2", help="Adam learning rates; the best per fit is kept")
    p.add_argument("--methods", default=None, help="comma-separated subset of the study's forms")
    p.add_argument("--progress", action="store_true", help="print each fit")
    p.set_defaults(func=_run)

    q = subparsers.add_parser(
        "permille-parity", help="decomposition paper: its ‰Params column (Tables II-IV) recounted from configs",
        description="Counts every method row of Tables II-IV with `describe --config-only` and prints paper / ours "
                    "in ‰ of the backbone as the paper names it (125M, 184M, 355M); see docs/methods.md.")
    q.add_argument("--backbone", action="append", help="roberta-base, deberta-v3-base or roberta-large (default all)")
    q.add_argument("--out", default=None, help="also write DIR/parity.parquet")
    q.set_defaults(func=_parity)
