"""The plan (deltaspace.plan): the jobs a config runs, computed without Snakemake and without torch.

The Snakefile's rules take their files, inputs, command lines and resources from the plan, and
preflight checks the plan's jobs; the first test proves that both see the same DAG by comparing
`Plan.jobs()` with what `snakemake -n -p` prints, job by job.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deltaspace.plan import ConfigError, Plan, _flat, schema_errors

REPO = Path(__file__).resolve().parents[1]


def load(configfile: str) -> dict:
    return yaml.safe_load((REPO / configfile).read_text())


def snakemake_jobs(configfile: str) -> set[tuple]:
    """(rule, outputs, command, threads, mem_mb, runtime, gpu) of every job `snakemake -n -p` prints."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--forceall", "-p", "--cores", "64", "--configfile",
                           configfile],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = set()
    for block in re.split(r"\n\[\w{3} \w{3} +\d+ [\d:]+ \d{4}\]\n", proc.stdout)[1:]:
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)[1]
        if rule == "all":
            continue
        outputs = frozenset(re.search(r"^\s+output: (.*)$", block, re.M)[1].split(", "))
        command = re.search(r"^Shell command: (.*) > \S+ 2>&1$", block, re.M)
        command = command[1] if command else None  # results_index runs inside Snakemake
        threads = re.search(r"^\s+threads: (\d+)$", block, re.M)
        res = dict(kv.split("=", 1) for kv in re.search(r"^\s+resources: (.*)$", block, re.M)[1].split(", "))
        jobs.add((rule, outputs, command, int(threads[1]) if threads else 1,
                  int(res["mem_mb"]), int(res["runtime"]), int(res["gpu"])))
    return jobs


def plan_jobs(configfile: str) -> set[tuple]:
    out = set()
    for job in Plan(load(configfile), REPO).jobs(config_file=configfile):
        files = frozenset(f for v in job.output.values() for f in (v if isinstance(v, list) else [v]))
        out.add((job.rule, files, job.command, job.threads, job.resources["mem_mb"], job.resources["runtime"],
                 job.resources["gpu"]))
    return out


@pytest.mark.parametrize("configfile", ["config/smoke.yaml", "config/paper/udt-single.yaml"])
def test_plan_jobs_are_the_snakemake_dag(configfile, monkeypatch):
    monkeypatch.chdir(REPO)
    ours = plan_jobs(configfile)
    theirs = {j for j in snakemake_jobs(configfile) if j[0] != "report"}  # report names the config's abs path
    ours_report = [j for j in ours if j[0] == "report"]
    assert len(ours_report) == 1
    assert ours - set(ours_report) == theirs


def fused_smoke(tmp_path, fuse: int = 4) -> str:
    config = load("config/smoke.yaml")
    config["stage0"]["fuse"] = fuse
    for setting in config["settings"].values():
        setting.setdefault("optimize", {})["fuse"] = fuse
    path = tmp_path / f"smoke-fuse{fuse}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def test_fused_plan_jobs_are_the_snakemake_dag(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    configfile = fused_smoke(tmp_path)
    ours = {j for j in plan_jobs(configfile) if j[0] != "report"}
    assert {j[0] for j in ours} >= {"train_delta", "train_fused", "optimize_fused"}
    assert ours == {j for j in snakemake_jobs(configfile) if j[0] != "report"}


