"""The Snakemake workflow: every config builds its DAG quickly, with the job counts of its design,
and a bad config fails before any job runs, naming what is wrong.

Dry runs only (`snakemake -n`): nothing is trained. The expected counts are the arithmetic written
at the top of each config file (tasks x methods x grid x seeds), spelled out again here so that a
change to a config, the registry splits or the rules that alters the size of an experiment fails
loudly instead of silently running a different design.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# CPU seconds of one `snakemake -n` (see dry_run): 30 s, or 3 ms a job for the largest DAGs. Snakemake's
# own bookkeeping costs ~1.7 ms a job on an idle 2-core machine here (ipt-random's 16,311 jobs: 27 s),
# ~2.3 ms on CI's runner; a planning function that grew with the DAG squared would break either bound.
DRY_RUN_LIMIT_S, DRY_RUN_LIMIT_PER_JOB_S = 30.0, 0.003


def dry_run_limit(jobs: int) -> float:
    return max(DRY_RUN_LIMIT_S, DRY_RUN_LIMIT_PER_JOB_S * jobs)

pytest.importorskip("snakemake")

# rule -> job count, per config. `all` is the one aggregate job of every config.
EXPECTED = {
    "config/config.yaml": {
        "prepare": 9,                        # the 9 quickstart tasks, data seed 100
        # stage 0 (fuse: 8), 9 tasks x adapter/prefix/lora + 4 IPT tasks x prompt + 3 tasks x bitfit/finetune
        # + 2 tasks x (4 composites + zero-shot): the runs of one method fused, 8 at most a job
        "train_delta": 3 + 2,                # finetune and zero-shot run alone
        "train_fused": 3 * 2 + 1 + 1 + 4,    # adapter/prefix/lora 9 runs each as 5 + 4; prompt 4; bitfit 3; composites 2
        "fit_subspace": 2 + 1 + 2 + 1 * 2,   # single 2 groups, multi 1, simplified-single 2, random 1 group x 2 d_I
        # optimize (fuse: 8), single 4 tasks x 3 methods, multi 3 x 3, simplified 2 x 3, random 2 d_I x 4 tasks
        "optimize_subspace": 2 * 3,          # simplified-single: one task per subspace, no partner
        "optimize_fused": 2 * 3 + 3 + 2,     # single: 2 subspaces x 3 methods; multi: 3 methods; random: 2 d_I
        "landscape": 1,
        "task_transfer": 2 * 3 * 2,          # adapter, lora x 3 sources x 2 targets
        "efficiency": 5,                     # 5 methods on MiniLM
        "synthetic_mpc": 1,
        "results_index": 1,
        "tables": 16,
        "report": 1,
        "all": 1,
    },
    "config/smoke.yaml": {
        "prepare": 3 + 1,                    # 3 tasks at seed 100, 1 at seed 21 (IPT T_train^diff)
        "train_delta": 3 * 4 + 4,            # 3 tasks x 4 methods x 1 lr x 1 seed + bitfit, a composite,
                                             # a sequential stage and the classifier head on one task
        "fit_subspace": 1 + 1 + 1 + 1,       # single, multi, simplified-single, random (1 d_I)
        "optimize_subspace": 3 + 3 + 3 + (2 + 1 + 1),
        "landscape": 1,
        "task_transfer": 2,
        "efficiency": 1,
        "synthetic_mpc": 1,
        "results_index": 1,
        "tables": 14,
        "report": 1,
        "all": 1,
    },
    "config/paper/udt-single.yaml": {
        "prepare": 6 + 11,                   # 6 training tasks + 11 test tasks
        "train_delta": 17 * 3 * 1 * 1 + 11,  # tasks x methods x lrs x seeds + test tasks x finetune (Table 10)
        "fit_subspace": 6 * 2,               # 6 categories x stage-1 lr grid {1e-5, 5e-5}
        "optimize_subspace": 11 * 3 * 2,     # test tasks x source methods x stage-2 lr grid {1e-2, 5e-2}
        "landscape": 1,                      # SciTail (Figure 2a)
        "results_index": 1,
        "tables": 3,
        "report": 1,
        "all": 1,
    },
    "config/paper/udt-multi.yaml": {
        "prepare": 60 + 9,
        "train_delta": 69 * 3 + 9,           # + the 9 test tasks x finetune (Table 11)
        "fit_subspace": 1,
        "optimize_subspace": 9 * 3 * 2,
        "landscape": 2,                      # Yelp Polarity, AI2 ARC (Figure 2b, c)
        "results_index": 1,
        "tables": 3,
        "report": 1,
        "all": 1,
    },
    "config/paper/udt-simplified.yaml": {
        "prepare": 60 + 9 + 4,               # multi train (includes the single train tasks) + multi test + 4 more single test
        "train_delta": 16 * 3,               # the 16 distinct test tasks (E_ori) x methods; no stage-0 input to the fits
        "fit_subspace": 6 + 1,
        "optimize_subspace": (11 + 9) * 3 * 4,  # test cells x methods x stage-2 grid {5e-2, 1e-2, 5e-3, 1e-3}
        "results_index": 1,
        "tables": 4,
        "report": 1,
        "all": 1,
    },
    "config/paper/udt-finetune.yaml": {
        "prepare": 2,                        # glue-sst2, rotten_tomatoes
        "train_delta": 1 * 4,                # rotten_tomatoes x adapter/prefix/lora/finetune
        "fit_subspace": 1,
        "optimize_subspace": 1 * 4 * 7,      # 1 task x 4 source methods x 7 lrs
        "results_index": 1,
        "tables": 1,
        "report": 1,
        "all": 1,
    },
    "config/paper/ipt-random.yaml": {
        "prepare": 120 + 100,                # all tasks at seed 100 + training tasks at seed 21
        "train_delta": 120 * 2 * 4 * 3,      # tasks x (PT, FT) x 4 lrs x 3 batch sizes
        "fit_subspace": 5,                   # d_I in {5, 10, 50, 100, 250}
        "optimize_subspace": 5 * (100 + 100 + 20) * 12,  # d_I x (train-same + train-diff + test) x PT grid
        "results_index": 1,
        "tables": 5,                         # + ipt-figure4 (its IPT(Prompt) row)
        "report": 1,
        "all": 1,
    },
    "config/paper/ipt-noncls.yaml": {
        "prepare": 119 + 35,
        "train_delta": 119 * 2 * 4 * 3,
        "fit_subspace": 5,
        "optimize_subspace": 5 * (35 + 35 + 41 + 43) * 12,  # x the PT grid (4 lrs x 3 batch sizes)
        "results_index": 1,
        "tables": 4,                         # + ipt-figure8a
        "report": 1,
        "all": 1,
    },
    "config/paper/ipt-cls.yaml": {
        "prepare": 119 + 35,
        "train_delta": 119 * 2 * 4 * 3,
        "fit_subspace": 5,
        "optimize_subspace": 5 * (35 + 35 + 8 + 76) * 12,  # x the PT grid (4 lrs x 3 batch sizes)
        "results_index": 1,
        "tables": 4,                         # + ipt-figure8b
        "report": 1,
        "all": 1,
    },
    "config/paper/ipt-figure4.yaml": {
        "prepare": 100 + 20,                 # the group's training tasks (read by the fit) + the test tasks
        "train_delta": 120 * 2 * 4 * 3,      # tasks x (PT, FT) x 4 lrs x 3 batch sizes (ipt-random's runs)
        "fit_subspace": 2 + 7 * 3,           # MSF at d_I 1000, 2000 + d_I in {5, ..., 2000} x (IPT(Adapter)'s fit,
                                             # the random decoder, the random Fastfood subspace)
        "optimize_subspace": 20 * (2 * 12 + 7 * (12 + 12 + 1)),  # test tasks x (IPT(Prompt) at 2 d_I x the PT
                                             # grid + 7 d_I x (the grid for IPT(Adapter) and Random_prompt,
                                             # Random_all-param's one point))
        "results_index": 1,
        "tables": 1,
        "report": 1,
        "all": 1,
    },
    "config/paper/opt-in/ipt-stability.yaml": {
        "prepare": 120,
        "train_delta": 120 * 2 * 4 * 3 * 10  # tasks x (PT, FT) x 4 lrs x 3 batch sizes x 10 seeds
                       + 20 * 4 * 3 * 10,    # + PT from IST on T_test, the same grid and seeds
        "fit_subspace": 1,                   # d_I = 10
        "optimize_subspace": (100 + 20) * 12 * 10,  # (train-same + test) x the PT grid x 10 seeds
        "results_index": 1,
        "tables": 3,                         # ipt-table2, ipt-pt-from-ist, ipt-pt-from-ist-rel
        "report": 1,
        "all": 1,
    },
    "config/paper/survey-table3.yaml": {
        "prepare": 104 * 2,                  # tasks x (t5-lm-base, t5-lm-large)
        "train_delta": 104 * (4 * 3 * 2 + 1 * 2),  # 4 methods x 3 lrs x 2 batch sizes + PT on 2 backbones
        "results_index": 1,
        "tables": 3,                         # survey-table3, its ratio row, survey-convergence
        "report": 1,
        "all": 1,
    },
    "config/paper/survey-combination-full.yaml": {
        "prepare": 8,                        # 8 GLUE tasks
        "train_delta": 8 * 8 * 2 * 4 * 3 + 15 * 2 * 3 + 8 * 2,  # tasks x (7 patterns + FT) x 2 templates x 4 lrs
                                             # x 3 seeds + SST-2 x 15 sequential stages x 2 templates x 3 seeds
                                             # + tasks x zero-shot x 2 templates
        "results_index": 1,
        "tables": 7,                         # Tables 5(a, b), 7(a, b), the tunable-parameters rows of 5 and 7, Figure 10
        "report": 1,
        "all": 1,
    },
    "config/paper/survey-combination-fewshot.yaml": {
        "prepare": 8 * 5,  # tasks x data seeds: each seed trains on its own 16-shot split
        "train_delta": 8 * 7 * 2 * 4 * 5 + 8 * 2,  # tasks x 7 patterns x 2 templates x 4 lrs (Table 8) x 5 seeds
                                             # + tasks x zero-shot x 2 templates
        "results_index": 1,
        "tables": 2,
        "report": 1,
        "all": 1,
    },
    "config/paper/survey-combination-t5.yaml": {
        "prepare": 8,
        "train_delta": 8 * 7 * 2 * 4 * 3,    # tasks x 7 patterns x 2 templates (none, manual) x 4 lrs x 3 seeds
        "results_index": 1,
        "tables": 3,                         # survey-table6a, survey-table6b and the tunable-parameters row
        "report": 1,
        "all": 1,
    },
    "config/paper/survey-scale.yaml": {
        "prepare": 3 * 3,                    # tasks x T5 sizes
        "train_delta": 3 * 6 * 3,            # tasks x methods x T5 sizes, 1 lr, 1 seed
        "results_index": 1,
        "tables": 2,
        "report": 1,
        "all": 1,
    },
    "config/paper/survey-transfer.yaml": {
        "prepare": 12,
        "train_delta": 12 * (3 * 3 * 2 + 1),  # tasks x (PF, LR, AP over 3 lrs x 2 batch sizes + PT)
        "task_transfer": 4 * 12 * 11,        # methods x sources x targets
        "results_index": 1,
        "tables": 1,
        "report": 1,
        "all": 1,
    },
    "config/paper/survey-efficiency.yaml": {
        "efficiency": 3 * 6,                 # T5 sizes x methods
        "results_index": 1,
        "tables": 2,
        "report": 1,
        "all": 1,
    },
    "config/paper/survey-time.yaml": {
        "efficiency": 2 * 4,                 # T5 sizes x methods (each times 4 input lengths)
        "results_index": 1,
        "tables": 1,
        "report": 1,
        "all": 1,
    },
    "config/paper/decomposition-glue.yaml": {
        "prepare": 8 * 3,                    # GLUE tasks x backbones
        "train_delta": 8 * (5 + 12 * 4 + 3) * 3 * 5,  # tasks x (PEFT rank-free + rows x ranks + FT x 3 lrs)
                                                       # x backbones x 5 seeds
        "results_index": 1,
        "tables": 6,                         # Tables II-IV and their ‰Params columns
        "report": 1,
        "all": 1,
    },
}


def snakemake(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def job_counts(output: str) -> dict[str, int]:
    """The first "Job stats" table of a Snakemake run."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Job stats:")
    counts = {}
    for line in lines[start + 3:]:
        m = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if not m:
            break
        counts[m[1]] = int(m[2])
    return counts


