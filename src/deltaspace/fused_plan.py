"""Fused jobs in the plan: runs that can share one backbone, K to a job (``stage0.fuse: K``, and
``settings.NAME.optimize.fuse: K`` for a setting's optimize-subspace runs).

With ``fuse`` above 1, the runs that could share one loaded model are split into jobs of at most K
runs (as even as possible: 9 runs at K=8 make jobs of 5 and 4, which two cores run side by side),
each one process (one Slurm GPU job):

- stage 0: runs of one backbone, method instance and head, in `deltaspace train-fused`;
- optimize: runs of one setting, intrinsic dimension, subspace (group) and source method — its lr
  grid × seeds × the group's tasks — in `deltaspace optimize-fused`.

A fused job's outputs are its runs' own files: every rule that reads them, and every table, is
unchanged. In the Snakefile each fused job is a rule of its own with those files as outputs and no
wildcards, which Snakemake prefers over the single-run rule's pattern.

Runs that cannot fuse stay single-run jobs: methods whose θ is backbone weights (fine-tuning,
last-layer, selective), runs of no training step (zero-shot), runs with ``micro_batch_size`` (a
fused step takes whole batches), and a run left without a partner.

Resources: a fused job has the threads and GPUs of one run, ``runtime`` of all its runs one after
another (a bound: fused runs share every forward) and ``mem_mb`` of one run plus a quarter of it
per further run (the backbone is held once; each run adds its θ, optimizer state and rows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .method_names import BACKBONE_WEIGHT_METHODS

#: mem_mb of a fused job: one run's, plus this share of it for each further run.
MEM_SHARE_PER_RUN = 0.25


@dataclass(frozen=True)
class FusedStage:
    """A stage whose runs fuse: its single-run rule, the fused jobs' rule family and command."""

    name: str  # the config block that sets fuse, and the log folder
    rule: str  # the single-run rule the fused jobs replace
    fused_rule: str  # Plan.jobs()'s rule of its fused jobs (Snakemake's: fused_rule_<i>)
    plan_functions: str  # the Plan's <name>_inputs / <name>_args of the single-run rule

    def inputs(self, plan, wc) -> dict:
        return getattr(plan, f"{self.plan_functions}_inputs")(wc)

    def args(self, plan, wc, inp, out) -> str:
        return getattr(plan, f"{self.plan_functions}_args")(wc, inp, out)


STAGE0 = FusedStage("stage0", "train_delta", "train_fused", "train")
OPTIMIZE = FusedStage("optimize", "optimize_subspace", "optimize_fused", "optimize")
STAGES = (STAGE0, OPTIMIZE)


@dataclass
class FusedGroup:
    """One fused job: its Snakemake rule name, its stage and the runs (the single-run rule's wildcards) it trains."""

    rule: str
    stage: FusedStage
    key: dict  # what its runs share: backbone or (setting, y, group), and method
    members: list  # of Files, the single-run rule's wildcards


def stage0_fuse(config: dict) -> int:
    return int((config.get("stage0") or {}).get("fuse", 1))


def fusable(plan, stage: FusedStage, wc) -> bool:
    """Whether one run can share its backbone with others in a fused job."""
    method = wc.method
    components = (plan.method_of.get(method, method)).split("+")
    if any(c in BACKBONE_WEIGHT_METHODS for c in components):
        return False
    if stage is STAGE0:
        loop = plan.stage0_block(wc.task, method)["loop"]
    else:
        loop = plan.settings[wc.setting]["optimize"]["loop"]
    return loop.get("steps") != 0 and not loop.get("micro_batch_size")


