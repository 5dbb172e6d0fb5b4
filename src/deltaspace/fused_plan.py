"""Fused stage-0 jobs in the plan (``stage0.fuse: K``): runs that can share one backbone, K to a job.

With ``fuse`` above 1, the stage-0 runs of one backbone, method instance and head are split into
jobs of at most K runs (as even as possible: 9 runs at K=8 make jobs of 5 and 4, which two cores
run side by side), each one `deltaspace train-fused` process (one Slurm GPU job). A fused job's
outputs are its runs' own files (result.parquet, theta.*, curve.parquet): every rule that reads
them, and every table, is unchanged. In the Snakefile each fused job is a rule of its own with
those files as outputs and no wildcards, which Snakemake prefers over ``train_delta``'s pattern.

Runs that cannot fuse stay ``train_delta`` jobs: methods whose θ is backbone weights
(fine-tuning, last-layer, selective), runs of no training step (zero-shot), runs with
``micro_batch_size`` (a fused step takes whole batches), and a run left without a partner.

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


@dataclass
class FusedGroup:
    """One fused job: its Snakemake rule name and the stage-0 runs (train_delta wildcards) it trains."""

    rule: str
    backbone: str
    method: str
    members: list  # of Files(backbone, task, method, run)


def fuse_of(config: dict) -> int:
    return int((config.get("stage0") or {}).get("fuse", 1))


def fusable(plan, wc) -> bool:
    """Whether one stage-0 run can share its backbone with others in a fused job."""
    components = plan.method_of[wc.method].split("+")
    if any(c in BACKBONE_WEIGHT_METHODS for c in components):
        return False
    loop = plan.stage0_block(wc.task, wc.method)["loop"]
    return loop.get("steps") != 0 and not loop.get("micro_batch_size")


def fused_groups(plan) -> list[FusedGroup]:
    """The fused jobs of a plan, in stage-0 order (none when fuse is 1)."""
    k = fuse_of(plan.config)
    if k <= 1:
        return []
    by_key: dict[tuple, list] = {}
    for wc in plan.stage0_wildcards():
        if fusable(plan, wc):
            by_key.setdefault((wc.backbone, wc.method, plan.stage0_head(wc.task, wc.method)), []).append(wc)
    groups = []
    for (backbone, method, _), runs in by_key.items():
        for chunk in _even_chunks(runs, k):
            if len(chunk) > 1:  # a run with no partner stays a train_delta job
                groups.append(FusedGroup(f"train_fused_{len(groups)}", backbone, method, chunk))
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
    """(inputs, outputs, `deltaspace train-fused` arguments) of a fused job: its runs' inputs and
    files, and each run's `deltaspace train` arguments as one --run."""
    from .plan import Files, q

    inputs, outputs, runs = {}, [], []
    for wc in group.members:
        inp, out = Files(plan.train_inputs(wc)), Files(plan.outputs("train_delta", wc))
        for value in inp.values():
            inputs.update(dict.fromkeys(value if isinstance(value, list) else [value]))
        outputs += list(out.values())
        runs.append(f"--run {q(plan.train_args(wc, inp, out))}")
    return list(inputs), outputs, " ".join(["--no-progress", *runs])


def group_resources(plan, group: FusedGroup) -> tuple[int, dict[str, int]]:
    """Threads and resources of a fused job, scaled from one run's (see the module docstring)."""
    threads, one = plan.rule_resources("train_delta", group.members[0])
    n = len(group.members)
    return threads, {**one, "mem_mb": math.ceil(one["mem_mb"] * (1 + MEM_SHARE_PER_RUN * (n - 1))),
                     "runtime": one["runtime"] * n, "disk_mb": one["disk_mb"] * n}


def group_log(plan, group: FusedGroup) -> str:
    return f"{plan.R}/logs/fused/stage0/{group.rule}.log"


def group_benchmark(plan, group: FusedGroup) -> str:
    return f"{plan.R}/benchmarks/fused/stage0/{group.rule}.tsv"


def fused_jobs(plan) -> list:
    """The Plan.jobs() entries of the fused jobs (rule ``train_fused``; Snakemake's rule is ``group.rule``)."""
    from .plan import Files, Job

    jobs = []
    for group in plan.fused_groups:
        inputs, outputs, args = group_files(plan, group)
        threads, resources = group_resources(plan, group)
        jobs.append(Job("train_fused", Files(group=group.rule, backbone=group.backbone, method=group.method),
                        Files(inputs=inputs), Files(outputs=outputs), f"deltaspace train-fused {args}", threads,
                        resources, members=group.members))
    return jobs