def dry_run(configfile: str) -> tuple[dict[str, int], float, float]:
    """Job counts of `snakemake -n --forceall` (the whole DAG, whatever already exists), and its CPU
    and wall seconds.

    The time limit applies to CPU seconds (user + system of the snakemake process): on an idle
    machine that is the wall time (the dry run is single-threaded), and unlike the wall time it does
    not grow when other jobs share the cores (a loaded CI runner or a shared workstation).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = snakemake("-n", "--forceall", "--quiet", "rules", "--configfile", configfile)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert proc.returncode == 0, f"snakemake -n --configfile {configfile} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return job_counts(proc.stdout + proc.stderr), cpu, wall


def paper_configs() -> list[str]:
    """The experiment configs (all.yaml names them all: tests/test_plan_all.py)."""
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "config" / "paper").glob("*.yaml") if p.name != "all.yaml")


def test_every_paper_config_has_expected_counts():
    assert paper_configs() == sorted(k for k in EXPECTED if k.startswith("config/paper/") and "/opt-in/" not in k)


@pytest.mark.parametrize("configfile", ["config/config.yaml", "config/smoke.yaml"])
def test_quickstart_and_smoke_dags(configfile):
    counts, cpu, wall = dry_run(configfile)
    expected = dict(EXPECTED[configfile])
    expected["total"] = sum(expected.values())
    assert counts == expected
    assert cpu < dry_run_limit(expected["total"]), f"snakemake -n took {cpu:.1f} CPU seconds ({wall:.1f} s wall)"


@pytest.mark.slow
@pytest.mark.parametrize("configfile", sorted(k for k in EXPECTED if k.startswith("config/paper/")))
def test_paper_config_dag(configfile):
    """The full DAG builds in seconds, with exactly the paper's design (tasks x methods x grid x seeds)."""
    counts, cpu, wall = dry_run(configfile)
    expected = dict(EXPECTED[configfile])
    expected["total"] = sum(expected.values())
    assert counts == expected
    assert cpu < dry_run_limit(expected["total"]), f"snakemake -n took {cpu:.1f} CPU seconds ({wall:.1f} s wall)"


