"""Preflight: prove every job of a config startable before a cluster spends a GPU-hour on it.

``deltaspace preflight --configfile FILE`` plans the config with :mod:`deltaspace.plan` (the same
jobs the Snakefile runs) and checks, offline, what can be known before running:

* the config: its JSON schema and the plan's own checks (key paths in every message);
* data: each prepared task's source supports the config's data setting (CrossFit's TSV files are
  few-shot samples), has what it needs (a data folder, local files; a url source downloads its
  file itself), and for hub sources the template's fields (or the row builder's), the split names
  and the label values agree with the recorded schema of that hub dataset
  (:mod:`deltaspace.data.hub_schemas`); the task's metric (and the paper's override) exists;
* backbones: each resolves to a registered backbone (hub id) or a local model folder;
* resources: each job's declared ``mem_mb`` / ``runtime`` / ``gpu`` against an estimate of its
  peak memory and its runtime (the formulas are in docs/workflow.md, "Preflight estimates").

It prints one line per problem (key path, task or job, what is wrong, what fixes it) and then the
plan: jobs per rule, optimizer steps in all, GPU-hours on an A100 and an H100, and the largest
job's memory. The exit status is 1 when any problem was found.
"""

from __future__ import annotations

import functools
import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deltaspace.fused_plan import BY_FUSED_RULE
from deltaspace.plan import ConfigError, Job, Plan, parse_run, schema_errors

#: Fused jobs' rules, each with the single-run rule whose estimate every member of it takes.

# --- the estimates' constants (docs/workflow.md, "Preflight estimates") ---------------------------
BYTES = 4  # the training loops run in float32
# A job process's own memory beside weights, state and activations: Python with torch and transformers
# measured 0.31 GB of peak RSS here beyond MiniLM's 91 MB of weights (rounded up); a tables or report
# job (pandas, pyarrow, jinja2) 0.10 GB; a CUDA context about 1 GB of device memory.
HOST_OVERHEAD_GB = 0.5
LIGHT_OVERHEAD_GB = 0.25
CUDA_OVERHEAD_GB = 1.0
GPU_MEMORY_GB = 80.0  # an A100-80GB or an H100-80GB
GPUS = {"A100": 156e12, "H100": 495e12}  # dense TF32 tensor-core FLOP/s (float32 matmuls run as TF32)
GPU_UTILIZATION = 0.30  # small batches of short sequences keep a GPU far from its peak
CPU_FLOPS_PER_THREAD = 50e9  # a float32 GEMM thread of a current server core, sustained
RUNTIME_MARGIN = 1.5  # a job's declared time limit must cover the estimate this many times over
FULL_TRAIN_ROWS = 20_000  # deltaspace prepare's --max-train default (sampling.FULL_MAX_TRAIN)
DEV_ROWS = 240  # and its --max-dev default
FEWSHOT_ROWS = 32  # few-shot train rows when the class count is unknown (16 per class x 2)
DEFAULT_INPUT_LENGTH, DEFAULT_TARGET_LENGTH = 512, 64  # deltaspace prepare's defaults
DEFAULT_LOOP = {"steps": 1000, "batch_size": 16, "eval_every": 100, "eval_batch_size": 64}
FULL_PARAMETER_METHODS = ("finetune",)  # θ is every backbone weight: gradients and optimizer state for all


@dataclass
class Estimate:
    """What one job needs: device memory, host memory, optimizer steps, FLOPs."""

    device_gb: float = 0.0
    host_gb: float = 0.0
    steps: int = 0
    flops: float = 0.0
    micro_fit: int = 0  # a loop.micro_batch_size that would fit the job in its GPUs (0: none does)


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self) -> str:
        lines = [f"PROBLEM {p}" for p in self.problems] + self.summary
        verdict = ("preflight: OK" if self.ok else
                   f"preflight: {len(self.problems)} problem(s): fix them before running the workflow")
        return "\n".join(lines + [verdict])


# --------------------------------------------------------------------------- the config


