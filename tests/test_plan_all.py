"""Several experiments as one DAG (deltaspace.plan_all, config/paper/all.yaml): each is planned as
when run alone, a job they share runs once, conflicting plans of one file are refused, and the
Snakefile builds exactly the merged plan."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deltaspace.plan import ConfigError, Plan
from deltaspace.plan_all import PaperPlans, first_output, make_plan
from test_plan import snakemake_jobs

REPO = Path(__file__).resolve().parents[1]
SMALL = "tests/configs/all-small.yaml"


def load(configfile: str) -> dict:
    return yaml.safe_load((REPO / configfile).read_text(encoding="utf-8"))


def job_keys(jobs) -> set[tuple]:
    return {(j.rule, frozenset(f for v in j.output.values() for f in (v if isinstance(v, list) else [v])), j.command,
             j.threads, j.resources["mem_mb"], j.resources["runtime"], j.resources["gpu"]) for j in jobs}


def test_merged_plan_is_the_snakemake_dag(monkeypatch):
    monkeypatch.chdir(REPO)
    ours = job_keys(PaperPlans(load(SMALL), REPO).jobs(SMALL))
    theirs = snakemake_jobs(SMALL)
    assert {j for j in theirs if j[0] == "report"} and len([j for j in ours if j[0] == "report"]) == 1
    assert {j for j in ours if j[0] != "report"} == {j for j in theirs if j[0] != "report"}
    report = next(j for j in theirs if j[0] == "report")
    assert "--results results/smoke results/udt --tables results/smoke/tables results/udt/tables" in report[2]


def test_shared_runs_are_planned_once_and_every_table_is_kept():
    names = ["config/paper/udt-single.yaml", "config/paper/udt-multi.yaml", "config/paper/udt-finetune.yaml"]
    merged = PaperPlans({"experiments": names}, REPO)
    alone = [Plan(load(n), REPO).jobs(n) for n in names]
    for rule in ("train_delta", "prepare"):
        outputs = [first_output(j.output) for jobs in alone for j in jobs if j.rule == rule]
        assert len(merged.merged[rule]) == len(set(outputs)) < len(outputs)  # the udt settings share runs
    specs = {s for n in names for s in Plan(load(n), REPO).tables}
    assert {Path(first_output(j.output)).name.split(".")[0] for j in merged.index["tables"].values()} == specs


def test_two_plans_of_one_file_that_differ_are_refused(tmp_path):
    config = load("config/paper/udt-finetune.yaml")
    config["stage0"]["loop"]["steps"] = 7  # same results folder and run paths, another command line
    changed = tmp_path / "udt-finetune-7.yaml"
    changed.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as err:
        PaperPlans({"experiments": ["config/paper/udt-finetune.yaml", str(changed)]}, REPO)
    message = str(err.value)
    assert "config/paper/udt-finetune.yaml and " + str(changed) in message and "--steps 7" in message


@pytest.mark.parametrize("config,where", [({"experiments": []}, "experiments"),
                                          ({"experiments": ["config/paper/nope.yaml"]}, "experiments[0]"),
                                          ({"experiments": ["config/smoke.yaml"], "backbone": "x"}, "backbone")])
def test_bad_experiment_lists_name_the_key(config, where):
    with pytest.raises(ConfigError) as err:
        make_plan(config, REPO)
    assert err.value.path == where


def test_all_yaml_names_every_paper_config():
    listed = load("config/paper/all.yaml")["experiments"]
    shipped = sorted(str(p.relative_to(REPO)) for p in (REPO / "config/paper").glob("*.yaml") if p.name != "all.yaml")
    assert sorted(listed) == shipped and len(set(listed)) == len(listed)