def test_paper_config_comments_state_the_counts():
    """Each paper config's header states the per-rule counts the DAG has."""
    for configfile, expected in EXPECTED.items():
        if not configfile.startswith("config/paper/"):
            continue
        header = (REPO / configfile).read_text().split("\nexperiment:")[0]
        for rule, n in expected.items():
            if rule in ("report", "all"):
                continue
            assert re.search(rf"#\s+{rule}\s+{n}\b", header), f"{configfile}: header lacks '{rule} {n}'"
        assert re.search(rf"total {sum(expected.values())}\b", header), f"{configfile}: header lacks the total"


# --------------------------------------------------------------------------- bad configs


def bad_config(tmp_path: Path, edit) -> tuple[subprocess.CompletedProcess, Path]:
    """Run the workflow for real (not a dry run) on an edited smoke config: it must fail at parse time."""
    config = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    results = tmp_path / "results"
    config["results"] = str(results)
    config["report"] = str(tmp_path / "report.html")
    edit(config)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = snakemake("--cores", "1", "--until", "prepare", "--configfile", str(path), timeout=120)
    return proc, results


def assert_fails_before_any_job(proc: subprocess.CompletedProcess, results: Path) -> str:
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-2000:]
    assert not results.exists(), "a job ran (results folder created) before the config error"
    assert "Building DAG of jobs" not in output
    return output