def read_config(path: str | Path) -> dict:
    """A config file as the Snakefile sees it with --configfile (it replaces the quickstart default)."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such config file") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: invalid YAML: {err}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a config is a mapping of keys (docs/workflow.md), got {type(config).__name__}")
    return config


def preflight(configfile: str | Path, root: str | Path = ".") -> Report:
    """Every problem of a config that can be known before running, and the plan's summary."""
    report = Report()
    root = Path(root)
    config = read_config(configfile)
    errors = schema_errors(config, root / "workflow/schemas/config.schema.yaml")
    if errors:
        report.problems += [f"{configfile}: {e.strip()}" for e in errors]
        return report
    try:
        plan = Plan(config, root)
        jobs = plan.jobs(config_file=str(configfile))
    except ConfigError as err:
        report.problems.append(f"{configfile}: {err}")
        return report
    checker = Checker(plan, root)
    estimates = {}
    for job in jobs:
        report.problems += checker.job_problems(job)
        estimates[id(job)] = checker.estimate(job)
        report.problems += checker.resource_problems(job, estimates[id(job)])
    report.summary = summarize(configfile, jobs, estimates)
    return report


# --------------------------------------------------------------------------- checks


class Checker:
    """The checks of one plan's jobs (caches what several jobs share: tasks, backbones, |θ|)."""

    def __init__(self, plan: Plan, root: Path):
        from deltaspace.data.registry import load_registry

        self.plan = plan
        self.root = root
        self.registry = load_registry(root / "config/tasks")
        self.setting = plan.data.get("setting", "fewshot")
        self._seen_tasks: set[str] = set()
        self._seen_backbones: dict[str, str | None] = {}
        self._seen_heads: set[tuple[str, str, str]] = set()

    # ------------------------------------------------------------------ data and backbones

    def job_problems(self, job: Job) -> list[str]:
        problems = []
        backbone = job.wildcards.get("backbone")
        if backbone is not None:
            problems += self.backbone_problems(backbone)
        if job.rule == "prepare" and job.wildcards.task not in self._seen_tasks:
            self._seen_tasks.add(job.wildcards.task)
            problems += self.task_problems(job.wildcards.task)
        for run in job.members or [job]:
            if run.rule == "train_delta":
                problems += self.head_problems(run.wildcards)
        return problems

    def head_problems(self, wc) -> list[str]:
        """A stage-0 run's head must suit its backbone's kind and its task: a template head needs
        the task's prompt, a regression on an encoder a head with a trainable or word-pair output."""
        from deltaspace.backbones import ENCODER, backbone_spec
        from deltaspace.data.registry import CLASSIFICATION, REGRESSION
        from deltaspace.heads import MLM_HEADS, head_kind_problem

        head = self.plan.stage0_head(wc.task, wc.method)
        key = (head, wc.backbone, wc.task)
        if key in self._seen_heads:
            return []
        self._seen_heads.add(key)
        name = self.registry_backbone(wc.backbone)
        try:
            kind = backbone_spec(name).kind
        except (ValueError, OSError):
            return []  # backbone_problems names it
        task = self.registry.get(wc.task)
        where = f"stage0.head: task {wc.task} on {name} (method {wc.method})"
        problem = head_kind_problem(head, name, kind)
        if problem is None and head == "mlm-template" and task.prompt is None:
            problem = (f"--head mlm-template reads the task's manual template, and {task.defined_in} gives it no "
                       "`prompt` (fix: head mlm, or a prompt entry)")
        elif problem is None and head in MLM_HEADS and task.kind == REGRESSION and not (task.prompt and task.prompt.range):
            problem = "a regression on the masked-LM heads needs a prompt with `low`/`high` label words and a `range`"
        elif problem is None and kind == ENCODER and head == "label" and task.kind != CLASSIFICATION:
            problem = (f"the label head of an encoder classifies, and the task is a {task.kind} task (fix: head "
                       "classifier or mlm for a regression, or a seq2seq backbone)")
        return [f"{where}: {problem}"] if problem else []

    def backbone_problems(self, key: str) -> list[str]:
        if key not in self._seen_backbones:
            from deltaspace.backbones import backbone_spec

            name = self.registry_backbone(key)
            try:
                backbone_spec(name)
                self._seen_backbones[key] = None
            except (ValueError, OSError) as err:
                self._seen_backbones[key] = (f"backbone: {name!r}: {err} (fix: a registered name, see "
                                             f"src/deltaspace/backbones.py, or a local model folder)")
        problem = self._seen_backbones[key]
        if problem is None:
            return []
        self._seen_backbones[key] = None  # report it once
        return [problem]

    def task_problems(self, name: str) -> list[str]:
        from deltaspace.data import hub_schemas
        from deltaspace.data.metrics import canonical_metric

        task = self.registry.get(name)
        where = f"task {name} ({task.defined_in})"
        try:
            source = task.source_of_type(self.plan.data.get("source"))
        except ValueError as err:
            return [f"data.source: {where}: {err}"]
        problems = []
        if source.type == "crossfit_tsv":
            if self.setting != "fewshot":
                problems.append(f"data.setting: {where}: its source is CrossFit's few-shot TSV files, which cannot "
                                f"give the {self.setting!r} setting (fix: give the task a hub source with a "
                                f"template or a row builder in its registry entry, or use data.setting: fewshot)")
            if not self.plan.data.get("data_dir"):
                problems.append(f"data.data_dir: {where}: the crossfit_tsv source reads CrossFit's files from a "
                                f"folder (fix: set data.data_dir to the CrossFit data folder)")
        elif source.type == "hub":  # with a row builder too: the schema check covers the fields it reads
            problems += [f"tasks: {p}" for p in hub_schemas.schema_problems(task)]
        elif source.type == "url":
            pass  # a public file, downloaded once when prepared (or found in data.data_dir); nothing to set
        elif source.type in ("tsv", "jsonl", "csv", "parquet"):
            folder = Path(self.plan.data.get("data_dir") or ".")
            for key in ("train", "test"):
                file = source.get(key)
                if file and not (Path(file) if Path(file).is_absolute() else folder / file).exists():
                    problems.append(f"data.data_dir: {where}: its {source.type} {key} file {file!r} is not in "
                                    f"{folder} (fix: set data.data_dir, or give the file's path)")
        try:
            canonical_metric(self.registry.metric_for(name, self.plan.paper))
        except (ValueError, KeyError) as err:
            problems.append(f"paper: {where}: {err}")
        return problems

    # ------------------------------------------------------------------ resources

    def registry_backbone(self, key: str) -> str:
        """The backbone to check and size: a converted one by its registry entry (its folder is only
        written when the workflow runs), any other as the commands take it."""
        return key if self.plan.converted_model(key) else self.plan.backbones[key]

    @functools.cache
    def backbone_shape(self, key: str) -> dict[str, Any]:
        """Parameters, width, depth, heads and vocabulary of a backbone, from its config (no weights)."""
        from deltaspace.backbones import load_backbone

        backbone = load_backbone(self.registry_backbone(key), config_only=True)
        cfg = backbone.model.config
        layers = sum(getattr(cfg, a, 0) or 0 for a in ("num_layers", "num_decoder_layers", "encoder_layers",
                                                        "decoder_layers", "num_hidden_layers"))
        heads = getattr(cfg, "num_heads", None) or getattr(cfg, "encoder_attention_heads", None) or \
            getattr(cfg, "num_attention_heads", 1)
        return {"params": backbone.num_parameters, "d": backbone.hidden_size, "layers": layers, "heads": heads,
                "seq2seq": backbone.kind == "seq2seq", "decoder": backbone.kind == "decoder",
                "vocab": int(getattr(cfg, "vocab_size", 0) or 0)}

    @functools.cache
    def theta_size(self, key: str, method: str) -> int:
        from deltaspace.deltas.registry import delta_size

        if method not in self.plan.method_of:
            return 0
        options = self.plan.method_options.get(method, {})
        try:
            return delta_size(self.plan.method_of[method], self.registry_backbone(key), **options)
        except Exception:  # noqa: BLE001 (a bad option fails the job's own checks; the estimate goes on)
            return 0

    def lengths(self) -> tuple[int, int]:
        return (int(self.plan.data.get("max_input_length", DEFAULT_INPUT_LENGTH)),
                int(self.plan.data.get("max_target_length", DEFAULT_TARGET_LENGTH)))

    def train_rows(self, task: str) -> int:
        if self.setting == "fewshot":
            spec = self.registry.get(task)
            k = int(self.plan.data.get("k", 16))
            classes = len(spec.verbalizers or ()) or 2
            return k * classes if spec.k_rule == "per_class" else max(k, FEWSHOT_ROWS)
        return int(self.plan.data.get("max_train", FULL_TRAIN_ROWS))

    def estimate(self, job: Job) -> Estimate:
        """Peak memory, steps and FLOPs of one job (docs/workflow.md, "Preflight estimates")."""
        rule, wc, plan = job.rule, job.wildcards, self.plan
        if rule in ("results_index", "tables", "report"):
            return Estimate(host_gb=LIGHT_OVERHEAD_GB)
        if rule in ("prepare", "synthetic_mpc"):
            return Estimate(host_gb=HOST_OVERHEAD_GB)
        if rule in BY_FUSED_RULE:
            return self._fused(job)
        if rule == "fit_subspace" and plan.settings[wc.setting]["mode"] == "random":
            return Estimate(host_gb=HOST_OVERHEAD_GB)  # IPT's random baselines fit nothing: shapes, a seed
        key = wc.get("backbone", plan.backbone)
        shape = self.backbone_shape(key)
        if rule == "convert_backbone":  # the dequantized model and its clean copy, both in float32
            return Estimate(host_gb=2 * BYTES * shape["params"] / 1e9 + HOST_OVERHEAD_GB)
        s_in, s_out = self.lengths()
        if rule == "train_delta":
            loop = {**DEFAULT_LOOP, **plan.stage0_block(wc.task, wc.method)["loop"]}
            bs = parse_run(wc.run)[1] or int(loop["batch_size"])
            methods = [wc.method]
        elif rule in ("fit_subspace", "optimize_subspace"):
            s = plan.settings[wc.setting]
            loop = {**DEFAULT_LOOP, **s["fit" if rule == "fit_subspace" else "optimize"]["loop"]}
            bs = parse_run(wc.run)[1] or int(loop["batch_size"])
            methods = s["methods"] if rule == "fit_subspace" else [wc.method]
        elif rule == "efficiency":
            bs = max(plan.efficiency["batch_sizes"]) or 1
            s_in = int(plan.efficiency.get("input_length", s_in))
            loop, methods = {"steps": 1}, [wc.method]
        else:  # landscape, task_transfer: forward passes only
            return self._forward_only(job, shape, s_in, s_out)
        theta = max(self.theta_size(key, m) for m in methods)
        full = any(plan.method_of.get(m, m) in FULL_PARAMETER_METHODS for m in methods)
        trained = shape["params"] if full else theta
        micro = min(int(loop.get("micro_batch_size") or bs), bs)
        act = self._activations(shape, micro, s_in, s_out)
        state_gb = (BYTES * shape["params"] + 4 * BYTES * trained + act) / 1e9
        steps = self._steps(loop, bs, wc.get("task"))
        per_example = self._forward_flops(shape, s_in, s_out)
        train_flops = steps * bs * per_example * (3 if full else 2) * len(methods)
        evals = math.ceil(steps / max(int(loop.get("eval_every", DEFAULT_LOOP["eval_every"])), 1))
        flops = train_flops + evals * DEV_ROWS * per_example * len(methods)
        est = self._memory(job, shape, state_gb, steps=steps, flops=flops)
        if job.resources["gpu"]:  # the largest micro-batch (a power of two) that would fit one GPU
            fixed = est.device_gb - act / 1e9
            est.micro_fit = next((m for m in (2 ** i for i in range(int(math.log2(max(bs, 1))), -1, -1))
                                  if m < micro and fixed + self._activations(shape, m, s_in, s_out) / 1e9
                                  <= GPU_MEMORY_GB * job.resources["gpu"]), 0)
        return est

    def _fused(self, job: Job) -> Estimate:
        """A fused job (deltaspace.fused_plan): its runs' steps and FLOPs add up, while the backbone's
        weights and the process (or CUDA context) are held once and each run adds its own state and
        activations."""
        runs = [self.estimate(run) for run in job.members]
        weights = BYTES * self.backbone_shape(job.wildcards.get("backbone", self.plan.backbone))["params"] / 1e9
        if job.resources["gpu"]:
            fixed = weights + CUDA_OVERHEAD_GB
            device, host = fixed + sum(e.device_gb - fixed for e in runs), max(e.host_gb for e in runs)
        else:
            fixed = weights + HOST_OVERHEAD_GB
            device, host = 0.0, fixed + sum(e.host_gb - fixed for e in runs)
        return Estimate(device_gb=device, host_gb=host, steps=sum(e.steps for e in runs),
                        flops=sum(e.flops for e in runs), micro_fit=min(e.micro_fit for e in runs))

    @staticmethod
    def _memory(job: Job, shape: dict, state_gb: float, **counts) -> Estimate:
        """On a GPU job the state is on the device and the host holds the weights once (they load
        there first); on a CPU job the host holds it all."""
        if job.resources["gpu"]:
            return Estimate(device_gb=state_gb + CUDA_OVERHEAD_GB,
                            host_gb=BYTES * shape["params"] / 1e9 + HOST_OVERHEAD_GB, **counts)
        return Estimate(host_gb=state_gb + HOST_OVERHEAD_GB, **counts)

    def _steps(self, loop: dict, bs: int, task: str | None) -> int:
        if "epochs" in loop and task is not None:
            return math.ceil(float(loop["epochs"]) * self.train_rows(task) / bs)
        return int(loop.get("steps", DEFAULT_LOOP["steps"]))

    @staticmethod
    def _forward_flops(shape: dict, s_in: int, s_out: int) -> float:
        # 2 FLOPs per weight per token; an encoder-decoder's halves see the input and the target; a
        # decoder-only model runs every weight on prompt and target alike (one sequence; greedy
        # decoding with the KV cache costs the same per generated token)
        if shape.get("decoder"):
            return 2 * shape["params"] * (s_in + s_out)
        return shape["params"] * (s_in + s_out) if shape["seq2seq"] else 2 * shape["params"] * s_in

    @staticmethod
    def _activations(shape: dict, bs: int, s_in: int, s_out: int) -> float:
        # per layer and token ~ (34 d + 5 h s) bytes at 16 bits (Korthikanti et al. 2022): twice in float32
        if shape.get("decoder"):
            # one stack over prompt + target, and the causal LM loss keeps the logits of every
            # position: logits, their float32 log-softmax and its gradient, 3 x vocab floats a token
            # (Llama 3's 128,256 words make this the largest term at short lengths)
            s = s_in + s_out
            return 2 * bs * s * shape["layers"] * (34 * shape["d"] + 5 * shape["heads"] * s) \
                + 3 * BYTES * bs * s * shape["vocab"]
        s = max(s_in, s_out) if shape["seq2seq"] else s_in
        return 2 * bs * s * shape["layers"] * (34 * shape["d"] + 5 * shape["heads"] * s)

    def _forward_only(self, job: Job, shape: dict, s_in: int, s_out: int) -> Estimate:
        bs = int(DEFAULT_LOOP["eval_batch_size"])
        act = self._activations(shape, bs, s_in, s_out) / 4  # no graph kept for backward
        points = 1
        if job.rule == "landscape":
            o = self.plan.landscape_of(job.wildcards)["options"]
            lo, hi, step = float(o.get("lo", -1)), float(o.get("hi", 1)), float(o.get("step", 0.1))
            points = (int(round((hi - lo) / step)) + 1) ** 2 if step > 0 else 1
        flops = points * DEV_ROWS * self._forward_flops(shape, s_in, s_out)
        return self._memory(job, shape, (BYTES * shape["params"] + act) / 1e9, flops=flops)

    def resource_problems(self, job: Job, est: Estimate) -> list[str]:
        family = f"resources.{_family(job.rule)}"
        label = f"{job.rule} {_job_name(job)}"
        res = job.resources
        problems = []
        if res["mem_mb"] < est.host_gb * 1000:
            problems.append(f"{family}.mem_mb: {label}: declares {res['mem_mb']} MB, needs about "
                            f"{est.host_gb * 1000:.0f} MB ({'weights on the host' if res['gpu'] else 'the whole job'})"
                            f" (fix: raise mem_mb{_by_method_hint(job)})")
        if res["gpu"] and est.device_gb > GPU_MEMORY_GB * res["gpu"] and job.rule != "efficiency":
            # (an efficiency job measures memory: a batch size that runs out of it is a result, "oom")
            fix = (f"loop.micro_batch_size: {est.micro_fit} keeps the batch and fits" if est.micro_fit else
                   "even one row does not fit: a smaller max_input_length or a smaller backbone")
            problems.append(f"{family}.gpu: {label}: needs about {est.device_gb:.0f} GB of GPU memory, more than "
                            f"{res['gpu']} x {GPU_MEMORY_GB:.0f} GB (fix: {fix})")
        seconds = runtime_seconds(est, res["gpu"], job.threads, "A100")
        if seconds and res["runtime"] * 60 < RUNTIME_MARGIN * seconds:
            where = f"{res['gpu']} A100 GPU(s)" if res["gpu"] else f"{job.threads} CPU thread(s)"
            problems.append(f"{family}.runtime: {label}: declares {res['runtime']} min, needs about "
                            f"{seconds / 60:.0f} min on {where} (fix: runtime >= {math.ceil(RUNTIME_MARGIN * seconds / 60)}"
                            f"{', or gpu: 1' if not res['gpu'] else ''}{_by_method_hint(job)})")
        return problems


