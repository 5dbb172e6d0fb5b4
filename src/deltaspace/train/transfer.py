"""`deltaspace task-transfer`: a source task's trained delta, evaluated zero-shot on another task.

The survey's task-level transferability study (§5.4, Figure 12; notes A26): train a delta on a
source task, then apply it with no further training to a target task's test split. The figure
divides that score by the target's own trained score; this command writes the raw zero-shot
score, and the tables do the division (the target's own score is its stage-0 result).

The source is a grid of stage-0 run folders of one task, one method and one backbone (learning
rates, seeds); the run best on its own dev split is transferred, as the stage-0 tables pick it.
θ is rebuilt on the backbone it was trained on, with the options recorded in its theta.json.
For an encoder the label head takes the *target's* verbalizers, so a target with another label
set works: the θ only adapts the encoder, and the head has no parameters of its own.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..io import write_parquet
from ..options import positive_int
from ..provenance import provenance


@dataclass
class SourceRun:
    path: Path
    row: dict


def read_source_run(path: str | Path) -> SourceRun:
    """One finished stage-0 run folder: its result row, after checking θ is there too."""
    path = Path(path)
    result = path / "result.parquet"
    if not result.exists():
        raise FileNotFoundError(f"{path}: not a finished stage-0 run folder (no result.parquet); "
                                f"`deltaspace train --out {path}` writes one")
    for name in ("theta.safetensors", "theta.json"):
        if not (path / name).exists():
            raise FileNotFoundError(f"{path}: stage-0 run folder without {name}; rerun `deltaspace train`")
    rows = pd.read_parquet(result).to_dict("records")
    if len(rows) != 1:
        raise ValueError(f"{result}: expected one result row of a stage-0 run, found {len(rows)}")
    row = rows[0]
    if row.get("stage", "stage0") != "stage0":
        raise ValueError(f"{result}: stage {row['stage']!r} is not a stage-0 run; --source takes the folders "
                         "`deltaspace train` writes")
    return SourceRun(path, row)


def best_source(runs: list[SourceRun]) -> SourceRun:
    """The run best on its dev split; runs must share task, method and backbone (one grid)."""
    if not runs:
        raise ValueError("--source needs at least one stage-0 run folder")
    for key in ("task", "method", "backbone"):
        values = sorted({str(r.row[key]) for r in runs})
        if len(values) > 1:
            listing = ", ".join(f"{r.path} ({key}={r.row[key]})" for r in runs)
            raise ValueError(f"--source runs must be one grid of one task, method and backbone; they differ in "
                             f"{key}: {listing}")
    scored = [r for r in runs if not math.isnan(float(r.row["dev_metric"]))]
    if not scored:
        raise ValueError(f"no --source run has a dev_metric: {', '.join(str(r.path) for r in runs)}")
    # Ties go to the first folder by name, so the choice does not depend on the argument order.
    return min(scored, key=lambda r: (-float(r.row["dev_metric"]), str(r.path)))


def head_for_method(method: str) -> str:
    """A θ with a ``classifier`` component was trained with ``--head classifier``."""
    return "classifier" if "classifier" in [p.strip() for p in method.split("+")] else "label"


def task_transfer(sources: list[str | Path], data_dir: str | Path, out: str | Path, *, eval_batch_size: int = 32,
                  experiment: str = "adhoc") -> pd.DataFrame:
    """Evaluate the best source θ zero-shot on the target's test split; write ``out/result.parquet``."""
    import torch

    from ..backbones import load_backbone
    from ..deltas import build_delta
    from ..heads import MLM_HEADS, encode_rows, task_head
    from .batching import load_task_data, split_rows
    from .evaluate import evaluate_rows
    from .loop import device
    from .stage0 import load_theta

    started = time.perf_counter()
    runs = [read_source_run(p) for p in sources]
    best = best_source(runs)
    theta, meta = load_theta(best.path)
    backbone_name, method = meta["backbone"], meta["method"]
    target = load_task_data(data_dir)
    prepared = target.manifest.get("backbone")
    if prepared is not None and prepared != backbone_name:
        raise ValueError(f"{target.path}: the target data is prepared (tokenized) for backbone {prepared!r}, but "
                         f"the source θ in {best.path} was trained on {backbone_name!r}; prepare the target "
                         f"with `deltaspace prepare --backbone {backbone_name}`")
    head_name = best.row.get("head") or head_for_method(method)  # runs before `head` was recorded: infer it
    # Tiny test backbones are random: the source's seed rebuilds the very backbone θ was trained on.
    backbone = load_backbone(backbone_name, seed=int(best.row["seed"]), mlm_head=head_name in MLM_HEADS)
    backbone.model.to(device())
    delta = build_delta(method, backbone, **meta["options"])
    recorded = [s["name"] for s in meta["manifest"]]
    if theta.numel() != delta.size or recorded != [s.name for s in delta.manifest]:
        raise ValueError(f"{best.path}: θ has {theta.numel()} values over {len(recorded)} tensors, but method "
                         f"{method!r} with options {meta['options']} on {backbone_name!r} now has {delta.size} over "
                         f"{len(delta.manifest)}; the method's code or defaults changed since it was trained")
    head = task_head(backbone, delta, target, head_name)
    with torch.no_grad():
        test = evaluate_rows(delta, head, theta.to(device()), encode_rows(head, split_rows(target, "test")),
                             target.metric, eval_batch_size)
    source = best.row
    config = {"source_task": source["task"], "source_config_hash": source.get("config_hash"), "method": method,
              "options": meta["options"], "backbone": backbone_name, "task": target.name,
              "data_sha256": target.manifest.get("content_sha256"), "experiment": experiment}
    row = {"experiment": experiment, "stage": "task-transfer", "setting": source.get("setting", "single"),
           "source_task": source["task"], "task": target.name, "method": source["method"],
           "backbone": backbone_name, "seed": source["seed"], "lr": source["lr"],
           "source_dev_metric": float(source["dev_metric"]), "source_test_metric": float(source["test_metric"]),
           "test_metric": test, "metric": target.metric, "size": delta.size, "source_run": str(best.path),
           "source_runs": len(runs), **provenance(config, time.perf_counter() - started)}
    result = pd.DataFrame([row])
    write_parquet(result, Path(out) / "result.parquet")
    return result


def _run(args) -> int:
    result = task_transfer(args.source, args.data, args.out, eval_batch_size=args.eval_batch_size,
                           experiment=args.experiment)
    row = result.iloc[0]
    print(f"{row.source_task} -> {row.task} {row.method} (source lr={row.lr:g}, dev {row.source_dev_metric:.2f}): "
          f"zero-shot test {row.test_metric:.2f} ({row.metric})")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("task-transfer", help="zero-shot transfer of a source task's best stage-0 delta "
                                                    "to a target task (survey §5.4)")
    p.add_argument("--source", required=True, nargs="+", metavar="RUN_DIR",
                   help="stage-0 run folders of the source task (one grid); the best on dev is transferred")
    p.add_argument("--data", required=True, help="the target task's prepared folder; its test split is scored")
    p.add_argument("--out", required=True, help="output folder: result.parquet (stage task-transfer)")
    p.add_argument("--eval-batch-size", type=positive_int, default=32)
    p.add_argument("--experiment", default="adhoc", help="experiment name recorded in the results")
    p.add_argument("--no-progress", action="store_true", help="accepted like every job's flag; prints no bar")
    p.set_defaults(func=_run)
