"""Stage 0: train a delta method's θ directly, in its original space, on one task.

Beyond the plain run (docs/training.md): ``epochs`` turns an epoch budget into steps, ``head``
picks the encoder head (``classifier`` appends the trainable head as a θ component),
``init_from`` starts a sequential-combination stage from the best of earlier runs with their
slices frozen (survey Fig. 10), ``init_ist`` starts θ at a decoded IST solution (IPT's two-stage
prompt tuning), and ``record`` adds label columns to the result row.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..backbones import load_backbone
from ..deltas import Delta, build_delta
from ..deltas.combined import is_composite, split_name
from ..heads import MLM_HEADS, encode_rows, head_kind_problem, task_head, training_loss
from ..io import write_json, write_parquet
from ..options import record_value
from ..provenance import provenance
from .batching import BatchStream, TaskData, load_task_data, split_rows
from .evaluate import evaluate_rows
from .loop import LoopConfig, device, run_loop

#: Result columns ``--record`` may not override: they say what ran, on which code, when.
PROTECTED_COLUMNS = ("config_hash", "config", "git_commit", "versions", "device", "precision", "created_at", "wall_seconds")


class ThetaObjective:
    """θ itself is the trainable parameter; the backbone reads it through ``delta.bound``.

    ``frozen`` (a boolean mask over θ) keeps those entries fixed: only the others form the
    optimizer's parameter, so neither gradients nor weight decay can touch a frozen entry, and
    θ is reassembled from the two parts (bit-exact copies of the frozen values) at every step.
    """

    def __init__(self, delta: Delta, head, theta0: torch.Tensor, dev_rows: list[dict], metric: str,
                 eval_batch_size: int, frozen: torch.Tensor | None = None) -> None:
        self.delta, self.head = delta, head
        self.dev_rows, self.metric, self.eval_batch_size = dev_rows, metric, eval_batch_size
        theta0 = theta0.detach().float().to(device())
        if frozen is None or not bool(frozen.any()):
            self._runs = None
            self.free = nn.Parameter(theta0.clone())
            return
        frozen = frozen.to(torch.bool).cpu()
        self._base = theta0.clone()
        self.free = nn.Parameter(theta0[(~frozen).to(theta0.device)].clone())
        mask = frozen.numpy()
        bounds = [0, *(np.flatnonzero(np.diff(mask.astype(np.int8))) + 1).tolist(), len(mask)]
        self._runs, used = [], 0
        for start, end in zip(bounds[:-1], bounds[1:]):  # contiguous stretches: frozen or free
            if mask[start]:
                self._runs.append((True, start, end))
            else:
                self._runs.append((False, used, used + end - start))
                used += end - start

    @property
    def theta(self) -> torch.Tensor:
        """The full θ (differentiable in its free entries)."""
        if self._runs is None:
            return self.free
        return torch.cat([self._base[a:b] if frozen else self.free[a:b] for frozen, a, b in self._runs])

    def param_groups(self, lr: float) -> list[dict]:
        return [{"params": [self.free], "lr": lr}]

    def loss(self, batch: dict) -> torch.Tensor:
        return training_loss(self.delta, self.head, self.theta, batch)

    def evaluate(self, step: int) -> float:
        return evaluate_rows(self.delta, self.head, self.theta.detach(), self.dev_rows, self.metric,
                             self.eval_batch_size)

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {"theta": self.theta.detach().cpu().clone()}

    def state_dict(self) -> dict:
        return {"theta": self.theta.detach().cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        theta = state["theta"].to(self.free.device)
        with torch.no_grad():
            if self._runs is None:
                self.free.copy_(theta)
                return
            at = 0
            for frozen, a, b in self._runs:
                if frozen:
                    at = b
                else:
                    self.free[a:b].copy_(theta[at:at + b - a])
                    at += b - a


def check_backbone_matches(data: TaskData, backbone: str) -> None:
    prepared = data.manifest.get("backbone")
    if prepared is not None and prepared != backbone:
        raise ValueError(f"{data.path}: prepared (tokenized) for backbone {prepared!r}, not {backbone!r}; "
                         f"run `deltaspace prepare --backbone {backbone}`")


def epoch_steps(epochs: float, n_train: int, batch_size: int) -> int:
    """Steps for ``epochs`` passes over ``n_train`` rows: ceil(E · n / batch) (at least 1)."""
    if not epochs > 0:
        raise ValueError(f"--epochs must be positive, got {epochs}")
    return max(1, math.ceil(epochs * n_train / batch_size))


def with_classifier(method: str, options: dict, data: TaskData) -> tuple[str, dict]:
    """What ``--head classifier`` trains on ``data``: ``METHOD+classifier`` with one output per
    verbalizer (1 for regression)."""
    labels = 1 if data.regression else len(data.verbalizers or [])
    if labels == 0:
        raise ValueError(f"task {data.name!r} is {data.manifest.get('kind', 'generation')}: --head classifier runs "
                         "classification (verbalizers) and regression tasks only")
    try:
        return classifier_method(method, options, labels)
    except ValueError as err:
        raise ValueError(f"{err} (task {data.name!r}{', regression' if data.regression else ''})") from None


def classifier_method(method: str, options: dict, labels: int) -> tuple[str, dict]:
    """``METHOD+classifier`` and its options with ``classifier.labels`` = ``labels``.

    A single method's unprefixed options (``--set r=8``) are prefixed with its name, since the
    result is a composite; ``classifier.*`` options pass through (``classifier.dropout=0``).
    """
    parts = split_name(method)
    full = method if "classifier" in parts else f"{method}+classifier"
    if is_composite(full) and not is_composite(method) and method != "classifier":
        options = {k if k.startswith("classifier.") else f"{method}.{k}": v for k, v in options.items()}
    key = "classifier.labels" if is_composite(full) else "labels"
    given = options.get(key)
    if given is not None and int(given) != labels:
        raise ValueError(f"--set {key}={given} disagrees with the {labels} output(s) the head needs; leave it out, "
                         "--head classifier sets it")
    return full, {**options, key: labels}


def best_run(folders: list[str | Path], vector: bool = False) -> Path:
    """The folder whose result.parquet has the highest ``dev_metric`` (the first one on ties):
    stage-0 runs (θ in theta.safetensors), or with ``vector`` optimize-subspace runs (intrinsic.safetensors)."""
    best, best_dev = None, -math.inf
    flag, weights, command = (("--init-from-ist", "intrinsic.safetensors", "optimize-subspace") if vector
                              else ("--init-from", "theta.safetensors", "train"))
    for folder in map(Path, folders):
        result = folder / "result.parquet"
        if not result.exists() or not (folder / weights).exists():
            raise FileNotFoundError(f"{flag} {folder}: no result.parquet and {weights} there; it takes "
                                    f"the output folders of finished `deltaspace {command}` runs")
        df = pd.read_parquet(result)
        if "dev_metric" not in df or df.empty:
            raise ValueError(f"{flag} {folder}: {result} has no dev_metric to choose by")
        dev = float(df["dev_metric"].max())
        if best is None or dev > best_dev:
            best, best_dev = folder, (dev if not math.isnan(dev) else -math.inf)
    if best is None:
        raise ValueError(f"{flag} needs at least one run folder")
    return best


def seed_from_run(run: Path, delta: Delta, theta0: torch.Tensor, backbone: str) -> tuple[torch.Tensor, torch.Tensor]:
    """θ0 with every slice that exists (same name) in ``run``'s θ copied over, and the mask of
    those entries (to freeze). Shapes must agree; something must match and something stay free."""
    theta_run, meta = load_theta(run)
    if meta.get("backbone") not in (None, backbone):
        raise ValueError(f"--init-from {run}: trained on backbone {meta['backbone']!r}, not {backbone!r}")
    source = {s["name"]: s for s in meta["manifest"]}
    theta0 = theta0.clone()
    frozen = torch.zeros(delta.size, dtype=torch.bool)
    for slot in delta.manifest:
        src = source.get(slot.name)
        if src is None:
            continue
        if tuple(src["shape"]) != slot.shape:
            raise ValueError(f"--init-from {run}: θ slice {slot.name!r} has shape {list(src['shape'])} there "
                             f"({meta.get('method')}) but {list(slot.shape)} in {delta.name}; use the same options")
        n = slot.numel
        theta0[slot.offset:slot.offset + n] = theta_run[src["offset"]:src["offset"] + n]
        frozen[slot.offset:slot.offset + n] = True
    if not frozen.any():
        raise ValueError(f"--init-from {run}: none of its θ slices ({meta.get('method')}, e.g. "
                         f"{next(iter(source), 'none')!r}) exists in method {delta.name} (e.g. "
                         f"{delta.manifest[0].name!r}); the new method must contain the earlier one as a component")
    if frozen.all():
        raise ValueError(f"--init-from {run}: every θ slice of {delta.name} comes from that run and would be "
                         "frozen; nothing would train (add a component, e.g. prompt+bitfit after prompt)")
    return theta0, frozen


def parse_records(pairs: list[str] | None) -> dict:
    """``--record KEY=VALUE`` pairs as columns; ints and floats become numbers."""
    records = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ValueError(f"--record expects KEY=VALUE, got {pair!r}")
        if key in PROTECTED_COLUMNS:
            raise ValueError(f"--record {key}: {key!r} is a provenance column and cannot be overridden; "
                             f"protected: {', '.join(PROTECTED_COLUMNS)}")
        records[key] = record_value(value)
    return records


TRAIN_SAMPLE_SEED = 0  # one sample per task, whatever the run's seed


def train_sample(rows: list[dict], n: int) -> list[dict]:
    """At most ``n`` training rows, drawn without replacement with a fixed seed, in their order."""
    if len(rows) <= n:
        return rows
    keep = sorted(torch.randperm(len(rows), generator=torch.Generator().manual_seed(TRAIN_SAMPLE_SEED))[:n].tolist())
    return [rows[i] for i in keep]


def train_stage0(data_dir: str | Path, method: str, backbone_name: str, options: dict, cfg: LoopConfig,
                 out: str | Path, *, experiment: str = "adhoc", setting: str = "single", eval_batch_size: int = 32,
                 progress: bool = True, stop_after: int | None = None, head: str = "label",
                 epochs: float | None = None, init_from: list[str | Path] | None = None,
                 init_ist: tuple[list, list] | None = None, record: dict | None = None,
                 train_eval: int | None = None) -> pd.DataFrame:
    """Train, select the best dev step, test it, and write θ, the curve and the result row.

    ``train_eval`` also scores the selected θ on at most that many training rows (the survey's
    generalization gap, Table 7, notes A23: train minus dev metric at the selected checkpoint). The
    sample is drawn with a fixed seed, so every method and seed of a task is scored on the same rows.
    """
    setup = setup_stage0(data_dir, method, backbone_name, options, cfg, out, experiment=experiment,
                         setting=setting, eval_batch_size=eval_batch_size, head=head, epochs=epochs,
                         init_from=init_from, init_ist=init_ist, record=record, train_eval=train_eval)
    outcome = run_loop(setup.objective, setup.stream, setup.cfg, setup.out,
                       tokens_per_batch=lambda b: b["attention_mask"].sum(), progress=progress,
                       stop_after=stop_after, desc=setup.desc)
    return finish_stage0(setup, outcome)


@dataclass
class Stage0Setup:
    """Everything one stage-0 run holds between its setup and its result row: what
    :func:`train_stage0` trains with :func:`run_loop`, and fused runs (:mod:`.fused`) step together."""

    started: float
    out: Path
    data: TaskData
    method: str
    backbone_name: str
    backbone_parameters: int
    cfg: LoopConfig
    delta: Delta
    head: object
    head_name: str
    rows: object  # split -> rows in the head's format
    objective: ThetaObjective
    stream: BatchStream
    chosen: Path | None
    experiment: str
    setting: str
    eval_batch_size: int
    epochs: float | None
    record: dict
    train_eval: int | None

    @property
    def desc(self) -> str:
        return f"{self.data.name}/{self.method}"


def resolve_stage0(data_dir: str | Path, method: str, options: dict, cfg: LoopConfig, *, head: str = "label",
                   epochs: float | None = None, record: dict | None = None):
    """The task data and the run's final method, options and loop settings (before any backbone loads)."""
    bad = sorted(set(record or {}) & set(PROTECTED_COLUMNS))
    if bad:
        raise ValueError(f"record: {', '.join(bad)} are provenance columns and cannot be overridden")
    data = load_task_data(data_dir)
    if epochs is not None:
        cfg = replace(cfg, steps=epoch_steps(epochs, len(data.splits["train"]), cfg.batch_size))
    if head == "classifier":
        method, options = with_classifier(method, options, data)
    return data, method, options, cfg