def runtime_seconds(est: Estimate, gpus: int, threads: int, gpu: str) -> float:
    if not est.flops:
        return 0.0
    if gpus:
        return est.flops / (GPUS[gpu] * GPU_UTILIZATION * gpus)
    return est.flops / (CPU_FLOPS_PER_THREAD * max(threads, 1))


def _family(rule: str) -> str:
    from deltaspace.plan import RULES

    return RULES[rule].family


def _by_method_hint(job: Job) -> str:
    method = job.wildcards.get("method")
    return f", or under by_method.{method}" if method and job.rule in ("train_delta", "optimize_subspace") else ""


def _job_name(job: Job) -> str:
    return "/".join(str(v) for v in job.wildcards.values()) or "(one job)"


# --------------------------------------------------------------------------- the summary


def summarize(configfile, jobs: list[Job], estimates: dict[int, Estimate]) -> list[str]:
    counts = Counter(job.rule for job in jobs)
    steps = sum(estimates[id(j)].steps for j in jobs)
    gpu_hours = {name: sum(runtime_seconds(estimates[id(j)], j.resources["gpu"], j.threads, name) * j.resources["gpu"]
                           for j in jobs if j.resources["gpu"]) / 3600 for name in GPUS}
    cpu_hours = sum(runtime_seconds(estimates[id(j)], 0, j.threads, "A100") * j.threads
                    for j in jobs if not j.resources["gpu"]) / 3600
    largest = max(jobs, key=lambda j: max(estimates[id(j)].device_gb, estimates[id(j)].host_gb))
    big = estimates[id(largest)]
    lines = [f"plan of {configfile}: {len(jobs)} jobs: " + ", ".join(f"{r} {n}" for r, n in counts.items()),
             f"  optimizer steps in all: {steps:,}",
             f"  estimated GPU-hours: {gpu_hours['A100']:,.1f} on A100, {gpu_hours['H100']:,.1f} on H100 "
             f"(at {GPU_UTILIZATION:.0%} of dense TF32 peak); CPU core-hours: {cpu_hours:,.1f}",
             f"  largest job: {largest.rule} {_job_name(largest)}: about "
             f"{max(big.device_gb, big.host_gb):.1f} GB ({'GPU' if largest.resources['gpu'] else 'host'} memory)"]
    return lines