def test_unknown_key_fails_with_its_path(tmp_path):
    proc, results = bad_config(tmp_path, lambda c: c["stage0"]["loop"].update(stpes=5))
    output = assert_fails_before_any_job(proc, results)
    assert "stpes" in output
    assert "stage0" in output and "loop" in output  # the path of the bad key


def test_unknown_top_level_key_fails(tmp_path):
    proc, results = bad_config(tmp_path, lambda c: c.update(landscapes=[]))
    output = assert_fails_before_any_job(proc, results)
    assert "landscapes" in output


def test_unknown_task_fails_with_close_matches(tmp_path):
    def edit(c):
        c["settings"]["single"]["groups"]["sentiment"]["test"] = ["qs-tweet-polarty"]

    proc, results = bad_config(tmp_path, edit)
    output = assert_fails_before_any_job(proc, results)
    assert "qs-tweet-polarty" in output
    assert "qs-tweet-polarity" in output  # the suggestion
    assert "settings.single.groups.sentiment.test" in output


def test_unknown_registry_split_fails(tmp_path):
    proc, results = bad_config(tmp_path, lambda c: c["settings"]["multi"]["groups"]["all"].update(
        train="quickstart/multi/trian"))
    output = assert_fails_before_any_job(proc, results)
    assert "trian" in output and "train" in output


