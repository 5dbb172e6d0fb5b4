"""Fused stage-0 runs: K runs that share one frozen backbone train in one process, one batch a step.

Each step's batch holds every active run's rows (run k's rows are group k). Every run keeps its own
θ, optimizer, learning rate and schedule, batch stream, evaluation, best-on-dev snapshot, early
stopping, checkpoint (``checkpoint.pt`` in its own folder, the format :func:`run_loop` writes) and
result folder: what each run writes is what ``deltaspace train`` writes for it.

How K θ act on K slices of one batch (:class:`GroupedBinding`): the method is installed once. Every
module that *reads* θ tensors (a *host*: the module owning them when it has a forward of its own,
such as LoRA's ``lora_A`` Linear, an adapter's projections or a Linear whose bias BitFit tunes; else
its parent, the frozen Linear whose hooks read IA3's scales or a low-rank update) has its call
replaced by a grouped one: the input rows are split by group and the host runs once per group with
θ_k's views bound, outputs concatenated. The frozen backbone between hosts runs once on the whole
batch. Prompt tuning's ``prepare_inputs`` runs per group; prefix tuning's keys and values are
computed per group and handed to attention as one prefix per row. Methods whose θ overwrites
backbone weights (fine-tuning, last-layer, selective) cannot share a backbone: they run alone
(the job trains them one after another, each as ``deltaspace train`` would).

Rows of runs of about one width are padded to it (right padding, masked) and share one forward
(:func:`width_buckets`), so results equal separate runs' within float tolerance when dropout is
off. With dropout on (the backbone in train mode, as every stage trains), the fused batch draws its
dropout masks at once: fused runs are deterministic and resume exactly, but their masks are not the
ones a separate run draws.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from ..io import atomic_write, write_json
from .loop import (CheckpointError, LoopOutcome, Preempted, StopFlag, TrainingDiverged, _rng_state,
                   _set_rng_state, autocast, device, make_optimizer)


class FusionError(ValueError):
    """A method or head that cannot share one backbone across runs."""


# --- K θ on K slices of one batch --------------------------------------------------------------------


class GroupedBinding:
    """Binds the θ of several runs to the row groups of one batch (see the module docstring)."""

    def __init__(self, delta) -> None:
        alone = runs_alone(delta.name)
        if alone:
            raise FusionError(f"method {delta.name}: {', '.join(alone)} tunes backbone weights, so its runs cannot "
                              "share one backbone; they run alone")
        self.delta = delta
        model = delta.backbone.model
        parents = {id(child): parent for parent in model.modules() for child in parent.children()}
        self.slot_owners = delta._owners  # per θ tensor: [(module, attr)]
        self.hosts: dict[int, nn.Module] = {}
        self.host_slots: dict[int, list[int]] = {}  # host -> indices of the θ tensors it reads
        self.special: dict[int, tuple[str, nn.Module, list[int]]] = {}
        for i, owners in enumerate(self.slot_owners):
            for module, _attr in owners:
                special = _special_ancestor(module, parents)
                if special is not None:  # its own code computes per group (a prefix MLP's Linears too)
                    slots = self.special.setdefault(id(special), (_special_kind(special), special, []))[2]
                    if i not in slots:
                        slots.append(i)
                    continue
                host = module if type(module).forward is not nn.Module.forward else parents.get(id(module))
                if host is None or host is model:
                    raise FusionError(f"method {delta.name}: module {type(module).__name__} holds θ tensors but no "
                                      "module around it sees the batch rows; it cannot be fused")
                self.hosts[id(host)] = host
                self.host_slots.setdefault(id(host), [])
                if i not in self.host_slots[id(host)]:
                    self.host_slots[id(host)].append(i)
        self.views: list[list[torch.Tensor]] | None = None  # [group][slot] -> view
        self.sizes: list[int] = []
        self.group: int | None = None  # the group being computed (inside a host's per-group call)
        self.touched: set[int] = set()
        self._kv_cache: dict = {}

    # binding
    def _bind(self, k: int, slots) -> None:
        dtype = self.delta._params[0].dtype
        for i in slots:
            view = self.views[k][i].to(dtype)
            for module, attr in self.slot_owners[i]:
                object.__setattr__(module, attr, view)

    @contextmanager
    def active(self, thetas: list[torch.Tensor], sizes: list[int]):
        """Within the block, group k (``sizes[k]`` consecutive rows) computes with ``thetas[k]``."""
        for theta in thetas:
            self.delta._check(theta)
        self.views = [[v for _, v in self.delta.views(theta)] for theta in thetas]
        self.sizes, self.group, self._kv_cache = list(sizes), None, {}
        originals = []
        for owners, param in zip(self.slot_owners, self.delta._params):
            for module, attr in owners:
                originals.append((module, attr, module._parameters.pop(attr)))
                object.__setattr__(module, attr, None)
        for host in self.hosts.values():
            object.__setattr__(host, "_call_impl", self._grouped_call(host))
        for kind, module, _ in self.special.values():
            if kind == "prefix":
                object.__setattr__(module, "key_values", self._grouped_key_values(module))
        try:
            yield self
        finally:
            for host in self.hosts.values():
                host.__dict__.pop("_call_impl", None)
            for kind, module, _ in self.special.values():
                module.__dict__.pop("key_values", None)
            for module, attr, original in reversed(originals):
                module.__dict__.pop(attr, None)
                module._parameters[attr] = original
            self.views, self.group = None, None

    @contextmanager
    def in_group(self, k: int):
        """Compute group k alone (every θ tensor bound to θ_k): prompt tuning's input rewrite."""
        outer = self.group
        self.group = k
        self._bind(k, range(len(self.slot_owners)))
        for key, (kind, _module, _slots) in self.special.items():
            if kind == "prompt":
                self.touched.add(key)
        try:
            yield
        finally:
            self.group = outer

    def _grouped_call(self, host: nn.Module):
        slots = self.host_slots[id(host)]
        call = nn.Module._call_impl

        def grouped(*args, **kwargs):
            if self.group is not None:  # inside one group already (a host within a host)
                self.touched.add(id(host))
                self._bind(self.group, slots)
                return call(host, *args, **kwargs)
            total = sum(self.sizes)
            if not any(isinstance(a, torch.Tensor) and a.dim() and a.shape[0] == total
                       for a in (*args, *kwargs.values())):
                raise FusionError(f"{type(host).__name__} reads θ but was called without the batch's {total} rows")
            self.touched.add(id(host))
            outputs, start = [], 0
            for k, n in enumerate(self.sizes):
                part = lambda a: a[start:start + n] if isinstance(a, torch.Tensor) and a.dim() and a.shape[0] == total else a  # noqa: E731
                self.group = k
                self._bind(k, slots)
                try:
                    outputs.append(call(host, *map(part, args), **{key: part(v) for key, v in kwargs.items()}))
                finally:
                    self.group = None
                start += n
            return _concat(outputs)

        return grouped

    def _grouped_key_values(self, stack: nn.Module):
        slots = self.special[id(stack)][2]
        original = type(stack).key_values

        def key_values():
            if self.group is not None:
                self.touched.add(id(stack))
                self._bind(self.group, slots)
                return original(stack)
            key = (id(stack), torch.is_grad_enabled())
            if key not in self._kv_cache:  # once per forward: every layer of the stack reads it
                self.touched.add(id(stack))
                parts = []
                for k, n in enumerate(self.sizes):
                    self.group = k
                    self._bind(k, slots)
                    try:
                        kv = original(stack)  # (layers, 2, m, width)
                    finally:
                        self.group = None
                    parts.append(kv.unsqueeze(2).expand(-1, -1, n, -1, -1))
                self._kv_cache[key] = torch.cat(parts, dim=2)  # (layers, 2, rows, m, width)
            return self._kv_cache[key]

        return key_values

    def check_touched(self) -> None:
        missed = [type(h).__name__ for key, h in self.hosts.items() if key not in self.touched]
        missed += [type(m).__name__ for key, (_, m, _) in self.special.items() if key not in self.touched]
        if missed:
            raise FusionError(f"method {self.delta.name}: modules {sorted(set(missed))} hold θ tensors but never "
                              "saw the fused batch; it cannot be fused")


