"""Fused optimize-subspace runs: K intrinsic-vector runs of one subspace train in one process.

The runs of one subspace and source method (a setting's learning-rate grid × seeds × tasks) share
everything but their vector: the subspace's frozen decoders and the backbone copy of each of its
methods. A fused job loads those once and steps every run together, as fused stage-0 runs do
(:mod:`deltaspace.train.fused`): each step's batch holds every active run's rows, and run k's rows
compute with θ_k = its decoder(its vector), bound by the same :class:`GroupedBinding`. Each run keeps
its own vector, optimizer, schedule, batch stream, evaluation (every target method decodes its
vector, as ``deltaspace optimize-subspace`` does), early stopping and checkpoint, and writes the
folder ``deltaspace optimize-subspace`` writes.

Runs that cannot share (:func:`deltaspace.train.fused.why_alone`): a source method whose θ is
backbone weights (fine-tuning through Fastfood in a shared subspace), a zero-step or a micro-batched
run trains alone, one after another, as ``deltaspace optimize-subspace`` would.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..train.fused import (FusedRun, GroupedBinding, drop_kept_checkpoints, parse_run, run_fused_command,
                           train_group, why_alone)


def _group_runs(parsed: list) -> dict[tuple, list[int]]:
    """Runs that can share one loaded subspace, keyed by (best fit folder, source method, tiny-backbone
    seed, why alone); runs whose folder has result.parquet already are left out."""
    from ..backbones import backbone_spec
    from ..train.commands import loop_config
    from .run import best_subspace

    groups: dict[tuple, list[int]] = {}
    for i, a in enumerate(parsed):
        if (Path(a.out) / "result.parquet").exists():
            print(f"deltaspace optimize-fused: {a.out} already has result.parquet; skipped")
            continue
        cfg = loop_config(a)
        folder = best_subspace(a.subspace)
        meta_path = folder / "subspace.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{folder}: no subspace.json; run `deltaspace fit-subspace` first")
        backbone = json.loads(meta_path.read_text())["backbone"]
        tiny_seed = cfg.seed if backbone_spec(backbone).source == "tiny" else None  # random weights per seed
        groups.setdefault((str(folder), a.method, tiny_seed, why_alone(a.method, cfg)), []).append(i)
    return groups


def _kwargs(a) -> dict:
    return dict(experiment=a.experiment, setting=a.setting, subset=a.subset, eval_batch_size=a.eval_batch_size)


def optimize_fused(run_args: list[list[str]], progress: bool = True, stop_after: int | None = None) -> list:
    """Train the runs given as ``deltaspace optimize-subspace`` argument lists; returns each run's
    result (a DataFrame, or None for a run skipped because its folder already has result.parquet)."""
    from ..train.commands import loop_config
    from .run import finish_optimize, load_for_optimize, optimize_subspace, setup_optimize

    parsed = [parse_run(a, "optimize-subspace") for a in run_args]
    outs = [Path(a.out).resolve() for a in parsed]
    if len(set(outs)) != len(outs):
        raise ValueError("two fused runs write the same --out folder")
    results: list = [None] * len(parsed)
    for (folder, method, _, alone), members in _group_runs(parsed).items():
        if alone:
            print(f"deltaspace optimize-fused: {alone}: training {len(members)} run(s) one after another, "
                  "each as deltaspace optimize-subspace does")
            for i in members:
                a = parsed[i]
                results[i] = optimize_subspace(folder, method, a.data, loop_config(a), a.out, progress=progress,
                                               stop_after=stop_after, **_kwargs(a))
            continue
        shared = load_for_optimize(folder, loop_config(parsed[members[0]]).seed)
        binding = GroupedBinding(shared[2][method].delta)
        runs = [FusedRun(setup_optimize(folder, method, parsed[i].data, loop_config(parsed[i]), parsed[i].out,
                                        shared=shared, **_kwargs(parsed[i])), stop_after) for i in members]
        train_group(runs, members, binding, results, finish_optimize, progress)
    drop_kept_checkpoints(outs)
    return results


def _print(result) -> None:
    own = result[result.source_method == result.target_method].iloc[0]
    print(f"{own.task} {own.method} lr={own.lr:g} seed={own.seed}: best step {own.best_step}, "
          f"dev {own.dev_metric:.2f}, test {own.test_metric:.2f} ({own.metric}); "
          f"{len(result) - 1} transfer row(s)")


def register(subparsers) -> None:
    run_fused_command(subparsers, "optimize-fused", "optimize-subspace", optimize_fused, _print,
                      help="stages 2-3: tune K intrinsic vectors of one subspace together, one batch a step",
                      description="Train several `deltaspace optimize-subspace` runs in one process over one "
                                  "loaded subspace and its frozen backbones; each writes the folder "
                                  "`deltaspace optimize-subspace` writes. Runs whose folder has result.parquet "
                                  "are skipped; SIGTERM checkpoints all.")


if __name__ == "__main__":  # pragma: no cover
    from ..cli import main

    sys.exit(main(["optimize-fused", *sys.argv[1:]]))