def test_unknown_method_fails_with_valid_names(tmp_path):
    proc, results = bad_config(tmp_path, lambda c: c["settings"]["single"].update(methods=["adapter", "lorra"]))
    output = assert_fails_before_any_job(proc, results)
    assert "lorra" in output and "settings.single.methods[1]" in output
    for method in yaml.safe_load((REPO / "config/smoke.yaml").read_text())["methods"]:
        assert method in output  # the configured instances
    assert "did you mean lora" in output


def test_unknown_composite_component_fails_with_valid_names(tmp_path):
    proc, results = bad_config(tmp_path, lambda c: c["methods"].update({"prompt+bitfitt": {}}))
    output = assert_fails_before_any_job(proc, results)
    assert "bitfitt" in output and "methods.prompt+bitfitt" in output
    assert "did you mean bitfit" in output and "sam-parser" in output  # the registry's names


def test_sequential_init_from_loop_fails(tmp_path):
    def edit(c):
        c["methods"].update({"seq-a": {"method": "adapter"}, "seq-b": {"method": "bitfit"}})
        c["stage0"]["methods"].update({"seq-a": {"init_from": "seq-b"}, "seq-b": {"init_from": "seq-a"}})

    proc, results = bad_config(tmp_path, edit)
    output = assert_fails_before_any_job(proc, results)
    assert "init_from" in output and "loops" in output


def test_subspace_stages_refuse_stage0_only_loop_keys(tmp_path):
    proc, results = bad_config(tmp_path, lambda c: c["settings"]["single"]["fit"]["loop"].update(epochs=3))
    output = assert_fails_before_any_job(proc, results)
    assert "settings.single.fit.loop.epochs" in output


def test_unknown_method_options_key_fails(tmp_path):
    proc, results = bad_config(tmp_path, lambda c: c["methods"].update(adaptor={"r": 8}))
    output = assert_fails_before_any_job(proc, results)
    assert "adaptor" in output
    assert "bitfit" in output and "finetune" in output


def test_setting_method_without_stage0_fails(tmp_path):
    """A joint fit decomposes stage-0 solutions: its methods must be trained in stage 0."""
    proc, results = bad_config(tmp_path, lambda c: c["stage0"]["methods"].pop("lora"))
    output = assert_fails_before_any_job(proc, results)
    assert "lora" in output and "stage0.methods" in output


def test_unknown_table_spec_fails(tmp_path):
    proc, results = bad_config(tmp_path, lambda c: c["tables"].append("quickstart-stage1"))
    output = assert_fails_before_any_job(proc, results)
    assert "quickstart-stage1" in output and "quickstart-stage0" in output


def test_configfile_replaces_the_quickstart(tmp_path):
    """--configfile names a whole experiment: no quickstart key leaks into it."""
    config = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    del config["landscape"]
    config["results"] = str(tmp_path / "results")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    counts, _, _ = dry_run(str(path))
    assert "landscape" not in counts


def schema_keys(node, found=None):
    """Every property name anywhere in the config schema (its $defs included)."""
    found = set() if found is None else found
    if isinstance(node, dict):
        for key, value in (node.get("properties") or {}).items():
            found.add(key)
        for value in node.values():
            schema_keys(value, found)
    elif isinstance(node, list):
        for value in node:
            schema_keys(value, found)
    return found