def setup_stage0(data_dir: str | Path, method: str, backbone_name: str, options: dict, cfg: LoopConfig,
                 out: str | Path, *, experiment: str = "adhoc", setting: str = "single", eval_batch_size: int = 32,
                 head: str = "label", epochs: float | None = None, init_from: list[str | Path] | None = None,
                 init_ist: tuple[list, list] | None = None, record: dict | None = None,
                 train_eval: int | None = None, shared: tuple | None = None) -> Stage0Setup:
    """Load the data, the backbone (or take ``shared`` = (backbone, delta, backbone_parameters), one
    backbone with the method installed that fused runs share) and build the objective and stream.
    ``init_ist`` = (subspace fit folders, IST run folders): θ starts at the dev-best IST solution
    decoded, and every entry trains (:func:`deltaspace.subspace.run.ist_solution`)."""
    started = time.perf_counter()
    out = Path(out)
    record = record or {}
    data, method, options, cfg = resolve_stage0(data_dir, method, options, cfg, head=head, epochs=epochs,
                                                record=record)
    check_backbone_matches(data, backbone_name)
    if init_from and init_ist:
        raise ValueError("--init-from and --init-from-ist are two ways to start θ: give one")
    chosen = best_run(init_from) if init_from else None
    if shared is None:
        backbone = load_backbone(backbone_name, seed=cfg.seed, mlm_head=head in MLM_HEADS,
                                 attn_implementation=attention_for(method))
        backbone_parameters = backbone.num_parameters  # before the delta adds any
        problem = head_kind_problem(head, backbone_name, backbone.kind)  # before the head's delta part is built
        if problem:
            raise ValueError(problem)
        backbone.model.to(device())
        delta = build_delta(method, backbone, **options)
    else:
        backbone, delta, backbone_parameters = shared
    head_of_task = task_head(backbone, delta, data, head)

    def rows(split: str) -> list[dict]:  # the masked-LM heads read their own input format
        return encode_rows(head_of_task, split_rows(data, split))

    theta0, frozen = delta.init(cfg.seed), None
    if chosen is not None:
        theta0, frozen = seed_from_run(chosen, delta, theta0, backbone_name)
    elif init_ist:
        from ..subspace.run import ist_solution

        decoded, chosen = ist_solution(*init_ist, method)
        if decoded.shape != theta0.shape:
            raise ValueError(f"--init-from-ist {chosen}: its decoded θ has {decoded.numel()} entries, {method}'s "
                             f"θ {theta0.numel()}: the subspace was fitted for other method options")
        theta0 = decoded.to(theta0.dtype)
    objective = ThetaObjective(delta, head_of_task, theta0, rows("dev"), data.metric, eval_batch_size,
                               frozen=frozen)
    stream = BatchStream(rows("train"), cfg.batch_size, cfg.seed, backbone.tokenizer.pad_token_id,
                         backbone.kind, regression=data.regression)
    return Stage0Setup(started, out, data, method, backbone_name, backbone_parameters, cfg, delta, head_of_task,
                       head, rows, objective, stream, chosen, experiment, setting, eval_batch_size, epochs, record,
                       train_eval)