def test_fused_jobs_write_the_files_of_the_runs_they_replace():
    config = load("config/smoke.yaml")
    plain = Plan(config, REPO).jobs()
    config["stage0"]["fuse"] = 1
    assert [j.command for j in Plan(config, REPO).jobs()] == [j.command for j in plain]  # fuse 1 = no fuse
    config["stage0"]["fuse"] = 4
    fused = Plan(config, REPO).jobs()
    groups = [j for j in fused if j.rule == "train_fused"]
    runs = lambda jobs: sorted(f for j in jobs if j.rule == "train_delta" for f in _flat(j.output.values()))  # noqa: E731
    assert runs(fused + [m for g in groups for m in g.members]) == runs(plain)  # the same runs, the same files
    others = lambda jobs: sorted(str(j.command) for j in jobs if j.rule not in ("train_delta", "train_fused"))  # noqa: E731
    assert others(fused) == others(plain)  # readers' command lines name the runs' folders as before
    # ... but wait for the manifest of the fused job that writes a file, never for the file itself
    made_by = {f: g.output["manifest"] for g in groups for m in g.members for f in _flat(m.output.values())}
    plain_inputs = {_flat(j.output.values())[0]: _flat(j.input.values()) for j in plain}
    for job in fused:
        if job.rule not in ("train_delta", "train_fused"):
            wanted = list(dict.fromkeys(made_by.get(f, f) for f in plain_inputs[_flat(job.output.values())[0]]))
            assert _flat(job.input.values()) == wanted
    assert any(f in made_by.values() for j in fused if j.rule == "fit_subspace" for f in _flat(j.input.values()))
    # the smoke config's adapter, prefix, lora and prompt runs on 3 tasks each: one job each; the methods
    # with one run (bitfit, a composite, a sequential combination, a classifier head) stay train_delta
    assert [(j.wildcards.method, len(j.members)) for j in groups] == [("adapter", 3), ("prefix", 3), ("lora", 3),
                                                                       ("prompt", 3)]
    assert [j.output["manifest"] for j in groups] == [f"results/smoke/fused/stage0/{n}.json" for n in range(4)]
    one = next(j for j in plain if j.rule == "train_delta" and j.wildcards.method == "adapter")
    assert groups[0].resources["runtime"] == 3 * one.resources["runtime"]
    assert groups[0].resources["mem_mb"] == math.ceil(1.5 * one.resources["mem_mb"])
    assert groups[0].command.count(" --run ") == 3
    assert all(f"--run {shlex.quote(j.command.removeprefix('deltaspace train '))}" in groups[0].command
               for j in plain if j.rule == "train_delta" and j.wildcards.method == "adapter")


def test_top_level_fuse_overrides_every_stage():
    """`--config fuse=1` plans the quickstart unfused (its side-by-side twin); `fuse: K` fuses the smoke."""
    quickstart = load("config/config.yaml")
    fused = Plan(quickstart, REPO).jobs()
    assert {"train_fused", "optimize_fused"} <= {j.rule for j in fused}
    alone = Plan({**quickstart, "fuse": 1}, REPO).jobs()
    assert not {"train_fused", "optimize_fused"} & {j.rule for j in alone}
    stage0_off = dict(quickstart, stage0={**quickstart["stage0"], "fuse": 1},
                      settings={n: {**s, "optimize": {**s["optimize"], "fuse": 1}} for n, s in quickstart["settings"].items()})
    assert [j.command for j in alone] == [j.command for j in Plan(stage0_off, REPO).jobs()]
    smoke = load("config/smoke.yaml")
    assert "train_fused" not in {j.rule for j in Plan(smoke, REPO).jobs()}
    assert {"train_fused", "optimize_fused"} <= {j.rule for j in Plan({**smoke, "fuse": 8}, REPO).jobs()}
    assert not schema_errors({**smoke, "fuse": 8})
    assert [e.split(":")[0].strip() for e in schema_errors({**smoke, "fuse": 0})] == ["fuse"]


def test_fused_groups_are_even_and_skip_runs_that_cannot_share_a_backbone():
    from deltaspace.fused_plan import _even_chunks

    assert [len(c) for c in _even_chunks(list(range(9)), 8)] == [5, 4]
    assert [len(c) for c in _even_chunks(list(range(16)), 8)] == [8, 8]
    config = load("config/config.yaml")
    config["stage0"]["fuse"] = 8
    groups = [j for j in Plan(config, REPO).jobs() if j.rule == "train_fused"]
    methods = {m.wildcards.method for g in groups for m in g.members}
    assert "finetune" not in methods and "zero-shot" not in methods  # backbone weights; no training step
    assert {"adapter", "prefix", "lora", "prompt", "bitfit"} <= methods