def test_docs_describe_every_config_key():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    reference = (REPO / "docs/workflow.md").read_text().split("## Config reference", 1)[1].split("\n## ", 1)[0]
    missing = sorted(k for k in schema_keys(schema) if f"`{k}`" not in reference)
    assert not missing, f"docs/workflow.md (Config reference) does not describe: {missing}"


# --------------------------------------------------------------------------- command lines of paper jobs


def job_commands(configfile: str, *targets: str) -> list[str]:
    """The `deltaspace` command lines of the targets' jobs, from a forced dry run with -p."""
    proc = snakemake("-n", "--forceall", "-p", "--configfile", configfile, "--", *targets)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [line.split("Shell command: ", 1)[1] for line in (proc.stdout + proc.stderr).splitlines()
            if line.startswith("Shell command: deltaspace")]


@pytest.mark.slow
def test_decomposition_instance_runs_its_delta_and_records_the_table_row():
    """hadapter-r4 on RTE: the registry's adapter at bottleneck 16, the Table VI lr/epochs of RTE, the
    classifier head, and the row name and rank the table specs match on."""
    run = "results/decomposition/stage0/roberta-large/glue-rte/hadapter-r4/lr0.0012_seed3"
    [train] = [c for c in job_commands("config/paper/decomposition-glue.yaml", f"{run}/result.parquet")
               if c.startswith("deltaspace train")]
    for piece in ("--method adapter", "--set r=16", "--set placement=sublayers", "--lr 0.0012", "--seed 3",
                  "--epochs 50", "--warmup-steps 200", "--head classifier", "--record method=hadapter",
                  "--record rank=4", "--backbone roberta-large"):
        assert piece in train, (piece, train)
    assert "--steps" not in train  # epochs replace the shared step budget
    assert train.count("--record method=") == 1


@pytest.mark.slow
def test_sequential_stage_starts_from_the_previous_stage_at_the_same_seed():
    run = "results/survey-combination-full/stage0/roberta-large/glue-sst2/seq-p-b-a/lr1e-05_seed42"
    commands = job_commands("config/paper/survey-combination-full.yaml", f"{run}/result.parquet")
    [last] = [c for c in commands if f"--out {run}" in c]
    assert "--method prompt+bitfit+adapter" in last and "--set adapter.r=64" in last
    init = last.split("--init-from ", 1)[1].split(" > ")[0].split(" --")[0].split()
    assert init == ["results/survey-combination-full/stage0/roberta-large/glue-sst2/seq-p-b/lr0.0001_seed42"]
    assert "--batch-size 64" in last and "--record sequence=p-b-a" in last
    # the whole chain is planned: P, then P+B, then P+B+A, each at seed 42
    assert any("seq-p/lr0.01_seed42" in c and "--method prompt " in c for c in commands)


@pytest.mark.slow
def test_combination_runs_use_the_mlm_head_and_manual_twins_the_template_head():
    """Every RoBERTa combination run classifies with the MLM head (STS-B too, through two label
    words); a manual-* twin runs its pattern with the template head and records the pattern's name
    and template=manual (its instance `record` wins over stage0.record's template=none)."""
    runs = "results/survey-combination-full/stage0/roberta-large/{}/{}/lr0.001_seed13"
    pairs = [("glue-stsb", "prompt"), ("glue-rte", "prompt"), ("glue-stsb", "manual-prompt+bitfit")]
    commands = job_commands("config/paper/survey-combination-full.yaml",
                            *(f"{runs.format(*pair)}/result.parquet" for pair in pairs))
    stsb, rte, manual = ([c for c in commands if f"--out {runs.format(*pair)} " in c and c.startswith("deltaspace train")]
                         for pair in pairs)
    for [plain] in (stsb, rte):
        assert "--head mlm " in plain and "--record template=none" in plain and "--record method=" not in plain
    [manual] = manual
    assert "--method prompt+bitfit " in manual and "--head mlm-template" in manual
    assert manual.count("--record method=") == 1 and "--record method=prompt+bitfit " in manual
    assert manual.count("--record template=") == 1 and "--record template=manual" in manual
    assert "--train-eval 10000" in manual and "--record regime=full" in manual


