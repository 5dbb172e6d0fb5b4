"""The subspace commands end to end: load inputs, run the loop, write vectors and result rows."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch

from ..io import write_parquet
from ..plan import optimize_stage
from ..provenance import provenance
from ..train.batching import BatchStream, TaskData, load_task_data, split_rows
from ..train.loop import LoopConfig, run_loop
from ..train.stage0 import check_backbone_matches, load_theta
from .runtime import DEFAULT_PER_TASK_CAP, best_stage0, build_runtimes, default_task_mix, task_streams
from .fastfood import FastfoodProjection
from .projectors import RandomPromptSubspace
from .stages import FitObjective, IntrinsicObjective
from .store import attach_theta0, load_subspace, save_subspace, save_vectors


def _row(base: dict, config: dict, started: float, **values) -> dict:
    return {**base, **values, **provenance(config, time.perf_counter() - started)}


def fit_subspace(mode: str, backbone: str, methods: list[str], options: dict[str, dict], y: int,
                 train_data: list[str], stage0: list[str], cfg: LoopConfig, out: str | Path, *,
                 recon_weight: float, lr_vector: float | None, experiment: str, setting: str,
                 eval_batch_size: int = 32, progress: bool = True, stop_after: int | None = None,
                 task_mix: str | None = None, per_task_cap: int = DEFAULT_PER_TASK_CAP,
                 recon_form: str = "sum", test_data: list[str] | tuple = ()) -> pd.DataFrame:
    """Stage 1: fit the subspace on the training tasks and save each method's decoder.

    ``test_data`` (msf only): unseen tasks whose own best stage-0 prompts (among ``stage0``) the
    fitted auto-encoder reconstructs; their scores are rows with ``subset`` test (IPT's T_test (MSF)).

    ``task_mix`` draws the multi-task batches (:func:`.runtime.task_streams`); its default is
    :func:`.runtime.default_task_mix` of the mode (the paper's blend for ``joint``).
    """
    started, out = time.perf_counter(), Path(out)
    if mode == "random":
        return random_subspace(backbone, methods, options, y, cfg.seed, out)
    if test_data and mode != "msf":
        raise ValueError(f"fit-subspace --test-data reconstructs unseen tasks' prompts: --mode msf only, not {mode}")
    if not train_data:
        raise ValueError(f"fit-subspace --mode {mode} needs --train-data (the training tasks' prepared folders)")
    tasks = [load_task_data(p) for p in train_data]
    for t in tasks:
        check_backbone_matches(t, backbone)
    thetas = None
    if mode in ("joint", "msf"):
        solutions = best_stage0(stage0)
        unseen = [load_task_data(p) for p in test_data]
        for t in unseen:
            check_backbone_matches(t, backbone)
        missing = [(t.name, m) for t in tasks + unseen for m in methods if (t.name, m) not in solutions]
        if missing:
            raise ValueError(f"fit-subspace --mode {mode} needs a stage-0 solution for every training (and "
                             f"--test-data) task and method; missing: {missing}")
        for m in methods:  # the subspace's methods use the options their θ were trained with
            options[m] = {**solutions[tasks[0].name, m].options, **options[m]}
        thetas = {m: torch.stack([load_theta(solutions[t.name, m].path)[0] for t in tasks]) for m in methods}
    runtimes = build_runtimes(backbone, methods, options, cfg.seed)
    objective = FitObjective(mode, runtimes, tasks, thetas, y, cfg.seed, recon_weight, lr_vector, eval_batch_size,
                             recon_form)
    task_mix = task_mix or default_task_mix(mode)
    stream = task_streams(tasks, cfg.batch_size, cfg.seed, next(iter(runtimes.values())).backbone, task_mix,
                          per_task_cap)
    outcome = run_loop(objective, stream, cfg, out, progress=progress, stop_after=stop_after, desc=f"fit {mode}")
    objective.module.load_state_dict(outcome.best_snapshot)
    config = {"mode": mode, "backbone": backbone, "methods": methods, "options": {m: r.delta.options for m, r in
              runtimes.items()}, "y": y, "tasks": [t.name for t in tasks], "loop": asdict(cfg),
              "recon_weight": recon_weight, "lr_vector": lr_vector, "task_mix": task_mix}
    if task_mix == "blend":
        config["per_task_cap"] = per_task_cap
    if mode == "msf":
        config["recon_form"] = recon_form
    save_subspace(out, objective.decoders(), {**config, "best_step": outcome.best_step})
    write_parquet(pd.DataFrame(outcome.curve), out / "curve.parquet")
    base = {"experiment": experiment, "stage": "msf" if mode == "msf" else "fit", "setting": setting,
            "subset": "train", "backbone": backbone, "seed": cfg.seed, "lr": cfg.lr, "steps": cfg.steps,
            "best_step": outcome.best_step, "d_intrinsic": y}
    tests = objective.scores("test")
    rows = [_row(base, config, started, task=task, method=m, source_method=m, target_method=m, dev_metric=dev,
                 test_metric=tests[task, m], metric=next(t.metric for t in tasks if t.name == task),
                 size=runtimes[m].delta.size)
            for (task, m), dev in objective.scores().items()]
    if test_data:
        for task, m, dev, test in reconstructed_scores(objective, unseen, solutions):
            rows.append(_row({**base, "subset": "test"}, config, started, task=task.name, method=m, source_method=m,
                             target_method=m, dev_metric=dev, test_metric=test, metric=task.metric,
                             size=runtimes[m].delta.size))
    result = pd.DataFrame(rows)
    write_parquet(result, out / "result.parquet")
    (out / "checkpoint.pt").unlink(missing_ok=True)
    return result


@torch.no_grad()
def reconstructed_scores(objective: FitObjective, tasks: list, solutions: dict) -> list[tuple]:
    """(task, method, dev, test) of each unseen task's own stage-0 prompt passed through the fitted
    auto-encoder: how well MSF reconstructs prompts it never saw (IPT §4.2, T_test (MSF))."""
    (method, rt), = objective.runtimes.items()
    objective.module.eval()
    out = []
    for task in tasks:
        theta = load_theta(solutions[task.name, method].path)[0].to(next(objective.module.parameters()).device)
        rebuilt, _ = objective.module(theta)
        head = rt.head(task)
        dev, test = (rt.score(rebuilt, head, split_rows(task, split), task.metric, objective.eval_batch_size)
                     for split in ("dev", "test"))
        out.append((task, method, dev, test))
    return out


def random_subspace(backbone: str, methods: list[str], options: dict[str, dict], y: int, seed: int,
                    out: Path) -> pd.DataFrame:
    """IPT's random-subspace baselines (ipt notes §1.6), which train nothing: Random_prompt is MSF's
    decoder at its random init; Random_all-param (``finetune``) is Aghajanyan et al.'s θ0 + Fastfood(I)
    over every backbone weight, each tensor its own transform, G random and frozen. The Fastfood
    decoder stores its seed and shapes only; θ0 joins it when a later stage loads the backbone."""
    from ..backbones import load_backbone
    from ..deltas import build_delta

    (method,) = methods
    delta = build_delta(method, load_backbone(backbone, config_only=True), **options.get(method, {}))
    if method == "prompt":
        n, d = delta.manifest[0].shape
        decoder = RandomPromptSubspace(n, d, y, seed=seed)
    else:
        decoder = FastfoodProjection(y, [slot.shape for slot in delta.manifest], seed=seed, trainable_G=False)
    config = {"mode": "random", "backbone": backbone, "methods": [method], "options": {method: delta.options},
              "y": y, "seed": seed}
    save_subspace(out, {method: decoder}, config)
    result = pd.DataFrame(columns=["experiment", "stage", "task", "method", "dev_metric", "test_metric"])
    write_parquet(result, out / "result.parquet")
    return result


def best_subspace(folders: list[str | Path]) -> Path:
    """Of several fits (a stage-1 LR grid), the one whose decoded θ̄ score best on the training
    tasks' dev sets (mean over tasks and methods), as unified-dt selects stage 1 by dev."""
    folders = sorted(Path(f) for f in folders)
    if len(folders) == 1:
        return folders[0]
    def mean_dev(folder: Path) -> float:
        result = pd.read_parquet(folder / "result.parquet")
        return float(result.dev_metric.mean()) if len(result) else float("-inf")
    return max(folders, key=mean_dev)  # ties keep the first in sorted order


@dataclass
class OptimizeSetup:
    """One optimize-subspace run between its setup and its result rows: what :func:`optimize_subspace`
    trains with :func:`run_loop`, and fused runs (:mod:`.fused`) step together."""

    started: float
    out: Path
    method: str
    cfg: LoopConfig
    task: TaskData
    meta: dict  # the subspace's subspace.json
    objective: IntrinsicObjective
    stream: BatchStream
    base: dict  # experiment, setting, subset

    @property
    def head(self):
        return self.objective.head

    @property
    def desc(self) -> str:
        return f"{self.task.name}/{self.method}"


def load_for_optimize(subspace: str | Path | list, seed: int) -> tuple[dict, dict, dict]:
    """(decoders, subspace.json, one runtime per method) of the best fit among ``subspace``: what
    every optimize run in that subspace shares (a fused job loads them once)."""
    folder = best_subspace(subspace if isinstance(subspace, list) else [subspace])
    decoders, meta = load_subspace(folder)
    runtimes = build_runtimes(meta["backbone"], list(decoders), meta["options"], seed)
    attach_theta0(decoders, runtimes)
    return decoders, {**meta, "folder": str(folder)}, runtimes


def setup_optimize(subspace: str | Path | list, method: str, data_dir: str | Path, cfg: LoopConfig, out: str | Path, *,
                   experiment: str, setting: str, subset: str = "", eval_batch_size: int = 32,
                   shared: tuple | None = None) -> OptimizeSetup:
    """Load one run's task and subspace (or take ``shared``, :func:`load_for_optimize`'s result) and
    build its objective and batch stream."""
    started, out = time.perf_counter(), Path(out)
    decoders, meta, runtimes = shared or load_for_optimize(subspace, cfg.seed)
    if method not in decoders:
        raise ValueError(f"{meta['folder']}: the subspace has no method {method!r}; it has {', '.join(decoders)}")
    task = load_task_data(data_dir)
    check_backbone_matches(task, meta["backbone"])
    objective = IntrinsicObjective(method, decoders, runtimes, task, meta["y"], cfg.seed, eval_batch_size)
    bb = runtimes[method].backbone
    stream = BatchStream(split_rows(task, "train"), cfg.batch_size, cfg.seed, bb.tokenizer.pad_token_id, bb.kind)
    return OptimizeSetup(started, out, method, cfg, task, {k: v for k, v in meta.items() if k != "folder"},
                         objective, stream, {"experiment": experiment, "setting": setting, "subset": subset})


def finish_optimize(s: OptimizeSetup, outcome, keep_checkpoint: bool = False) -> pd.DataFrame:
    """Test each target's best vector and write the vectors, the curve and the result rows (then drop
    the checkpoint, unless ``keep_checkpoint``: a fused job keeps a finished run's until it is done)."""
    meta, cfg, task, objective, out = s.meta, s.cfg, s.task, s.objective, s.out
    write_parquet(pd.DataFrame(outcome.curve), out / "curve.parquet")
    config = {"subspace": meta, "method": s.method, "task": task.name, "loop": asdict(cfg),
              "data_sha256": task.manifest.get("content_sha256")}
    rows, vectors = [], {}
    for target, (dev, step, vector) in objective.best.items():
        vectors[target] = vector
        stage = optimize_stage(meta["mode"], s.method, target)
        rows.append(_row({**s.base, "subspace_mode": meta["mode"], "backbone": meta["backbone"], "seed": cfg.seed,
                          "lr": cfg.lr, "steps": cfg.steps, "d_intrinsic": meta["y"]},
                         config, s.started, stage=stage, task=task.name,
                         method=s.method, source_method=s.method, target_method=target, best_step=step,
                         dev_metric=dev, test_metric=objective.score(target, vector, "test"), metric=task.metric,
                         size=meta["y"]))
    save_vectors(out, vectors)
    result = pd.DataFrame(rows)
    write_parquet(result, out / "result.parquet")
    if not keep_checkpoint:
        (out / "checkpoint.pt").unlink(missing_ok=True)
    return result


def optimize_subspace(subspace: str | Path | list, method: str, data_dir: str | Path, cfg: LoopConfig, out: str | Path, *,
                      experiment: str, setting: str, subset: str = "", eval_batch_size: int = 32,
                      progress: bool = True, stop_after: int | None = None) -> pd.DataFrame:
    """Stages 2 and 3: train an intrinsic vector for ``method``; report it decoded by every method."""
    s = setup_optimize(subspace, method, data_dir, cfg, out, experiment=experiment, setting=setting, subset=subset,
                       eval_batch_size=eval_batch_size)
    outcome = run_loop(s.objective, s.stream, cfg, s.out, progress=progress, stop_after=stop_after, desc=s.desc)
    return finish_optimize(s, outcome)


def best_intrinsic(folders: list[str | Path]) -> dict[str, tuple[torch.Tensor, float]]:
    """Per source method, the intrinsic vector of the optimize run best on its own dev."""
    from safetensors.torch import load_file

    best: dict[str, tuple[torch.Tensor, float]] = {}
    for folder in sorted(Path(f) for f in folders):
        result = pd.read_parquet(folder / "result.parquet")
        own = result[result.source_method == result.target_method].iloc[0]
        if own.method not in best or own.dev_metric > best[own.method][1]:
            best[own.method] = (load_file(str(folder / "intrinsic.safetensors"))[own.method], float(own.dev_metric))
    return best


def ist_solution(subspace: list[str | Path], runs: list[str | Path], method: str) -> tuple[torch.Tensor, Path]:
    """θ = Proj_b(V*): ``method``'s intrinsic vector of the dev-best IST run among ``runs``, decoded by
    the subspace they optimized in (the best fit of ``subspace``); IPT's two-stage prompt tuning
    starts from it (ipt notes §1.4; A17: the dev-selected V, not the last)."""
    from safetensors.torch import load_file

    from ..train.stage0 import best_run

    chosen = best_run(runs, vector=True)
    vectors = load_file(str(chosen / "intrinsic.safetensors"))
    if method not in vectors:
        raise ValueError(f"--init-from-ist {chosen}: it optimized {sorted(vectors)}, not {method!r}")
    decoders, _ = load_subspace(best_subspace(subspace))
    if method not in decoders:
        raise ValueError(f"--ist-subspace: its decoders are {sorted(decoders)}, not {method!r}")
    with torch.no_grad():
        return decoders[method](vectors[method]).detach(), chosen


def landscape(subspace: str | Path | list, intrinsic: list[str], data_dir: str | Path, out: str | Path, *, lo: float,
              hi: float, step: float, split: str, max_examples: int | None, stage0: list[str], experiment: str,
              setting: str, seed: int = 42, eval_batch_size: int = 32, progress: bool = True) -> pd.DataFrame:
    """The performance landscape around the three methods' subspace solutions (unified-dt §2.7)."""
    from tqdm.auto import tqdm

    from .landscape import grid, grid_points, landscape_axes, plot_landscape, relative_landscape

    started, out = time.perf_counter(), Path(out)
    decoders, meta = load_subspace(best_subspace(subspace if isinstance(subspace, list) else [subspace]))
    solutions = best_intrinsic(intrinsic)
    needed = ("adapter", "prefix", "lora")
    missing = [m for m in needed if m not in solutions or m not in decoders]
    if missing:
        raise ValueError(f"the landscape needs subspace solutions of adapter, prefix and lora; missing: {missing}")
    task = load_task_data(data_dir)
    rows = split_rows(task, split)[:max_examples]
    runtimes = build_runtimes(meta["backbone"], list(needed), meta["options"], seed)
    origin, u, v, coords = landscape_axes(*(solutions[m][0] for m in needed))
    alphas, betas = grid(lo, hi, step), grid(lo, hi, step)
    points = grid_points(origin, u, v, alphas, betas).float()
    scores = []
    heads = {m: rt.head(task) for m, rt in runtimes.items()}
    total = len(alphas) * len(betas) * len(needed)
    with torch.no_grad(), tqdm(total=total, desc=f"landscape {task.name}", disable=not progress) as bar:
        for i, a in enumerate(alphas.tolist()):
            for j, b in enumerate(betas.tolist()):
                for m in needed:
                    theta = decoders[m](points[i, j])
                    scores.append({"alpha": a, "beta": b, "method": m,
                                   "score": runtimes[m].score(theta, heads[m], rows, task.metric, eval_batch_size)})
                    bar.update(1)
    scores = pd.DataFrame(scores)
    originals = best_stage0(stage0) if stage0 else {}
    e_ori = [originals[task.name, m].test_metric for m in needed if (task.name, m) in originals]
    e_pet = sum(e_ori) / len(e_ori) if len(e_ori) == len(needed) else float(scores.score.mean())
    relative = relative_landscape(scores, e_pet) if e_pet > 0 else scores.groupby(
        ["alpha", "beta"], as_index=False).score.mean().rename(columns={"score": "relative"})
    plot_landscape(relative, coords, out / "landscape.png", title=f"{task.name} ({setting})")
    config = {"subspace": meta, "task": task.name, "grid": [lo, hi, step], "split": split,
              "max_examples": max_examples}
    grid_df = scores.merge(relative, on=["alpha", "beta"]).assign(
        experiment=experiment, stage="landscape", setting=setting, task=task.name, e_pet=e_pet,
        **{f"{m}_alpha": coords[m][0] for m in needed}, **{f"{m}_beta": coords[m][1] for m in needed},
        **provenance(config, time.perf_counter() - started))
    write_parquet(grid_df, out / "grid.parquet")
    return grid_df