def attention_for(method: str) -> str:
    """SDPA unless a component of ``method`` needs eager attention (prefix tuning extends keys and masks)."""
    from ..deltas.registry import component_classes

    eager = any(getattr(cls, "needs_eager_attention", False) for cls in component_classes(method))
    return "eager" if eager else "sdpa"


def finish_stage0(s: Stage0Setup, outcome, keep_checkpoint: bool = False) -> pd.DataFrame:
    """Test the best dev step and write θ, the curve and the result row (then drop the checkpoint,
    unless ``keep_checkpoint``: a fused job keeps a finished run's until every run of it is done)."""
    delta, head_of_task, data, cfg, out, rows = s.delta, s.head, s.data, s.cfg, s.out, s.rows
    method, backbone_name, chosen, epochs, head = s.method, s.backbone_name, s.chosen, s.epochs, s.head_name
    experiment, setting, eval_batch_size, train_eval = s.experiment, s.setting, s.eval_batch_size, s.train_eval
    theta = outcome.best_snapshot["theta"]
    test = evaluate_rows(delta, head_of_task, theta, rows("test"), data.metric, eval_batch_size)
    train_metric = None
    if train_eval is not None:
        if train_eval < 1:
            raise ValueError(f"--train-eval must be at least 1, got {train_eval}")
        sample = encode_rows(head_of_task, train_sample(split_rows(data, "train"), train_eval))
        train_metric = evaluate_rows(delta, head_of_task, theta, sample, data.metric, eval_batch_size)
    save_theta(out, theta, delta, backbone_name)
    write_parquet(pd.DataFrame(outcome.curve), out / "curve.parquet")
    config = {"task": data.name, "data_sha256": data.manifest.get("content_sha256"), "method": method,
              "options": delta.options, "backbone": backbone_name, "loop": cfg.record(), "experiment": experiment,
              "setting": setting}
    # New settings enter the hash only when used, so the hashes of plain runs stay as they were.
    extras = {"head": head if head != "label" else None, "epochs": epochs, "train_eval": train_eval,
              "init_from": str(chosen) if chosen is not None else None, "record": s.record or None}
    config.update({k: v for k, v in extras.items() if v is not None})
    row = {"experiment": experiment, "stage": "stage0", "setting": setting, "task": data.name, "method": method,
           "source_method": method, "target_method": method, "backbone": backbone_name, "seed": cfg.seed,
           "lr": cfg.lr, "steps": cfg.steps, "epochs": float(epochs) if epochs is not None else None,
           "steps_run": outcome.last_step, "patience": cfg.patience, "stopped_early": outcome.stopped_early,
           "head": head, "init_from": str(chosen) if chosen is not None else None,
           "best_step": outcome.best_step, "dev_metric": outcome.best_dev,
           "test_metric": test, "metric": data.metric, "size": delta.size,
           "head_size": head_size(delta),
           "backbone_parameters": s.backbone_parameters,
           **({"train_metric": train_metric} if train_metric is not None else {}),
           **provenance(config, time.perf_counter() - s.started)}
    row.update(s.record)
    result = pd.DataFrame([row])
    write_parquet(result, out / "result.parquet")
    if not keep_checkpoint:
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


def head_size(delta) -> int:
    """The part of |θ| that is the trainable classifier head (``--head classifier``), else 0.

    The decomposition paper's ‰Params column does not count the head; its spec subtracts this.
    """
    from ..deltas.combined import Combined

    if isinstance(delta.method, Combined):
        return int(delta.method.component_sizes(delta.manifest).get("classifier", 0))
    return int(delta.size) if delta.method.name == "classifier" else 0