def _special_ancestor(module: nn.Module, parents: dict[int, nn.Module]) -> nn.Module | None:
    """The prefix stack or prompt table that ``module`` is or sits in, if any."""
    while module is not None:
        if _special_kind(module) is not None:
            return module
        module = parents.get(id(module))
    return None


def _special_kind(module: nn.Module) -> str | None:
    from ..deltas.prefix import PrefixStack
    from ..deltas.prompt import PromptTable

    if isinstance(module, PrefixStack):
        return "prefix"
    if isinstance(module, PromptTable):
        return "prompt"
    return None


def _concat(outputs: list):
    first = outputs[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(outputs, dim=0)
    if first is None:
        return None
    if isinstance(first, (tuple, list)):
        return type(first)(_concat([o[i] for o in outputs]) for i in range(len(first)))
    raise FusionError(f"cannot join the per-group outputs of type {type(first).__name__}")


# --- the fused forward and the per-run losses ---------------------------------------------------------


def _pad(t: torch.Tensor, width: int, value: int) -> torch.Tensor:
    if t.shape[1] == width:
        return t
    pad = torch.full((t.shape[0], width - t.shape[1]), value, dtype=t.dtype, device=t.device)
    return torch.cat([t, pad], dim=1)


def _encode(binding: GroupedBinding, groups: list[dict], pad_id: int, **extra):
    """Run the backbone once on every group's ``input_ids``/``attention_mask`` (padded to one width)."""
    width = max(g["input_ids"].shape[1] for g in groups)
    ids = [_pad(g["input_ids"], width, pad_id) for g in groups]
    masks = [_pad(g["attention_mask"], width, 0) for g in groups]
    delta = binding.delta
    per_group = []
    for k, (i, m) in enumerate(zip(ids, masks)):
        with binding.in_group(k):
            per_group.append(delta.prepare_inputs({"input_ids": i, "attention_mask": m}))
    inputs = {key: torch.cat([p[key] for p in per_group], dim=0) for key in per_group[0]}
    return delta.backbone.model(**inputs, **extra), torch.cat(ids), torch.cat(masks), width


#: A run joins a forward whose rows are padded to width W while its own rows are at least this
#: share of W wide; narrower runs get a forward of their own. On CPU a step costs its padded
#: tokens, and the quickstart mixes tweets (about 30 tokens) with news articles (64): one width for
#: all made every tweet row cost 64. Two or three forwards instead of one cost little on a CPU; a GPU
#: still gets every run of one width in one batch.
MIN_WIDTH_SHARE = 0.8


def width_buckets(widths: list[int], min_share: float = MIN_WIDTH_SHARE) -> list[list[int]]:
    """The runs (indices into ``widths``) that share one forward: widest first, a new forward for
    the first run narrower than ``min_share`` of the current one's widest (0: one forward for all)."""
    buckets: list[list[int]] = []
    for i in sorted(range(len(widths)), key=lambda i: (-widths[i], i)):
        if not buckets or widths[i] < min_share * widths[buckets[-1][0]]:
            buckets.append([])
        buckets[-1].append(i)
    return buckets


def fused_losses(binding: GroupedBinding, heads: list, thetas: list[torch.Tensor], batches: list[dict]) -> list:
    """Each run's task loss (plus its method's penalty): one forward over the rows of every run of
    about the same width (:func:`width_buckets`), so short rows are not padded to the longest."""
    kinds = {type(h) for h in heads}
    if len(kinds) != 1:
        raise FusionError(f"fused runs need one head kind, got {sorted(k.__name__ for k in kinds)}")
    losses: list = [None] * len(batches)
    for bucket in width_buckets([b["input_ids"].shape[1] for b in batches]):
        part = _bucket_losses(binding, [heads[i] for i in bucket], [thetas[i] for i in bucket],
                              [batches[i] for i in bucket])
        for i, loss in zip(bucket, part):
            losses[i] = loss
    binding.check_touched()
    for i, theta in enumerate(thetas):
        penalty = binding.delta.penalty(theta)
        if penalty is not None:
            losses[i] = losses[i] + penalty
    return losses


def _bucket_losses(binding: GroupedBinding, heads: list, thetas: list[torch.Tensor], batches: list[dict]) -> list:
    """The task losses of runs whose rows share one forward (padded to one width)."""
    from ..heads import CausalLMHead, LabelHead, RowHead, Seq2SeqHead

    backbone = binding.delta.backbone
    backbone.model.train()
    pad_id = backbone.tokenizer.pad_token_id
    kind = type(heads[0])
    losses = []
    if kind is LabelHead:
        groups = []
        for h, b in zip(heads, batches):
            dev = b["input_ids"].device
            vi, vm = (h._verbalizer_batch[k].to(dev) for k in ("input_ids", "attention_mask"))
            width = max(vi.shape[1], b["input_ids"].shape[1])
            groups.append({"input_ids": torch.cat([_pad(vi, width, pad_id), _pad(b["input_ids"], width, pad_id)]),
                           "attention_mask": torch.cat([_pad(vm, width, 0), _pad(b["attention_mask"], width, 0)])})
        with binding.active(thetas, [len(g["input_ids"]) for g in groups]):
            out, _, masks, width = _encode(binding, groups, pad_id)
        hidden = out.last_hidden_state[:, -width:]
        weights = masks.unsqueeze(-1).to(hidden.dtype)
        pooled = nn.functional.normalize((hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0), dim=-1)
        start = 0
        for h, b in zip(heads, batches):
            v, n = len(h.verbalizers), len(b["input_ids"])
            labels, rows = pooled[start:start + v], pooled[start + v:start + v + n]
            losses.append(nn.functional.cross_entropy(rows @ labels.T / h.temperature, b["label"]))
            start += v + n
    elif issubclass(kind, RowHead):  # one output row per input row: the classifier, the masked-LM heads
        sizes = [len(b["input_ids"]) for b in batches]
        extra = heads[0].forward_kwargs(sum(sizes), batches[0]["input_ids"].device)
        with binding.active(thetas, sizes):
            out, ids, _, _ = _encode(binding, batches, pad_id, **extra)
            outputs = heads[0].row_outputs(out, ids)  # inside: a classifier or BitFit's head biases are θ
        start = 0
        for h, b, n in zip(heads, batches, sizes):
            losses.append(h.loss_from(outputs[start:start + n], b))
            start += n
    elif kind is Seq2SeqHead:
        twidth = max(b["labels"].shape[1] for b in batches)
        labels = torch.cat([_pad(b["labels"], twidth, -100) for b in batches])
        with binding.active(thetas, [len(b["input_ids"]) for b in batches]):
            out, _, _, _ = _encode(binding, batches, pad_id, labels=labels)
        start = 0
        for b in batches:
            n = len(b["input_ids"])
            lg = out.logits[start:start + n]
            losses.append(nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]), labels[start:start + n].reshape(-1),
                                                      ignore_index=-100))
            start += n
    elif kind is CausalLMHead:  # decoder-only: prompt + target rows, the loss on the target tokens
        width = max(b["input_ids"].shape[1] for b in batches)
        labels = torch.cat([_pad(b["labels"], width, -100) for b in batches])
        with binding.active(thetas, [len(b["input_ids"]) for b in batches]):
            out, _, _, _ = _encode(binding, batches, pad_id, use_cache=False)
        logits = out.logits[:, -width:]  # a soft prompt's slots dropped
        start = 0
        for b in batches:
            n = len(b["input_ids"])
            lg, lab = logits[start:start + n, :-1], labels[start:start + n, 1:]
            losses.append(nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]).float(), lab.reshape(-1),
                                                      ignore_index=-100))
            start += n
    else:
        raise FusionError(f"head {kind.__name__} cannot be fused")
    return losses