def _keyed_runs(plan) -> list[tuple[FusedStage, int, dict, list]]:
    """(stage, K, shared key, runs) of every set of runs that could share one process."""
    out = []
    k = stage0_fuse(plan.config)
    if k > 1:
        by_key: dict[tuple, list] = {}
        for wc in plan.stage0_wildcards():
            if fusable(plan, STAGE0, wc):
                by_key.setdefault((wc.backbone, wc.method, plan.stage0_head(wc.task, wc.method)), []).append(wc)
        out += [(STAGE0, k, {"backbone": bb, "method": m}, runs) for (bb, m, _), runs in by_key.items()]
    by_key = {}
    for wc in plan.optimize_wildcards():
        s = plan.settings[wc.setting]
        if s["optimize"]["fuse"] > 1 and fusable(plan, OPTIMIZE, wc):
            by_key.setdefault((wc.setting, wc.y, s["where"][wc.subset, wc.task], wc.method), []).append(wc)
    out += [(OPTIMIZE, plan.settings[name]["optimize"]["fuse"], {"setting": name, "y": y, "group": g, "method": m},
             runs) for (name, y, g, m), runs in by_key.items()]
    return out


def fused_groups(plan) -> list[FusedGroup]:
    """The fused jobs of a plan, stage 0's first, in run order (none when no stage fuses)."""
    groups: list[FusedGroup] = []
    count = dict.fromkeys(STAGES, 0)
    for stage, k, key, runs in _keyed_runs(plan):
        for chunk in _even_chunks(runs, k):
            if len(chunk) > 1:  # a run with no partner stays a single-run job
                groups.append(FusedGroup(f"{stage.fused_rule}_{count[stage]}", stage, key, chunk))
                count[stage] += 1
    return groups


def _even_chunks(items: list, k: int) -> list[list]:
    """``items`` in order, in the fewest chunks of at most k, sizes differing by at most one."""
    n = math.ceil(len(items) / k)
    size, extra = divmod(len(items), n)
    chunks, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        chunks.append(items[start:end])
        start = end
    return chunks


def group_files(plan, group: FusedGroup) -> tuple[list[str], list[str], str]:
    """(inputs, outputs, fused command arguments) of a fused job: its runs' inputs and files, and
    each run's single-run arguments as one --run."""
    from .plan import Files, q

    stage = group.stage
    inputs, outputs, runs = {}, [], []
    for wc in group.members:
        inp, out = Files(stage.inputs(plan, wc)), Files(plan.outputs(stage.rule, wc))
        for value in inp.values():
            inputs.update(dict.fromkeys(value if isinstance(value, list) else [value]))
        outputs += list(out.values())
        runs.append(f"--run {q(stage.args(plan, wc, inp, out))}")
    return list(inputs), outputs, " ".join(["--no-progress", *runs])


def group_resources(plan, group: FusedGroup) -> tuple[int, dict[str, int]]:
    """Threads and resources of a fused job, scaled from one run's (see the module docstring)."""
    threads, one = plan.rule_resources(group.stage.rule, group.members[0])
    n = len(group.members)
    return threads, {**one, "mem_mb": math.ceil(one["mem_mb"] * (1 + MEM_SHARE_PER_RUN * (n - 1))),
                     "runtime": one["runtime"] * n, "disk_mb": one["disk_mb"] * n}


def group_log(plan, group: FusedGroup) -> str:
    return f"{plan.R}/logs/fused/{group.stage.name}/{group.rule}.log"


def group_benchmark(plan, group: FusedGroup) -> str:
    return f"{plan.R}/benchmarks/fused/{group.stage.name}/{group.rule}.tsv"


def fused_members(plan, rule: str) -> set[tuple]:
    """The runs of single-run rule ``rule`` that fused jobs train (as wildcard value tuples)."""
    return {tuple(wc.values()) for g in plan.fused_groups if g.stage.rule == rule for wc in g.members}


def fused_jobs(plan) -> list:
    """The Plan.jobs() entries of the fused jobs (rule ``train_fused`` or ``optimize_fused``;
    Snakemake's rule is ``group.rule``)."""
    from .plan import RULES, Files, Job

    jobs = []
    for group in plan.fused_groups:
        inputs, outputs, args = group_files(plan, group)
        threads, resources = group_resources(plan, group)
        jobs.append(Job(group.stage.fused_rule, Files(fused=group.rule, **group.key), Files(inputs=inputs),
                        Files(outputs=outputs), f"deltaspace {RULES[group.stage.fused_rule].command} {args}",
                        threads, resources, members=group.members))
    return jobs
