# Config helpers shared by every rule: the checked and expanded config, wildcard constraints,
# output paths and the lists of targets. Everything here runs once, when Snakemake parses the
# workflow, and is plain dictionary work (no subprocess, no model or data loading), so that a
# paper config with thousands of jobs still builds its DAG in seconds. Input functions only look
# up what is computed here.
#
# Checks beyond the JSON schema (which has already run): every task exists in the registry
# (config/tasks/*.yaml, read directly with PyYAML), every method is known and configured, every
# table spec exists, and the settings are consistent (a task optimized in one group only, the
# stage-0 runs a joint/msf fit needs are configured, ...). A failure names the config key path.

import difflib
import re
import shlex
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError

# The registry's delta methods (src/deltaspace/deltas/registry.py; tests/test_workflow.py checks the two
# lists agree). Listed here because importing the registry would import torch at parse time. A
# composite method joins registry names with "+" (prompt+bitfit+adapter: survey section 5.2).
REGISTRY_METHODS = ("adapter", "prefix", "lora", "prompt", "bitfit", "finetune", "lora-mpco", "lora-mpcd",
                    "lora-mpcn", "parallel-adapter", "trilora", "flora", "adalora", "dora", "ssl", "ssb", "ia3",
                    "sam-parser", "last-layer", "selective", "classifier")
# Keys of a `methods:` entry that configure the workflow, not the delta (every other key is an option).
INSTANCE_KEYS = ("method", "record")
MODES_NEEDING_STAGE0 = ("joint", "msf")  # they decompose the training tasks' stage-0 solutions
LANDSCAPE_METHODS = ("adapter", "prefix", "lora")  # the three solutions of unified-dt Figure 2
TASKS_DIR = Path("config/tasks")
TABLE_SPECS_DIR = Path("src/deltaspace/tables/specs")
TABLE_SUFFIXES = (".parquet", ".csv", ".md", ".tex", ".vs_paper.csv", ".vs_paper.md")
LOOP_FLAGS = {  # config key -> command-line flag of the training-like commands
    "steps": "--steps",
    "batch_size": "--batch-size",
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

# A run folder names its grid point: lr, the batch size when the grid has one, and the seed.
RUN_PATTERN = r"lr[0-9.eE+-]+(?:_bs[0-9]+)?_seed[0-9]+"
RUN_RE = re.compile(r"^lr(?P<lr>[0-9.eE+-]+?)(?:_bs(?P<bs>[0-9]+))?_seed(?P<seed>[0-9]+)$")
NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
METHOD_NAME = r"[A-Za-z0-9][A-Za-z0-9._+-]*"  # a method instance may be a composite, a+b

def config_error(path, message):
    return WorkflowError(f"config error at {path}: {message}")


def suggest(name, choices, n=3):
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def num(value):
    """A config number (YAML may hand over '1e-5' as a string) as a float."""
    return float(value)


def fmt(value):
    """A number as it appears in run folder names and on command lines: 0.0005, 1e-05, 0.3."""
    return format(num(value), "g")


# --------------------------------------------------------------------------- the task registry


def _yaml(path):
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=loader) or {}


def load_registry(folder=TASKS_DIR):
    """Task names, aliases and paper splits of config/tasks/*.yaml (read directly: no subprocess)."""
    tasks, aliases, papers = set(), {}, {}
    files = sorted(Path(folder).glob("*.yaml"))
    if not files:
        raise WorkflowError(f"no task registry: {folder}/*.yaml not found (run Snakemake from the repository root)")
    for path in files:
        data = _yaml(path)
        for name, entry in (data.get("tasks") or {}).items():
            tasks.add(name)
            for alias in (entry or {}).get("aliases") or ():
                aliases[alias] = name
        papers.update(data.get("papers") or {})
    return tasks, aliases, papers


REGISTRY_TASKS, REGISTRY_ALIASES, REGISTRY_PAPERS = load_registry()