# --- one run's bookkeeping (run_loop's, per run) -------------------------------------------------------


class FusedRun:
    """One stage-0 run inside a fused job: its loop state, checkpointed as :func:`run_loop` does."""

    def __init__(self, setup, stop_after: int | None = None) -> None:
        self.s, self.cfg, self.stop_after = setup, setup.cfg, stop_after
        self.ckpt_path = Path(setup.out) / "checkpoint.pt"
        self.objective, self.stream = setup.objective, setup.stream
        groups = self.objective.param_groups(self.cfg.lr)
        self.optimizer, self.scheduler = make_optimizer(groups, self.cfg)
        self.params = [p for g in groups for p in g["params"]]
        self.step, self.best_step, self.best_dev, self.best_snapshot, self.curve = 0, -1, -math.inf, {}, []
        self.stale, self.stopped_early, self.failed = 0, False, None
        self.window = {"loss": 0.0, "tokens": 0}
        self.rng = None
        if self.ckpt_path.exists():
            try:
                state = torch.load(self.ckpt_path, weights_only=False)
            except Exception as exc:
                raise CheckpointError(f"{self.ckpt_path}: cannot read the checkpoint ({type(exc).__name__}: {exc}); "
                                      "delete it to start over") from None
            if state["config"] != self.cfg.record():
                raise CheckpointError(f"{self.ckpt_path} was written with a different configuration; delete it "
                                      "to start over")
            self.objective.load_state_dict(state["objective"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.stream.load_state_dict(state["stream"])
            self.rng = state["rng"]
            self.step, self.best_step, self.best_dev = state["step"], state["best_step"], state["best_dev"]
            self.best_snapshot, self.curve, self.window = state["best_snapshot"], state["curve"], state["window"]
            self.stale, self.stopped_early = state.get("stale", 0), state.get("stopped_early", False)
        self.saved_step = self.step if self.ckpt_path.exists() else 0
        self.window_start = time.perf_counter()

    @property
    def active(self) -> bool:
        return self.failed is None and self.step < self.cfg.steps and not self.stopped_early

    def save(self) -> None:
        state = {"config": self.cfg.record(), "objective": self.objective.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "stream": self.stream.state_dict(), "rng": _rng_state(), "step": self.step,
                 "best_step": self.best_step, "best_dev": self.best_dev, "best_snapshot": self.best_snapshot,
                 "curve": self.curve, "window": self.window, "stale": self.stale, "stopped_early": self.stopped_early}
        atomic_write(self.ckpt_path, lambda tmp: torch.save(state, tmp))
        self.saved_step = self.step

    def after_step(self, loss: float, tokens: int, preempt: bool) -> None:
        """Optimizer step done: count it, evaluate, checkpoint (as run_loop does after its step)."""
        cfg = self.cfg
        self.step += 1
        self.window["loss"] += loss
        self.window["tokens"] += tokens
        step = self.step
        if step % cfg.eval_every == 0 or step == cfg.steps:
            elapsed = time.perf_counter() - self.window_start
            dev = self.objective.evaluate(step)
            n = cfg.eval_every if step % cfg.eval_every == 0 else step % cfg.eval_every
            self.curve.append({"step": step, "loss": self.window["loss"] / n, "dev_metric": dev,
                               "tokens_per_second": self.window["tokens"] / elapsed if elapsed > 0 else 0.0,
                               "wall_seconds": elapsed})
            if dev > self.best_dev:
                self.best_step, self.best_dev, self.best_snapshot, self.stale = step, dev, self.objective.snapshot(), 0
            else:
                self.stale += 1
            self.stopped_early = cfg.patience is not None and self.stale >= cfg.patience and step < cfg.steps
            self.window, self.window_start = {"loss": 0.0, "tokens": 0}, time.perf_counter()
        preempt = preempt or (self.stop_after is not None and step >= self.stop_after)
        if step % cfg.checkpoint_every == 0 or preempt or self.stopped_early:
            self.save()
        self.preempted = preempt and step < cfg.steps and not self.stopped_early

    def outcome(self) -> LoopOutcome:
        return LoopOutcome(self.best_step, self.best_dev, self.best_snapshot, self.curve, last_step=self.step,
                           stopped_early=self.stopped_early)


def fused_loop(runs: list[FusedRun], binding: GroupedBinding, progress: bool = True, on_finish=None) -> list[FusedRun]:
    """Step every active run together until each has finished, stopped early or diverged; a run that
    ends calls ``on_finish(run)`` at once (it writes its folder), so a preempted job keeps it.

    Raises :class:`Preempted` after a stop request once every run still training is checkpointed.
    """
    if not runs:
        return runs
    for run in runs:
        if why_alone(run.s.method, run.cfg):
            raise FusionError(f"{run.s.desc}: {why_alone(run.s.method, run.cfg)} cannot be fused")
    torch.manual_seed(runs[0].cfg.seed)
    rng = next((r.rng for r in runs if r.rng is not None), None)
    if rng is not None:
        _set_rng_state(rng)  # every checkpoint of a fused job holds the same (shared) generator state
    stop = StopFlag()
    total = sum(r.cfg.steps for r in runs)
    bar = tqdm(total=total, initial=sum(r.step for r in runs), desc=f"fused x{len(runs)}", disable=not progress,
               dynamic_ncols=True)
    with stop.installed():
        while True:
            active = [r for r in runs if r.active]
            if not active:
                break
            batches = [{k: v.to(device()) for k, v in next(r.stream).items()} for r in active]
            for r in active:
                r.optimizer.zero_grad(set_to_none=True)
            thetas = [r.objective.theta for r in active]
            with autocast():
                losses = fused_losses(binding, [r.s.head for r in active], thetas, batches)
            finite = [bool(torch.isfinite(loss)) for loss in losses]
            good = [loss for loss, ok in zip(losses, finite) if ok]
            if good:
                torch.stack([g.float() for g in good]).sum().backward()
            preempt = stop.requested
            for r, loss, ok, batch in zip(active, losses, finite, batches):
                if not ok:
                    kept = (f"the last good checkpoint (step {r.saved_step}) is kept in {r.ckpt_path}" if r.saved_step
                            else "no checkpoint was written yet")
                    r.failed = TrainingDiverged(f"{r.s.desc}: the loss is {loss.item()} at step {r.step + 1} "
                                                f"(lr {r.cfg.lr:g}); {kept}; lower the learning rate or clip "
                                                "gradients (--max-grad-norm)")
                    continue
                if r.cfg.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(r.params, r.cfg.max_grad_norm)
                r.optimizer.step()
                r.scheduler.step()
                r.after_step(loss.item(), int(batch["attention_mask"].sum()), preempt)
                bar.update(1)
                if not r.active and on_finish is not None:
                    on_finish(r)
            if any(getattr(r, "preempted", False) for r in active):
                for r in runs:  # every run still training gets a checkpoint at its current step
                    if r.active and r.saved_step != r.step:
                        r.save()
                bar.close()
                raise Preempted(f"stopped at steps {[r.step for r in runs]}; checkpoints in each run's folder; "
                                "rerun the same command to resume")
    bar.close()
    return runs


# --- the job: parse K runs, group them by what they can share, train, write each folder -------------


def parse_run(argv: list[str], command: str = "train"):
    """One run's ``deltaspace COMMAND`` arguments, parsed by that command's own parser."""
    from ..cli import build_parser

    try:
        return build_parser(command).parse_args([command, *argv])
    except SystemExit:
        raise ValueError(f"invalid {command} run arguments: {shlex.join(argv)}") from None


def read_spec(path: str | Path) -> list[list[str]]:
    """A spec file: a JSON or YAML list of runs, each a list of ``deltaspace train`` arguments or one
    command-line string."""
    import json

    text = Path(path).read_text(encoding="utf-8")
    if str(path).endswith((".yaml", ".yml")):
        import yaml

        runs = yaml.safe_load(text)
    else:
        runs = json.loads(text)
    if not isinstance(runs, list) or not runs:
        raise ValueError(f"{path}: a fused spec is a non-empty list of runs")
    return [shlex.split(r) if isinstance(r, str) else [str(a) for a in r] for r in runs]


def runs_alone(method: str) -> list[str]:
    """The components of ``method`` whose θ overwrites backbone weights (fine-tuning, last-layer,
    selective): their runs cannot share one backbone, so a fused job trains them one after another."""
    from ..deltas.finetune import BackboneWeights
    from ..deltas.registry import component_classes

    return [c.name for c in component_classes(method) if issubclass(c, BackboneWeights)]


def _group_runs(parsed: list) -> tuple[dict[tuple, list[int]], dict[int, tuple]]:
    """Runs that can share one installed backbone, keyed by (backbone, tiny-backbone seed, final
    method, final options, head); runs whose folder has result.parquet already are left out."""
    from ..backbones import backbone_spec
    from ..options import parse_sets
    from .commands import loop_config
    from .stage0 import parse_records, resolve_stage0

    groups: dict[tuple, list[int]] = {}
    prepared: dict[int, tuple] = {}
    for i, a in enumerate(parsed):
        if (Path(a.out) / "result.parquet").exists():
            print(f"deltaspace train-fused: {a.out} already has result.parquet; skipped")
            continue
        if a.epochs is not None and a.steps is not None:
            raise ValueError(f"run {i + 1}: --epochs and --steps both set the training length; give one of them")
        options = parse_sets(a.set)
        _, method, final, cfg = resolve_stage0(a.data, a.method, options, loop_config(a), head=a.head,
                                               epochs=a.epochs, record=parse_records(a.record))
        prepared[i] = (a, options, final)
        tiny_seed = cfg.seed if backbone_spec(a.backbone).source == "tiny" else None  # random weights per seed
        alone = why_alone(method, cfg)
        groups.setdefault((a.backbone, tiny_seed, method, repr(sorted(final.items())), a.head, alone), []).append(i)
    return groups, prepared


def why_alone(method: str, cfg) -> str | None:
    """Why a run cannot join a fused batch, or None when it can."""
    weights = runs_alone(method)
    if weights:
        return f"method {method}: {', '.join(weights)} tunes backbone weights, so its runs cannot share one backbone"
    if cfg.steps == 0:
        return "a run of no training step"
    if cfg.micro_batch_size:
        return "a run with --micro-batch-size (a fused step takes whole batches)"
    return None


def _stage0_kwargs(a) -> dict:
    from .commands import init_ist
    from .stage0 import parse_records

    return dict(experiment=a.experiment, setting=a.setting, eval_batch_size=a.eval_batch_size, head=a.head,
                epochs=a.epochs, init_from=a.init_from, init_ist=init_ist(a), record=parse_records(a.record),
                train_eval=a.train_eval)


def _shared_backbone(backbone_name: str, seed: int, method: str, options: dict, head: str):
    """One backbone with ``method`` installed, as ``setup_stage0`` takes it (``shared=``)."""
    from ..backbones import load_backbone
    from ..deltas import build_delta
    from ..heads import MLM_HEADS, head_kind_problem
    from .stage0 import attention_for

    backbone = load_backbone(backbone_name, seed=seed, mlm_head=head in MLM_HEADS,
                             attn_implementation=attention_for(method))
    parameters = backbone.num_parameters  # before the delta adds any
    problem = head_kind_problem(head, backbone_name, backbone.kind)
    if problem:
        raise ValueError(problem)
    backbone.model.to(device())
    return backbone, build_delta(method, backbone, **options), parameters


def train_group(runs: list[FusedRun], members: list[int], binding: GroupedBinding, results: list, finish_run,
                progress: bool = True) -> None:
    """Train one group of a fused job together; a run that ends writes its folder at once with
    ``finish_run(setup, outcome, keep_checkpoint=True)``, its result going to ``results[member]``."""
    index = {id(r): i for i, r in zip(members, runs)}

    def finish(run: FusedRun) -> None:
        # The run's final state stays in its checkpoint until the whole job is done: a workflow
        # manager that deletes a killed job's outputs (Snakemake) makes the rerun rewrite this folder
        # from it instead of training the run again, so the rerun's batches hold the same runs.
        if run.saved_step != run.step:
            run.save()
        results[index[id(run)]] = finish_run(run.s, run.outcome(), keep_checkpoint=True)

    for run in runs:
        if not run.active:  # its checkpoint says it ended (an early stop) before the job was cut
            finish(run)
    fused_loop([r for r in runs if r.active], binding, progress=progress, on_finish=finish)
    failures = [str(r.failed) for r in runs if r.failed is not None]
    if failures:
        raise TrainingDiverged("; ".join(failures))


def drop_kept_checkpoints(outs: list[Path]) -> None:
    """Every run of the job is done: the finished runs' kept checkpoints go."""
    for out in outs:
        if (out / "result.parquet").exists():
            (out / "checkpoint.pt").unlink(missing_ok=True)


def train_fused(run_args: list[list[str]], progress: bool = True, stop_after: int | None = None) -> list:
    """Train the runs given as ``deltaspace train`` argument lists; returns each run's result
    (a DataFrame, or None for a run skipped because its folder already has result.parquet)."""
    from .commands import loop_config
    from .stage0 import finish_stage0, setup_stage0, train_stage0

    parsed = [parse_run(a) for a in run_args]
    outs = [Path(a.out).resolve() for a in parsed]
    if len(set(outs)) != len(outs):
        raise ValueError("two fused runs write the same --out folder")
    results: list = [None] * len(parsed)
    groups, prepared = _group_runs(parsed)
    for (backbone_name, _, method, _, head, alone), members in groups.items():
        if alone:
            print(f"deltaspace train-fused: {alone}: training {len(members)} run(s) one after another, "
                  "each as deltaspace train does")
            for i in members:
                a, options, _ = prepared[i]
                results[i] = train_stage0(a.data, a.method, a.backbone, options, loop_config(a), a.out,
                                          progress=progress, stop_after=stop_after, **_stage0_kwargs(a))
            continue
        first, _, final = prepared[members[0]]
        shared = _shared_backbone(backbone_name, loop_config(first).seed, method, final, head)
        binding = GroupedBinding(shared[1])
        runs = []
        for i in members:
            a, options, _ = prepared[i]
            runs.append(FusedRun(setup_stage0(a.data, a.method, a.backbone, options, loop_config(a), a.out,
                                              shared=shared, **_stage0_kwargs(a)), stop_after))
        train_group(runs, members, binding, results, finish_stage0, progress)
    drop_kept_checkpoints(outs)
    return results


def run_fused_command(subparsers, name: str, single: str, train, print_result, **parser_text) -> None:
    """Register ``deltaspace NAME``: the runs of command ``single`` given as --run/--spec, trained
    together by ``train(runs, progress=, stop_after=)``; ``print_result`` prints each run's line."""
    import argparse

    def run(args) -> int:
        runs = [shlex.split(r) for r in args.run or []]
        for spec in args.spec or []:
            runs += read_spec(spec)
        if not runs:
            raise ValueError("give the runs with --run 'ARGS' (repeatable) or --spec FILE")
        if args.no_progress:
            runs = [r if "--no-progress" in r else [*r, "--no-progress"] for r in runs]
        outs = [Path(parse_run(r, single).out) for r in runs]
        for out, argv in zip(outs, runs):
            forget_other_arguments(out, argv, name)
        try:
            results = train(runs, progress=not args.no_progress, stop_after=args.stop_after_step)
        except Preempted as stop:
            print(f"deltaspace {name}: {stop}")
            return 143
        for result in results:
            if result is not None:
                print_result(result)
        if args.manifest:
            write_json({"command": name, "runs": [str(out) for out in outs]}, args.manifest)
        return 0

    p = subparsers.add_parser(name, **parser_text)
    p.add_argument("--run", action="append", metavar="'ARGS'",
                   help=f"one run's `deltaspace {single}` arguments as one quoted string (repeatable)")
    p.add_argument("--spec", action="append", metavar="FILE",
                   help="JSON/YAML list of runs, each an argument list or a command-line string")
    p.add_argument("--manifest", metavar="FILE",
                   help="written (a JSON list of the run folders) once every run is done: the workflow's output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (batch jobs)")
    p.add_argument("--stop-after-step", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


RUN_ARGS = "run-args.json"  # a fused run's arguments, beside its result and checkpoint


def forget_other_arguments(out: Path, argv: list[str], name: str) -> None:
    """Make a run folder's result and checkpoint count only for these arguments.

    A fused job skips its runs that have a result and resumes those with a checkpoint. Its
    workflow output is only the manifest, so a workflow manager rerunning it after a config change
    (or a kill) deletes none of the runs' files: a result or checkpoint that another argument list
    made, or whose arguments were never recorded, is removed here, and the run trains anew.
    """
    record, wanted = out / RUN_ARGS, [a for a in argv if a != "--no-progress"]
    if record.exists() and json.loads(record.read_text(encoding="utf-8")) == wanted:
        return
    stale = [out / f for f in ("result.parquet", "checkpoint.pt") if (out / f).exists()]
    if stale:
        print(f"deltaspace {name}: {out} was made with other arguments (or none recorded); trained again")
        for path in stale:
            path.unlink()
    write_json(wanted, record)


def _print(result) -> None:
    row = result.iloc[0]
    print(f"{row.task} {row.method} lr={row.lr:g} seed={row.seed}: best step {row.best_step}, "
          f"dev {row.dev_metric:.2f}, test {row.test_metric:.2f} ({row.metric})")


def register(subparsers) -> None:
    run_fused_command(subparsers, "train-fused", "train", train_fused, _print,
                      help="stage 0: train K runs over one shared backbone, one batch a step",
                      description="Train several `deltaspace train` runs in one process over one frozen "
                                  "backbone; each writes the folder `deltaspace train` writes. Runs whose "
                                  "folder has result.parquet are skipped; SIGTERM checkpoints all.")


if __name__ == "__main__":  # pragma: no cover
    from ..cli import main

    sys.exit(main(["train-fused", *sys.argv[1:]]))
