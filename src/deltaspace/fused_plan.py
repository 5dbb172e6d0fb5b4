"""Fused jobs in the plan: runs that can share one backbone, K to a job (``stage0.fuse: K``, a
setting's ``optimize.fuse: K``, or ``fuse:`` of config/paper/all.yaml for the merged DAG).

Fusing is a transformation of a list of jobs, applied after planning (and, for several experiment
configs, after merging them, so that a run two experiments share is one run of one fused job):

- stage 0: runs of one results folder, backbone, method instance and head, in `deltaspace train-fused`;
- optimize: runs of one results folder, setting, intrinsic dimension, subspace (group) and source
  method — its lr grid × seeds × the group's tasks — in `deltaspace optimize-fused`.

Each group of up to K runs (as even as possible: 9 runs at K=8 make jobs of 5 and 4, which two cores
run side by side) becomes one job of one wildcard rule, `train_fused` or `optimize_fused`, whose one
output is a manifest, ``{results}/fused/<stage>/<n>.json``, written when every run of the job is
done. The runs write their own folders as the single-run command would; a job that reads one of
those files depends on the manifest of the job that writes it instead. Why not the runs' files as
the fused job's outputs: that takes a Snakemake rule per job, and Snakemake's cost grows faster than
the number of rules (docs/workflow.md, "Scale"); one wildcard rule costs what one job does.

Runs that cannot fuse stay single-run jobs: methods whose θ is backbone weights (fine-tuning,
last-layer, selective), runs of no training step (zero-shot), runs with ``micro_batch_size`` (a
fused step takes whole batches), and a run left without a partner.

Resources: a fused job has the threads and GPUs of one run, ``runtime`` of all its runs one after
another (a bound: fused runs share every forward) and ``mem_mb`` of one run plus a quarter of it
per further run (the backbone is held once; each run adds its θ, optimizer state and rows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .method_names import BACKBONE_WEIGHT_METHODS

#: mem_mb of a fused job: one run's, plus this share of it for each further run.
MEM_SHARE_PER_RUN = 0.25


@dataclass(frozen=True)
class FusedStage:
    """A stage whose runs fuse: its single-run rule and the rule of its fused jobs."""

    name: str  # the config block that sets fuse, and the manifest and log folder
    rule: str  # the single-run rule
    fused_rule: str
    key_names: tuple  # the wildcards its fused runs share (beside the results folder)


STAGE0 = FusedStage("stage0", "train_delta", "train_fused", ("backbone", "method"))
OPTIMIZE = FusedStage("optimize", "optimize_subspace", "optimize_fused", ("setting", "y", "group", "method"))
STAGES = (STAGE0, OPTIMIZE)
BY_RULE = {stage.rule: stage for stage in STAGES}
BY_FUSED_RULE = {stage.fused_rule: stage for stage in STAGES}


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


def fuse_key(plan, rule: str, wc) -> tuple | None:
    """What a run of a single-run rule must share with others to fuse with them (its results folder
    first), or None when it cannot fuse."""
    stage = BY_RULE.get(rule)
    if stage is None or not fusable(plan, stage, wc):
        return None
    if stage is STAGE0:
        return plan.R, wc.backbone, wc.method, plan.stage0_head(wc.task, wc.method)
    return plan.R, wc.setting, wc.y, plan.settings[wc.setting]["where"][wc.subset, wc.task], wc.method


def fuse_k(plan, rule: str, wc) -> int:
    """The config's K for one run: a top-level ``fuse`` (``--config fuse=1`` runs every run alone,
    for a side-by-side with the fused results), else stage0.fuse or its setting's optimize.fuse."""
    if plan.config.get("fuse") is not None:
        return int(plan.config["fuse"])
    if rule == STAGE0.rule:
        return stage0_fuse(plan.config)
    return plan.settings[wc.setting]["optimize"]["fuse"] if rule == OPTIMIZE.rule else 1


def fuse_jobs(jobs: list, k_of=lambda job: job.fuse_k) -> list:
    """``jobs`` with the runs of each fused group replaced by one fused job (where its first run was),
    and every input that one of those runs writes replaced by the fused job's manifest.

    ``k_of(job)`` is the K of a single-run job with a ``fuse_key``: each config's own, or all.yaml's.
    """
    from .plan import _flat

    by_key: dict[tuple, list] = {}
    for job in jobs:
        if job.fuse_key is not None and k_of(job) > 1:
            by_key.setdefault((job.rule, job.fuse_key), []).append(job)
    first: dict[int, object] = {}  # id of a group's first run -> its fused job
    fused_runs: set[int] = set()
    made_by: dict[str, str] = {}
    count: dict[tuple, int] = {}
    for (rule, key), runs in by_key.items():
        stage = BY_RULE[rule]
        for chunk in _even_chunks(runs, k_of(runs[0])):
            if len(chunk) < 2:  # a run with no partner stays a single-run job
                continue
            n = count[key[0], stage] = count.get((key[0], stage), -1) + 1
            job = _fused_job(stage, key, n, chunk)
            first[id(chunk[0])] = job
            fused_runs.update(id(run) for run in chunk)
            manifest = job.output["manifest"]
            made_by.update((f, manifest) for run in chunk for f in _flat(run.output.values()))
    if not first:
        return jobs
    out = []
    for job in jobs:
        if id(job) in first:
            out.append(first[id(job)])
        elif id(job) not in fused_runs:
            out.append(job)
    return [_depend_on_manifests(job, made_by) for job in out]


def _fused_job(stage: FusedStage, key: tuple, n: int, runs: list):
    from .plan import RULES, Files, Job, _flat, q

    root, shared = key[0], dict(zip(stage.key_names, key[1:]))
    wc = Files(fused=str(n), **shared)
    manifest = f"{root}/fused/{stage.name}/{n}.json"
    inputs = {}
    for run in runs:
        inputs.update(dict.fromkeys(_flat(run.input.values())))
    single = f"deltaspace {RULES[stage.rule].command} "
    args = [f"--manifest {q(manifest)} --no-progress",
            *(f"--run {q(run.command.removeprefix(single))}" for run in runs)]
    one = runs[0].resources
    resources = {**one, "mem_mb": math.ceil(one["mem_mb"] * (1 + MEM_SHARE_PER_RUN * (len(runs) - 1))),
                 "runtime": one["runtime"] * len(runs), "disk_mb": one["disk_mb"] * len(runs)}
    return Job(stage.fused_rule, wc, Files(inputs=list(inputs)), Files(manifest=manifest),
               f"deltaspace {RULES[stage.fused_rule].command} {' '.join(args)}", runs[0].threads, resources,
               members=runs)


def _depend_on_manifests(job, made_by: dict[str, str]):
    """``job`` reading the manifest of the fused job that writes each of its inputs (never its own)."""
    from .plan import Files, _flat

    own = set(_flat(job.output.values()))
    changed, inputs = False, {}
    for name, value in job.input.items():
        files = value if isinstance(value, list) else [value]
        mapped = [made_by.get(f, f) for f in files]
        mapped = [m for m in dict.fromkeys(mapped) if m not in own]
        changed |= mapped != files
        inputs[name] = mapped if isinstance(value, list) else mapped[0]
    return replace(job, input=Files(inputs)) if changed else job


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