def _split_roles(ref, path):
    """PAPER/SPLIT/ROLE or PAPER/SPLIT/GROUP/ROLE of config/tasks/splits.yaml -> task names."""
    parts = ref.split("/")
    paper, split = parts[0], parts[1]
    if paper not in REGISTRY_PAPERS:
        raise config_error(path, f"{ref!r}: no paper {paper!r} in {TASKS_DIR}/splits.yaml; papers: "
                                 f"{', '.join(sorted(REGISTRY_PAPERS))}{suggest(paper, REGISTRY_PAPERS)}")
    splits = REGISTRY_PAPERS[paper].get("splits") or {}
    if split not in splits:
        raise config_error(path, f"{ref!r}: paper {paper} has no split {split!r}; splits: "
                                 f"{', '.join(sorted(splits))}{suggest(split, splits)}")
    spec = splits[split]
    groups = spec.get("groups") or {}
    if len(parts) == 4:
        group, role = parts[2], parts[3]
        if group not in groups:
            raise config_error(path, f"{ref!r}: split {paper}/{split} has no group {group!r}; groups: "
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
        raise config_error(path, f"{ref!r}: no role {role!r}; roles: {', '.join(sorted(roles))}"
                                 f"{suggest(role, roles)}")
    return list(roles[role])


def resolve_tasks(value, path):
    """A config task list (names or a registry split reference) as canonical task names."""
    names = _split_roles(value, path) if isinstance(value, str) else list(value)
    out = []
    for i, name in enumerate(names):
        canonical = REGISTRY_ALIASES.get(name, name)
        if canonical not in REGISTRY_TASKS:
            where = path if isinstance(value, str) else f"{path}[{i}]"
            raise config_error(where, f"unknown task {name!r}{suggest(name, REGISTRY_TASKS | set(REGISTRY_ALIASES))}"
                                      f"; `deltaspace tasks list` shows the registry ({TASKS_DIR}/*.yaml)")
        if canonical not in out:
            out.append(canonical)
    return out


def table_spec_ids(folder=TABLE_SPECS_DIR):
    ids = set()
    for path in sorted(Path(folder).glob("*.yaml")):
        ids.update(t["id"] for t in _yaml(path).get("tables") or () if isinstance(t, dict) and "id" in t)
    return ids


# --------------------------------------------------------------------------- config expansion


def run_ids(grid, seeds):
    """Run folder names of a grid: lr{lr}[_bs{bs}]_seed{seed}, in grid order."""
    batch_sizes = grid.get("batch_size") or [None]
    return [f"lr{fmt(lr)}" + (f"_bs{bs}" if bs is not None else "") + f"_seed{seed}"
            for lr in grid["lr"] for bs in batch_sizes for seed in seeds]


def parse_run(run):
    m = RUN_RE.match(run)
    if not m:
        raise WorkflowError(f"not a run folder name: {run!r}")
    return num(m["lr"]), (int(m["bs"]) if m["bs"] else None), int(m["seed"])


def check_registry_method(method, path):
    """A registry method name, or a composite a+b+c of distinct registry names."""
    parts = method.split("+")
    for part in parts:
        if part not in REGISTRY_METHODS:
            raise config_error(path, f"unknown delta method {part!r}{suggest(part, REGISTRY_METHODS)}; methods: "
                                     f"{', '.join(REGISTRY_METHODS)} (or a composite such as prompt+bitfit+adapter)")
    if len(set(parts)) != len(parts):
        raise config_error(path, f"composite method {method!r} repeats a component")


def check_method(method, path):
    """A method instance: a key of `methods:` (its delta is the entry's `method:`, default the key)."""
    if method not in METHOD_OPTIONS:
        known = ", ".join(METHOD_OPTIONS)
        raise config_error(path, f"method {method!r} has no entry under `methods:` (configured: {known}; add "
                                 f"`{method}: {{}}` for a registry method's defaults){suggest(method, METHOD_OPTIONS)}")


def stage_block(block, path, need_grid=True, stage0=False):
    block = block or {}
    if need_grid and "grid" not in block:
        raise config_error(path, "needs a `grid:` with at least `lr: [...]`")
    loop = dict(block.get("loop") or {})
    if not stage0:
        for key in STAGE0_ONLY_LOOP_KEYS:
            if key in loop:
                raise config_error(f"{path}.loop.{key}", "only stage 0 (deltaspace train) takes this; give `steps`")
    return {"grid": block.get("grid"), "seeds": list(block.get("seeds") or DEFAULT_SEEDS), "loop": loop}


EXPERIMENT = config["experiment"]
R = config.get("results") or f"results/{EXPERIMENT}"
R = R.rstrip("/")
REPORT = config.get("report") or f"reports/{EXPERIMENT}.html"
BACKBONES = {}  # path key -> backbone as the commands take it (a name, or a local model folder)


def backbone_key(backbone, path):
    """A backbone's folder name in result paths: its name, or a model folder's base name."""
    key = Path(backbone).name
    if not re.fullmatch(NAME, key):
        raise config_error(path, f"backbone {backbone!r} does not give a usable folder name")
    if BACKBONES.setdefault(key, backbone) != backbone:
        raise config_error(path, f"backbones {BACKBONES[key]!r} and {backbone!r} share the folder name {key!r}")
    return key


BACKBONE = backbone_key(config["backbone"], "backbone")
DATA = dict(config.get("data") or {})
DSEED = int(DATA.get("seed", 100))
RESAMPLE_PER_SEED = bool(DATA.get("resample_per_seed", False))
PAPER = config.get("paper")
# Method instances: the keys of `methods:`. An instance runs the registry (or composite) method named
# by its `method:` (default: the key itself) with the other keys as options, and its results carry
# the `record:` columns (e.g. hadapter-r2 runs `adapter` at r=8 and records method=hadapter, rank=2,
# the names the decomposition table specs match on). Results and folders use the instance name.
METHOD_OPTIONS, METHOD_OF, METHOD_RECORD = {}, {}, {}
for _m, _opts in config["methods"].items():
    _opts = dict(_opts or {})
    METHOD_OF[_m] = str(_opts.get("method", _m))
    check_registry_method(METHOD_OF[_m], f"methods.{_m}" + (".method" if "method" in _opts else ""))
    METHOD_RECORD[_m] = dict(_opts.get("record") or {})
    METHOD_OPTIONS[_m] = {k: v for k, v in _opts.items() if k not in INSTANCE_KEYS}
METHODS = tuple(METHOD_OPTIONS)

# Stage 0: one block per method (the shared block, overridden key by key).
# The block of one task x method is layered: the shared block, then the task's `stage0.by_task`
# entry (the decomposition paper's per-task learning rate and epochs, its Table VI), then the
# method's own overrides (e.g. prompt tuning's Adafactor at lr 0.3 in the survey).
# A config without stage0 measures only what needs no training (efficiency, synthetic_mpc).
_s0 = config.get("stage0") or {"methods": {}}
_s0_shared = stage_block(_s0, "stage0", need_grid="stage0" in config, stage0=True)
STAGE0_HEAD = _s0.get("head", "label")
STAGE0_RECORD = dict(_s0.get("record") or {})
STAGE0_TRAIN_EVAL = _s0.get("train_eval")  # score the selected θ on <= N training rows (survey Table 7)
STAGE0_BY_TASK = {}
for _t, _over in (_s0.get("by_task") or {}).items():
    _task = resolve_tasks([_t], f"stage0.by_task.{_t}")[0]
    STAGE0_BY_TASK[_task] = stage_block(_over, f"stage0.by_task.{_t}", need_grid=False, stage0=True)
    STAGE0_BY_TASK[_task]["seeds"] = (_over or {}).get("seeds")
    STAGE0_BY_TASK[_task]["head"] = (_over or {}).get("head")
STAGE0 = {}
_s0_methods = {m: None for m in METHOD_OPTIONS} if _s0["methods"] == "all" else _s0["methods"]
for _m, _over in _s0_methods.items():
    check_method(_m, f"stage0.methods.{_m}")
    _over = _over or {}
    _mp = f"stage0.methods.{_m}"
    STAGE0[_m] = {
        "grid": _over.get("grid"),
        "seeds": _over.get("seeds"),
        "loop": dict(stage_block(_over, _mp, need_grid=False, stage0=True)["loop"]),
        "backbones": [backbone_key(b, f"{_mp}.backbones") for b in
                      _over.get("backbones") or _s0.get("backbones") or [config["backbone"]]],
        "head": _over.get("head"),
        "init_from": _over.get("init_from"),
    }
for _m, _spec in STAGE0.items():
    _src = _spec["init_from"]
    if _src is not None:
        if _src not in STAGE0:
            raise config_error(f"stage0.methods.{_m}.init_from", f"{_src!r} is not trained in stage 0 (stage0.methods: "
                                                                  f"{', '.join(STAGE0)}){suggest(_src, STAGE0)}")
        _chain, _seen = _src, {_m}
        while _chain is not None:  # a sequential combination is a chain, never a cycle
            if _chain in _seen:
                raise config_error(f"stage0.methods.{_m}.init_from", f"init_from chain {_m} -> {_src} loops")
            _seen.add(_chain)
            _chain = STAGE0[_chain]["init_from"]
STAGE0_EXTRA_TASKS = resolve_tasks(_s0["tasks"], "stage0.tasks") if _s0.get("tasks") else []


def stage0_block(task, method):
    """Grid, seeds and loop of one task x method: shared < stage0.by_task[task] < the method's overrides."""
    by_task = STAGE0_BY_TASK.get(task) or {}
    own = STAGE0[method]
    grid = own["grid"] or by_task.get("grid") or _s0_shared["grid"]
    seeds = list(own["seeds"] or by_task.get("seeds") or _s0_shared["seeds"])
    loop = {}
    for layer in (_s0_shared["loop"], by_task.get("loop") or {}, own["loop"]):
        if "epochs" in layer or "steps" in layer:  # the training budget: the most specific layer's one
            loop.pop("epochs", None)
            loop.pop("steps", None)
        loop.update(layer)
    return {"grid": grid, "seeds": seeds, "loop": loop}


def stage0_head(task, method):
    """The encoder head of one task x method: the method's own, else the task's (a regression such as
    STS-B needs the classifier head), else stage0.head, else the label head."""
    return STAGE0[method]["head"] or (STAGE0_BY_TASK.get(task) or {}).get("head") or STAGE0_HEAD


def stage0_runs(task, method):
    block = stage0_block(task, method)
    return run_ids(block["grid"], block["seeds"])

# Subspace settings. Each group is one subspace: fitted on its train tasks, optimized in on the
# tasks of its subsets ("test" = the group's test list; more subsets for IPT's protocols).
SETTINGS = {}
for _name, _s in (config.get("settings") or {}).items():
    _p = f"settings.{_name}"
    for _i, _m in enumerate(_s["methods"]):
        check_method(_m, f"{_p}.methods[{_i}]")
    if _s["mode"] == "msf" and _s["methods"] != ["prompt"]:
        raise config_error(f"{_p}.methods", "mode msf fits IPT's prompt auto-encoder: methods must be [prompt]")
    if _s["mode"] in MODES_NEEDING_STAGE0:
        for _m in _s["methods"]:
            if _m not in STAGE0:
                raise config_error(f"{_p}.methods", f"mode {_s['mode']} decomposes stage-0 solutions, but {_m!r} is "
                                                    f"not under stage0.methods")
    _ys = _s["y"] if isinstance(_s["y"], list) else [_s["y"]]
    _fit = stage_block(_s.get("fit"), f"{_p}.fit")
    _opt = stage_block(_s.get("optimize"), f"{_p}.optimize")
    _opt["methods"] = list((_s.get("optimize") or {}).get("methods") or _s["methods"])
    for _i, _m in enumerate(_opt["methods"]):
        if _m not in _s["methods"]:
            raise config_error(f"{_p}.optimize.methods[{_i}]", f"{_m!r} is not one of the setting's methods "
                                                               f"{_s['methods']}")
    _groups, _where = {}, {}
    for _g, _spec in _s["groups"].items():
        _gp = f"{_p}.groups.{_g}"
        _train = resolve_tasks(_spec["train"], f"{_gp}.train")
        _test = resolve_tasks(_spec["test"], f"{_gp}.test") if "test" in _spec else []
        _subsets = {}
        if _test:
            _subsets["test"] = {"tasks": _test, "data_seed": DSEED}
        for _sub, _sspec in (_spec.get("subsets") or {}).items():
            _sp = f"{_gp}.subsets.{_sub}"
            if _sub in _subsets:
                raise config_error(_sp, f"subset {_sub!r} is already the group's `test` list")
            _tasks = _sspec["tasks"]
            if _tasks == "train":
                _tasks = _train
            elif _tasks == "test":
                if not _test:
                    raise config_error(f"{_sp}.tasks", "`test` names the group's test list, but the group has none")
                _tasks = _test
            else:
                _tasks = resolve_tasks(_tasks, f"{_sp}.tasks")
            _subsets[_sub] = {"tasks": _tasks, "data_seed": int(_sspec.get("data_seed", DSEED))}
        for _sub, _sspec in _subsets.items():
            for _t in _sspec["tasks"]:
                if (_sub, _t) in _where:
                    raise config_error(f"{_gp}", f"task {_t!r} of subset {_sub!r} is also in group "
                                                 f"{_where[_sub, _t]!r}: a task is optimized in one subspace per setting")
                _where[_sub, _t] = _g
        _groups[_g] = {"train": _train, "test": _test, "subsets": _subsets}
    SETTINGS[_name] = {
        "mode": _s["mode"], "methods": list(_s["methods"]), "ys": _ys, "groups": _groups, "where": _where,
        "recon_weight": _s.get("recon_weight"), "lr_vector": _s.get("lr_vector"),
        "fit": {**_fit, "runs": run_ids(_fit["grid"], _fit["seeds"])},
        "optimize": {**_opt, "runs": run_ids(_opt["grid"], _opt["seeds"])},
    }

# Stage 0 trains what the tables and fits need, per task and method: each setting's methods on its
# optimize tasks (E_ori, the denominators of the relative tables) and, for joint/msf fits, on its
# training tasks (the solutions they decompose); every stage-0 method on stage0.tasks; and a
# method whose block says `tasks: all` (or a list) on every stage-0 task (or that list).
STAGE0_PAIRS = {}  # task -> stage-0 methods, both in first-mention order


def _want(task, methods):
    have = STAGE0_PAIRS.setdefault(task, [])
    for m in methods:
        if m in STAGE0 and m not in have:
            if STAGE0[m]["init_from"] is not None:  # a sequential stage needs the earlier stages first
                _want(task, [STAGE0[m]["init_from"]])
            have.append(m)


# A method with its own task list trains on those (and on what the settings need of it), not on
# every stage0.tasks entry: e.g. the survey's sequential combinations run on SST-2 only.
_OWN_TASKS = {m for m, over in _s0_methods.items() if isinstance((over or {}).get("tasks"), (list, str))
              and (over or {}).get("tasks") != "all"}
for _t in STAGE0_EXTRA_TASKS:
    _want(_t, [m for m in STAGE0 if m not in _OWN_TASKS])
for _s in SETTINGS.values():
    for _g in _s["groups"].values():
        _needed = list(_g["test"])
        for _sub in _g["subsets"].values():
            _needed += _sub["tasks"]
        if _s["mode"] in MODES_NEEDING_STAGE0:
            _needed += _g["train"]
        for _t in _needed:
            _want(_t, _s["methods"])
for _m, _over in _s0_methods.items():
    _tasks = (_over or {}).get("tasks")
    if _tasks == "all":
        for _t in list(STAGE0_PAIRS):
            _want(_t, [_m])
    elif _tasks:
        for _t in resolve_tasks(_tasks, f"stage0.methods.{_m}.tasks"):
            _want(_t, [_m])

# Landscapes: one per entry, on a task optimized in the given setting.
LANDSCAPES = []
for _i, _l in enumerate(config.get("landscape") or ()):
    _p = f"landscape[{_i}]"
    if _l["setting"] not in SETTINGS:
        raise config_error(f"{_p}.setting", f"no setting {_l['setting']!r}; settings: {', '.join(SETTINGS) or '(none)'}"
                                            f"{suggest(_l['setting'], SETTINGS)}")
    _s = SETTINGS[_l["setting"]]
    _task = resolve_tasks([_l["task"]], f"{_p}.task")[0]
    _subs = [sub for (sub, t) in _s["where"] if t == _task]
    if not _subs:
        raise config_error(f"{_p}.task", f"{_task!r} is not optimized in setting {_l['setting']!r}")
    _sub = "test" if "test" in _subs else _subs[0]
    _y = _l.get("y", _s["ys"][0])
    if _y not in _s["ys"] or ("y" not in _l and len(_s["ys"]) > 1):
        raise config_error(f"{_p}.y", f"give one of the setting's y values {_s['ys']}")
    _missing = [m for m in LANDSCAPE_METHODS if m not in _s["optimize"]["methods"]]
    if _missing:
        raise config_error(_p, f"a landscape needs subspace solutions of {', '.join(LANDSCAPE_METHODS)}; setting "
                               f"{_l['setting']!r} does not optimize {', '.join(_missing)}")
    if any((l["setting"], l["y"], l["task"]) == (_l["setting"], _y, _task) for l in LANDSCAPES):
        raise config_error(_p, f"a landscape of {_task!r} in setting {_l['setting']!r} (y={_y}) is already listed")
    LANDSCAPES.append({"setting": _l["setting"], "task": _task, "y": _y, "subset": _sub,
                       "group": _s["where"][_sub, _task], "options": {k: v for k, v in _l.items()
                                                                     if k not in ("setting", "task", "y")}})

# Task-level transfer (survey section 5.4): every method's best stage-0 delta of each source task,
# evaluated zero-shot on every other task of the list (deltaspace task-transfer).
TASK_TRANSFER = None
if config.get("task_transfer"):
    _tt = config["task_transfer"]
    for _i, _m in enumerate(_tt["methods"]):
        check_method(_m, f"task_transfer.methods[{_i}]")
        if _m not in STAGE0:
            raise config_error(f"task_transfer.methods[{_i}]", f"{_m!r} is not under stage0.methods: transfer "
                                                               f"starts from stage-0 deltas")
    TASK_TRANSFER = {"methods": list(_tt["methods"]), "tasks": resolve_tasks(_tt["tasks"], "task_transfer.tasks")}
    if len(TASK_TRANSFER["tasks"]) < 2:
        raise config_error("task_transfer.tasks", "needs at least two tasks (a source and a target)")
    for _t in TASK_TRANSFER["tasks"]:
        _want(_t, TASK_TRANSFER["methods"])

# Memory efficiency (survey Figure 9): one job per backbone x method (deltaspace efficiency).
EFFICIENCY = None
if config.get("efficiency"):
    _ef = config["efficiency"]
    for _i, _m in enumerate(_ef["methods"]):
        check_method(_m, f"efficiency.methods[{_i}]")
    EFFICIENCY = dict(_ef)
    EFFICIENCY["backbones"] = [backbone_key(b, f"efficiency.backbones[{i}]") for i, b in
                               enumerate(_ef.get("backbones") or [config["backbone"]])]

SYNTHETIC_MPC = config.get("synthetic_mpc")  # the decomposition paper's matrix study (deltaspace synthetic-mpc)

TABLES = list(config["tables"])
_known_specs = table_spec_ids()
for _i, _spec in enumerate(TABLES):
    if _known_specs and _spec not in _known_specs:
        raise config_error(f"tables[{_i}]", f"unknown table spec {_spec!r}{suggest(_spec, _known_specs)}; "
                                            f"`deltaspace tables list` shows them")

STAGE0_PAIRS = {t: ms for t, ms in STAGE0_PAIRS.items() if ms}
if "stage0" in config and not STAGE0_PAIRS:
    raise config_error("stage0", "nothing to train: add `stage0.tasks`, a setting or task_transfer whose methods "
                                 "are under stage0.methods")
if "stage0" not in config and not (EFFICIENCY or SYNTHETIC_MPC):
    raise config_error("(top level)", "nothing to run: give `stage0` (training), `efficiency` or `synthetic_mpc`")
STAGE0_TASKS = list(STAGE0_PAIRS)

RESOURCES = config.get("resources") or {}


# --------------------------------------------------------------------------- paths


def data_dir(backbone, task, seed):
    return f"{R}/data/{backbone}/{task}/seed{seed}"


def stage0_dir(backbone, task, method, run):
    return f"{R}/stage0/{backbone}/{task}/{method}/{run}"


def subspace_dir(setting, group, y, run):
    return f"{R}/subspace/{setting}/{group}/y{y}/{run}"


def optimize_dir(setting, y, subset, task, method, run):
    return f"{R}/optimize/{setting}/y{y}/{subset}/{task}/{method}/{run}"


def landscape_dir(setting, y, task):
    return f"{R}/landscape/{setting}/y{y}/{task}"


def task_transfer_dir(backbone, method, source, task):
    return f"{R}/task-transfer/{backbone}/{method}/{source}/{task}"


def efficiency_dir(backbone, method):
    return f"{R}/efficiency/{backbone}/{method}"


SYNTHETIC_MPC_DIR = f"{R}/synthetic-mpc"


def parent(path):
    return str(Path(path).parent)


# --------------------------------------------------------------------------- targets


def stage0_results():
    return [f"{stage0_dir(bb, t, m, run)}/result.parquet"
            for t, methods in STAGE0_PAIRS.items() for m in methods
            for bb in STAGE0[m]["backbones"] for run in stage0_runs(t, m)]


def stage0_task_results(task, methods, backbone=None):
    """Every stage-0 run (all grid points) of a task for these methods, on the config's backbone."""
    bb = backbone or BACKBONE
    return [f"{stage0_dir(bb, task, m, run)}/result.parquet" for m in methods
            if m in STAGE0_PAIRS.get(task, ()) and bb in STAGE0[m]["backbones"] for run in stage0_runs(task, m)]


def fit_results():
    return [f"{subspace_dir(name, g, y, run)}/result.parquet"
            for name, s in SETTINGS.items() for g in s["groups"] for y in s["ys"] for run in s["fit"]["runs"]]


def optimize_results():
    return [f"{optimize_dir(name, y, sub, t, m, run)}/result.parquet"
            for name, s in SETTINGS.items() for y in s["ys"] for g in s["groups"].values()
            for sub, spec in g["subsets"].items() for t in spec["tasks"]
            for m in s["optimize"]["methods"] for run in s["optimize"]["runs"]]


def landscape_outputs():
    return [f"{landscape_dir(l['setting'], l['y'], l['task'])}/{name}"
            for l in LANDSCAPES for name in ("grid.parquet", "landscape.png")]


def task_transfer_results():
    if not TASK_TRANSFER:
        return []
    return [f"{task_transfer_dir(BACKBONE, m, src, t)}/result.parquet" for m in TASK_TRANSFER["methods"]
            for src in TASK_TRANSFER["tasks"] for t in TASK_TRANSFER["tasks"] if t != src]


def efficiency_results():
    if not EFFICIENCY:
        return []
    return [f"{efficiency_dir(bb, m)}/result.parquet" for bb in EFFICIENCY["backbones"] for m in EFFICIENCY["methods"]]


def synthetic_mpc_results():
    return [f"{SYNTHETIC_MPC_DIR}/result.parquet"] if SYNTHETIC_MPC else []


def all_results():
    return (stage0_results() + fit_results() + optimize_results() + task_transfer_results() + efficiency_results()
            + synthetic_mpc_results())


def all_tables():
    return [f"{R}/tables/{spec}{suffix}" for spec in TABLES for suffix in TABLE_SUFFIXES]


# --------------------------------------------------------------------------- command-line pieces


def q(value):
    return shlex.quote(str(value))


def loop_flags(loop, run=None):
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


def method_sets(method, prefix=""):
    return " ".join(f"--set {q(f'{prefix}{k}={v}')}" for k, v in METHOD_OPTIONS.get(method, {}).items())


def record_flags(method, stage0=True):
    """--record KEY=VALUE columns of a run: its instance name as `method` where the delta's own name
    differs, then stage0.record (stage-0 runs), then the instance's `record:`."""
    columns = {"method": method} if method != METHOD_OF[method] else {}
    columns.update(STAGE0_RECORD if stage0 else {})
    columns.update(METHOD_RECORD.get(method, {}))
    return " ".join(f"--record {q(f'{k}={v}')}" for k, v in columns.items())


COMMON_FLAGS = f"--experiment {q(EXPERIMENT)} --no-progress"


def common_flags(setting=None):
    return COMMON_FLAGS + (f" --setting {q(setting)}" if setting is not None else "")


def resource(family, key, method=None):
    spec = RESOURCES.get(family) or {}
    if method is not None:
        spec = {**spec, **((spec.get("by_method") or {}).get(method) or {})}
    return int(spec.get(key, RESOURCE_DEFAULTS[key]))


def resources_of(family, by_method=False):
    """Snakemake resources of a family of rules, from the `resources:` section of the config.

    Plain numbers unless the family has per-method overrides (a function of the method wildcard
    then): Snakemake evaluates resources for every job, and constants keep that cheap. disk_mb is
    always given, so that Snakemake's default (twice the input size, which stats every input file
    of every job) is never evaluated.
    """
    keys = ("mem_mb", "runtime", "gpu", "disk_mb")
    if by_method and (RESOURCES.get(family) or {}).get("by_method"):
        return {key: (lambda wc, k=key: resource(family, k, wc.method)) for key in keys}
    return {key: resource(family, key) for key in keys}


def threads_of(family, by_method=False):
    if by_method and (RESOURCES.get(family) or {}).get("by_method"):
        return lambda wc: resource(family, "threads", wc.method)
    return resource(family, "threads")


# --------------------------------------------------------------------------- per-rule inputs and arguments
# Input functions and command lines of the rules (workflow/rules/*.smk). A command line is built by
# one function per rule: Snakemake inspects every params function of every job.


def prepare_flags():
    flags = [f"--setting {q(DATA.get('setting', 'fewshot'))}"]
    for key, flag in DATA_FLAGS.items():
        if key in DATA:
            flags.append(f"{flag} {q(DATA[key])}")
    if DATA.get("task_prefix"):
        flags.append("--task-prefix")
    if PAPER:
        flags.append(f"--paper {q(PAPER)}")
    return " ".join(flags)


PREPARE_FLAGS = prepare_flags()


def prepare_args(wc, output):
    return (f"--task {q(wc.task)} --seed {wc.dseed} --backbone {q(BACKBONES[wc.backbone])}"
            f" --out {q(parent(output.manifest))} {PREPARE_FLAGS}")


def train_inputs(wc):
    seed = parse_run(wc.run)[2]
    inputs = {"data": f"{data_dir(wc.backbone, wc.task, seed if RESAMPLE_PER_SEED else DSEED)}/manifest.json"}
    source = STAGE0[wc.method]["init_from"]
    if source is not None:  # sequential combination: the earlier stage's runs on this task at this seed
        # (every grid point of it: deltaspace train keeps the best on dev)
        inputs["init_from"] = [f"{stage0_dir(wc.backbone, wc.task, source, run)}/result.parquet"
                               for run in stage0_runs(wc.task, source) if parse_run(run)[2] == seed]
        if not inputs["init_from"]:
            raise WorkflowError(f"stage0.methods.{wc.method}.init_from: {source!r} has no run at seed {seed} "
                                f"on {wc.task}; give both the same seeds")
    return inputs


def train_args(wc, input, output):
    """Every option of one stage-0 job (one function: Snakemake inspects each params function per job)."""
    args = [f"--data {q(parent(input.data))} --method {q(METHOD_OF[wc.method])}", method_sets(wc.method),
            f"--backbone {q(BACKBONES[wc.backbone])} --out {q(parent(output.result))}",
            loop_flags(stage0_block(wc.task, wc.method)["loop"], wc.run), COMMON_FLAGS]
    args.append(record_flags(wc.method))
    head = stage0_head(wc.task, wc.method)
    if head != "label":
        args.append(f"--head {head}")
    if "init_from" in input.keys():
        args.append(f"--init-from {folders(input.init_from)}")
    if STAGE0_TRAIN_EVAL:
        args.append(f"--train-eval {STAGE0_TRAIN_EVAL}")
    return " ".join(a for a in args if a)


def folders(files):
    return " ".join(q(parent(f)) for f in files)


def fit_inputs(wc):
    s = SETTINGS[wc.setting]
    group = s["groups"][wc.group]
    inputs = {"data": [f"{data_dir(BACKBONE, t, DSEED)}/manifest.json" for t in group["train"]]}
    if s["mode"] in MODES_NEEDING_STAGE0:
        inputs["stage0"] = [f for t in group["train"] for f in stage0_task_results(t, s["methods"])]
    return inputs


def fit_args(wc, input, output):
    s = SETTINGS[wc.setting]
    args = [f"--mode {s['mode']} --methods {','.join(s['methods'])} --y {wc.y}"]
    if s["recon_weight"] is not None:
        args.append(f"--recon-weight {fmt(s['recon_weight'])}")
    if s["lr_vector"] is not None:
        args.append(f"--lr-vector {fmt(s['lr_vector'])}")
    args.append(f"--backbone {q(BACKBONES[BACKBONE])}")
    args += [method_sets(m, prefix=f"{m}.") for m in s["methods"]]
    args.append(f"--train-data {folders(input.data)}")
    if "stage0" in input.keys():
        args.append(f"--stage0 {folders(input.stage0)}")
    args += [f"--out {q(parent(output.result))}", loop_flags(s["fit"]["loop"], wc.run), common_flags(wc.setting)]
    return " ".join(a for a in args if a)


def subspace_files(setting, group, y):
    """The subspace.json of every fit run of a group (the fit grid)."""
    return [f"{subspace_dir(setting, group, y, run)}/subspace.json" for run in SETTINGS[setting]["fit"]["runs"]]


def optimize_inputs(wc):
    s = SETTINGS[wc.setting]
    group = s["where"][wc.subset, wc.task]
    seed = s["groups"][group]["subsets"][wc.subset]["data_seed"]
    return {"subspace": subspace_files(wc.setting, group, wc.y),
            "data": f"{data_dir(BACKBONE, wc.task, seed)}/manifest.json"}


def optimize_args(wc, input, output):
    return " ".join([
        f"--subspace {folders(input.subspace)} --method {wc.method} --subset {q(wc.subset)}",
        f"--data {q(parent(input.data))} --out {q(parent(output.result))}",
        loop_flags(SETTINGS[wc.setting]["optimize"]["loop"], wc.run), common_flags(wc.setting),
    ])


LANDSCAPE_OPTION_FLAGS = {"lo": "--lo", "hi": "--hi", "step": "--step", "split": "--split",
                          "max_examples": "--max-examples", "eval_batch_size": "--eval-batch-size"}
LANDSCAPE_BY_KEY = {(l["setting"], str(l["y"]), l["task"]): l for l in LANDSCAPES}


def landscape_of(wc):
    return LANDSCAPE_BY_KEY[wc.setting, wc.y, wc.task]


def landscape_inputs(wc):
    l = landscape_of(wc)
    s = SETTINGS[wc.setting]
    seed = s["groups"][l["group"]]["subsets"][l["subset"]]["data_seed"]
    return {
        "subspace": subspace_files(wc.setting, l["group"], wc.y),
        "intrinsic": [f"{optimize_dir(wc.setting, wc.y, l['subset'], wc.task, m, run)}/result.parquet"
                      for m in LANDSCAPE_METHODS for run in s["optimize"]["runs"]],
        "data": f"{data_dir(BACKBONE, wc.task, seed)}/manifest.json",
        "stage0": stage0_task_results(wc.task, LANDSCAPE_METHODS),
    }


def landscape_args(wc, input, output):
    options = landscape_of(wc)["options"]
    args = [f"--subspace {folders(input.subspace)}", f"--intrinsic {folders(input.intrinsic)}",
            f"--data {q(parent(input.data))}"]
    if input.stage0:
        args.append(f"--stage0 {folders(input.stage0)}")
    args.append(f"--out {q(parent(output.grid))}")
    args += [f"{flag} {q(fmt(options[k]) if k in ('lo', 'hi', 'step') else options[k])}"
             for k, flag in LANDSCAPE_OPTION_FLAGS.items() if k in options]
    args.append(common_flags(wc.setting))
    return " ".join(args)


def task_transfer_inputs(wc):
    return {"source": stage0_task_results(wc.source, [wc.method], wc.backbone),
            "data": f"{data_dir(wc.backbone, wc.task, DSEED)}/manifest.json"}


def task_transfer_args(wc, input, output):
    return " ".join([f"--source {folders(input.source)} --data {q(parent(input.data))}",
                     f"--out {q(parent(output.result))}", COMMON_FLAGS])


EFFICIENCY_FLAGS = {"input_length": "--input-length", "target_length": "--target-length"}


def efficiency_args(wc, output):
    args = [f"--backbone {q(BACKBONES[wc.backbone])} --method {q(METHOD_OF[wc.method])}", method_sets(wc.method),
            f"--batch-sizes {','.join(str(b) for b in EFFICIENCY['batch_sizes'])}"]
    args += [f"{flag} {EFFICIENCY[k]}" for k, flag in EFFICIENCY_FLAGS.items() if k in EFFICIENCY]
    args += [record_flags(wc.method, stage0=False), f"--out {q(parent(output.result))}", COMMON_FLAGS]
    return " ".join(a for a in args if a)


def synthetic_mpc_args(output):
    """The synthetic-mpc options of the config, as flags (ranks: 2,4,8 -> --ranks 2,4,8)."""
    args = []
    for key, value in SYNTHETIC_MPC.items():
        value = ",".join(str(v) for v in value) if isinstance(value, list) else value
        args.append(f"--{key.replace('_', '-')} {q(value)}")
    args += [f"--out {q(parent(output.result))}", f"--experiment {q(EXPERIMENT)}"]
    return " ".join(args)


ALL_RESULTS = all_results()
RESULT_STAGES = ("stage0", "subspace", "optimize", "task-transfer", "efficiency", "synthetic-mpc")
RESULT_GLOBS = " ".join(q(f"{R}/{stage}/**/result.parquet") for stage in RESULT_STAGES)


def report_config_file():
    """The config file shown in the report's provenance: the last --configfile, else the default."""
    files = workflow.overwrite_configfiles
    return str(files[-1]) if files else "config/config.yaml"