def experiment_files(configfiles: list[str], root: str = ".") -> list[str]:
    """The configs to check: a config naming experiments (config/paper/all.yaml) stands for them."""
    import yaml

    from .plan_all import is_multi

    out = []
    for configfile in configfiles:
        path = Path(root) / configfile
        config = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
        out += [str(f) for f in config["experiments"]] if isinstance(config, dict) and is_multi(config) else [configfile]
    return list(dict.fromkeys(out))


def main_preflight(configfiles: list[str], root: str = ".") -> int:
    failed = 0
    for configfile in experiment_files(configfiles, root):
        try:
            report = preflight(configfile, root)
        except (ValueError, FileNotFoundError) as err:
            print(f"PROBLEM {err}\npreflight: 1 problem(s)", file=sys.stdout)
            failed += 1
            continue
        print(report.render(), flush=True)
        failed += not report.ok
    return 1 if failed else 0


def register(subparsers) -> None:
    p = subparsers.add_parser("preflight", help="check every job of a config before running it (offline)",
                              description=__doc__.splitlines()[0])
    p.add_argument("--configfile", nargs="+", required=True, metavar="FILE",
                   help="workflow config(s), as given to snakemake --configfile")
    p.add_argument("--root", default=".", help="the repository (its config/tasks and table specs; default .)")
    p.set_defaults(func=lambda args: main_preflight(args.configfile, args.root))