@pytest.mark.slow
def test_resample_per_seed_gives_each_training_seed_its_own_split():
    """survey-combination-fewshot (data.resample_per_seed): seed s trains on the split prepared with
    data seed s; the full-data config keeps one data seed for every run."""
    runs = "results/survey-combination-fewshot/stage0/roberta-large/glue-rte/adapter/lr0.001_seed{}"
    commands = job_commands("config/paper/survey-combination-fewshot.yaml",
                            *(f"{runs.format(s)}/result.parquet" for s in (21, 87)))
    data = "results/survey-combination-fewshot/data/roberta-large/glue-rte/seed{}"
    for seed in (21, 87):
        [train] = [c for c in commands if f"--out {runs.format(seed)} " in c]
        assert f"--data {data.format(seed)} " in train and f"--seed {seed} " in train
        [prepare] = [c for c in commands if c.startswith("deltaspace prepare") and f"{data.format(seed)} " in c + " "]
        assert f"--seed {seed} " in prepare and "--k 16" in prepare
    full = "results/survey-combination-full/stage0/roberta-large/glue-rte/adapter/lr0.001_seed13"
    [train] = [c for c in job_commands("config/paper/survey-combination-full.yaml", f"{full}/result.parquet")
               if c.startswith("deltaspace train")]
    assert "--data results/survey-combination-full/data/roberta-large/glue-rte/seed42 " in train


@pytest.mark.parametrize("configfile", ["config/paper/survey-combination-full.yaml",
                                        "config/paper/survey-combination-fewshot.yaml",
                                        "config/paper/survey-combination-t5.yaml"])
def test_combination_manual_instances_are_twins_of_the_template_free_runs(configfile):
    """Each manual-X instance runs X's delta with X's options and stage-0 block, only with the
    template head, and records X's method name and template=manual (what Tables 5b/5d/7b match)."""
    config = yaml.safe_load((REPO / configfile).read_text())
    methods, stage0 = config["methods"], config["stage0"]
    assert stage0["head"] == "mlm" and "by_task" not in stage0
    assert stage0["record"]["template"] == "none"
    manual = [m for m in methods if m.startswith("manual-")]
    # every simultaneous pattern, FT, zero-shot and sequential stage (Figure 10 with templates) has a twin
    assert {m.removeprefix("manual-") for m in manual} == {m for m in stage0["methods"] if not m.startswith("manual-")}
    for name in manual:
        twin = name.removeprefix("manual-")
        spec, twin_spec = dict(methods[name]), dict(methods[twin] or {})
        record = spec.pop("record")
        sequential = twin.startswith("seq-")  # Figure 10's stages: the record names the stage, not a method
        assert spec.pop("method") == twin_spec.pop("method", twin)
        assert record == {**twin_spec.pop("record", {}), **({} if sequential else {"method": twin}),
                          "template": "manual"}
        assert spec == twin_spec, name
        block, twin_block = dict(stage0["methods"][name]), dict(stage0["methods"][twin] or {})
        assert block.pop("head") == "mlm-template"
        if "init_from" in twin_block:  # a later stage starts from the template run of the stage before
            assert block.pop("init_from") == "manual-" + twin_block.pop("init_from"), name
        assert block == twin_block, name
        assert "head" not in (stage0["methods"][twin] or {})


def test_decomposition_config_matches_the_paper_rows():
    """Every method instance of decomposition-glue.yaml is a row x rank of the ‰Params table code
    (src/deltaspace/decomposition/paper.py), with the same delta and options."""
    from deltaspace.decomposition.paper import RANKS, ROWS

    methods = yaml.safe_load((REPO / "config/paper/decomposition-glue.yaml").read_text())["methods"]
    seen = {"finetune"}
    for row in ROWS:
        if row.label == "LoRA + MPCn":
            continue  # = PA: one run, two table rows
        for group in (range(len(RANKS)) if row.sizes is not None else [None]):
            matches = [(name, spec) for name, spec in methods.items() if (spec or {}).get("method", name) == row.method
                       and {k: v for k, v in (spec or {}).items() if k not in ("method", "record")} ==
                       row.options_at(group)]
            assert len(matches) == 1, (row.label, group, matches)
            name, spec = matches[0]
            if group is not None:
                assert spec["record"]["rank"] == RANKS[group]
            seen.add(name)
    assert seen == set(methods)