def test_plan_imports_neither_torch_nor_snakemake():
    code = ("import sys, yaml; from deltaspace.plan import Plan; "
            "Plan(yaml.safe_load(open('config/paper/udt-single.yaml')), '.').jobs(); "
            "print(sorted(m for m in ('torch', 'snakemake', 'transformers') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_method_names_match_the_registry():
    from deltaspace.deltas.registry import METHODS
    from deltaspace.method_names import METHOD_NAMES

    assert tuple(METHODS) == METHOD_NAMES


def test_job_counts_per_rule():
    jobs = Plan(load("config/smoke.yaml"), REPO).jobs()
    counts = {}
    for job in jobs:
        counts[job.rule] = counts.get(job.rule, 0) + 1
    assert counts == {"prepare": 4, "train_delta": 16, "fit_subspace": 4, "optimize_subspace": 13, "landscape": 1,
                      "task_transfer": 2, "efficiency": 1, "synthetic_mpc": 1, "results_index": 1, "tables": 14,
                      "report": 1}


def test_a_task_trained_on_and_tested_in_one_subspace_is_refused():
    config = load("config/smoke.yaml")
    group = config["settings"]["single"]["groups"]["sentiment"]
    train = group["train"] if isinstance(group["train"], list) else None
    assert train, "the smoke config's single/sentiment group lists its training tasks"
    group["test"] = list(group["test"]) + [train[0]]
    with pytest.raises(ConfigError) as err:
        Plan(config, REPO)
    assert "settings.single.groups.sentiment.test" in str(err.value)
    assert train[0] in str(err.value) and "leak" in str(err.value)


def test_unknown_method_names_the_key_and_the_valid_names():
    config = load("config/smoke.yaml")
    config["methods"]["lorra"] = {}
    with pytest.raises(ConfigError) as err:
        Plan(config, REPO)
    assert "methods.lorra" in str(err.value) and "did you mean lora" in str(err.value)


def test_fused_optimize_jobs_group_one_subspace_and_method_and_write_the_same_files():
    config = load("config/config.yaml")
    fused = Plan(config, REPO).jobs()
    for setting in config["settings"].values():
        setting["optimize"].pop("fuse")
    plain = Plan(config, REPO).jobs()
    groups = [j for j in fused if j.rule == "optimize_fused"]
    optimize = lambda jobs: sorted(f for j in jobs if j.rule == "optimize_subspace"  # noqa: E731
                                   for f in _flat(j.output.values()))
    members = [m for g in groups for m in g.members]
    assert optimize(fused + members) == optimize(plain) and len(optimize(plain)) == 35 * 2  # result, vectors
    for job in groups:  # one subspace (setting, y, group) and source method per job
        keys = {(m.wildcards.setting, m.wildcards.y, m.wildcards.method) for m in job.members}
        assert len(keys) == 1 and len([f for f in job.input["inputs"] if f.endswith("subspace.json")]) == 1
    assert sorted(len(j.members) for j in groups) == [2] * 6 + [3] * 3 + [4] * 2
    one = next(j for j in plain if j.rule == "optimize_subspace" and j.wildcards.setting == "multi")
    multi = next(j for j in groups if j.wildcards.setting == "multi")
    assert multi.resources["runtime"] == 3 * one.resources["runtime"]
    assert multi.command.startswith(f"deltaspace optimize-fused --manifest {multi.output['manifest']} --no-progress "
                                    "--run ")


def test_fine_tuning_through_fastfood_is_never_fused():
    from deltaspace.fused_plan import OPTIMIZE, fusable

    plan = Plan(load("config/paper/udt-finetune.yaml"), REPO)
    runs = [wc for wc in plan.optimize_wildcards() if wc.method == "finetune"]
    assert runs and not any(fusable(plan, OPTIMIZE, wc) for wc in runs)
    assert all(fusable(plan, OPTIMIZE, wc) for wc in plan.optimize_wildcards() if wc.method != "finetune")


@pytest.mark.parametrize("edit, key, message", [
    (lambda s: s.update(setting="randm"), "init_from_ist.setting", "no setting 'randm'"),
    (lambda s: s.update(y=7), "init_from_ist.y", r"optimizes at d_I \[10\], not 7"),
    (lambda s: s.update(subset="tset"), "init_from_ist.subset", "has no subset 'tset'"),
])
def test_a_two_stage_run_names_an_ist_it_can_start_from(edit, key, message):
    """stage0 `init_from_ist` (IPT §4.3): a setting, d_I and subset that exist, checked when planning."""
    config = yaml.safe_load((REPO / "config/paper/opt-in/ipt-stability.yaml").read_text())
    edit(config["stage0"]["methods"]["pt-from-ist"]["init_from_ist"])
    with pytest.raises(ConfigError, match=message) as err:
        Plan(config, REPO)
    assert key in str(err.value)


def test_a_two_stage_run_reads_the_ist_runs_of_its_task_and_seed():
    config = yaml.safe_load((REPO / "config/paper/opt-in/ipt-stability.yaml").read_text())
    jobs = [j for j in Plan(config, REPO).jobs() if j.rule == "train_delta" and j.wildcards.method == "pt-from-ist"]
    assert len(jobs) == 20 * 12 * 10  # T_test x PT's grid x 10 seeds
    job = next(j for j in jobs if j.wildcards.run == "lr1e-05_bs2_seed3")
    ist = [f for f in job.input.init_from_ist]
    assert len(ist) == 12 and all(f"/optimize/random/y10/test/{job.wildcards.task}/prompt/" in f and "_seed3/" in f
                                  for f in ist)
    assert "--init-from-ist " in job.command and "--ist-subspace results/ipt-stability/subspace/random/all/y10/" \
        in job.command
