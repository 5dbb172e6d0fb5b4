"""The rules' view of a DAG, for one experiment config or several (``config/paper/all.yaml``).

:class:`JobTable` holds every job of the DAG by rule and first output, and answers the calls the
``.smk`` rules make (file patterns with the results folder as a ``{results}`` wildcard, input
functions, command lines, threads, resources) by looking the job up, so that the rules are the same
for one config and for several, and the DAG Snakemake builds is exactly the planned job list.

A config with ``experiments: [FILE, ...]`` names whole experiment configs (``config/paper/*.yaml``).
Each is planned alone by :class:`deltaspace.plan.Plan`; their jobs are merged into one table keyed
by each job's files. A job that two experiments both plan (the IPT splits' shared stage-0 runs, the
unified-dt settings' shared training tasks, a table two configs both compile) appears once; two
experiments that plan the same files with different command lines are a config error naming both,
since running one would leave the other's result wrong. The merged runs are then fused (its
``fuse: K``; deltaspace.fused_plan), so a run two experiments share is one run of one fused job.
One report covers every experiment.
"""

from __future__ import annotations

import copy
import inspect
import shlex
from pathlib import Path
from typing import Any

import yaml

from .fused_plan import fuse_jobs
from .plan import CONFIG_SCHEMA, RESOURCE_KEYS, RULES, ConfigError, Files, Job, Plan, _flat, schema_errors

DEFAULT_REPORT = "reports/all.html"
DEFAULT_FUSE = 8  # all.yaml's K when it gives no `fuse:` (the quickstart's; 1 turns fusing off)


def is_multi(config: dict) -> bool:
    """Whether a config names experiment configs (``experiments:``) rather than being one."""
    return "experiments" in (config or {})


def make_plan(config: dict, root: str | Path = ".") -> JobTable:
    """The job table of a config: one experiment's (:class:`ConfigPlan`), or several merged (:class:`PaperPlans`)."""
    return PaperPlans(config, root) if is_multi(config) else ConfigPlan(config, root)


def first_output(files: dict) -> str:
    return _flat(files.values())[0]


def for_snakemake(func):
    """``func`` with its parameters read once: Snakemake reads a rule function's parameters for every
    job it evaluates it for (``inspect.signature``: 1.2 million calls and a fifth of all.yaml's dry
    run), unless the function carries them as ``_overwrite_params`` (snakemake.common.get_function_params)."""
    func._overwrite_params = inspect.signature(func).parameters
    return func


class JobTable:
    """Every job of a DAG by rule and first output, and the rule functions that look jobs up."""

    def __init__(self, plans: list[tuple[str, Plan]], jobs: list[Job], report: str):
        self.plans, self.report = plans, report
        self.R = "{results}"
        self.roots = list(dict.fromkeys(plan.R for _, plan in plans))
        self.methods = list(dict.fromkeys(m for _, plan in plans for m in plan.methods))
        self.pattern = copy.copy(plans[0][1])  # one plan's file patterns, the results folder a wildcard
        self.pattern.R = self.R
        self._first = {rule: first_output(self.pattern.outputs(rule)) for rule in RULES if rule != "report"}
        self.index: dict[str, dict[str, Job]] = {rule: {} for rule in RULES}
        for job in jobs:
            if job.rule != "report":
                self.index[job.rule][first_output(job.output)] = job

    # ----------------------------------------------------------------------- what the rules ask for

    def outputs(self, rule: str, wc=None) -> dict[str, Any]:
        return self.pattern.outputs(rule) if wc is None else dict(self.job(rule, wc).output)

    def log(self, rule: str, wc=None) -> str:
        if rule == "report":  # the one report is no experiment's
            return str(Path(self.report).with_suffix(".log"))
        log = self.pattern.log(rule, wc)
        if "{results}" not in self._first[rule]:  # e.g. the converted backbones
            log = log.replace("{results}", "results/logs-shared")
        return log

    def benchmark(self, rule: str) -> str:
        return self.pattern.benchmark(rule)

    def shell(self, rule: str) -> str:
        return self.pattern.shell(rule)

    def job(self, rule: str, wc) -> Job:
        key = self._first[rule].format(**dict(wc.items()))
        try:
            return self.index[rule][key]
        except KeyError:
            raise KeyError(f"{key} is not a file this config plans (rule {rule}); `snakemake -n` lists the "
                           "jobs it plans") from None

    def inputs(self, rule: str):
        return for_snakemake(lambda wildcards: dict(self.job(rule, wildcards).input))

    def args(self, rule: str):
        prefix = f"deltaspace {RULES[rule].command} "
        return for_snakemake(lambda wildcards: self.job(rule, wildcards).command[len(prefix):])

    def threads(self, rule: str):
        if rule == "report":
            return self.plans[0][1].rule_resources("report", Files())[0]
        return for_snakemake(lambda wildcards: self.job(rule, wildcards).threads)

    def resources(self, rule: str) -> dict:
        if rule == "report":  # the one report: the first experiment's report resources
            return self.plans[0][1].rule_resources("report", Files())[1]
        return {key: for_snakemake(lambda wildcards, k=key: self.job(rule, wildcards).resources[k])
                for key in RESOURCE_KEYS}

    def result_indexes(self) -> list[str]:
        return list(self.index["results_index"])

    def all_tables(self) -> list[str]:
        return [f for job in self.index["tables"].values() for f in _flat(job.output.values())]

    def landscape_outputs(self) -> list[str]:
        return [f for job in self.index["landscape"].values() for f in _flat(job.output.values())]


class ConfigPlan(JobTable):
    """The job table of one experiment config (its fused jobs as its own ``fuse`` knobs make them)."""

    def __init__(self, config: dict, root: str | Path = "."):
        self.plan = Plan(config, root)
        super().__init__([("config", self.plan)], self.plan.jobs(), self.plan.report)

    def report_args(self, config_file: str) -> str:
        return self.plan.report_args(config_file)

    def jobs(self, config_file: str = "config/config.yaml") -> list[Job]:
        return self.plan.jobs(config_file)


class PaperPlans(JobTable):
    """The merged plan of several experiment configs (see the module docstring)."""

    def __init__(self, config: dict, root: str | Path = "."):
        self.config, self.root = config, Path(root)
        unknown = sorted(set(config) - {"experiments", "report", "title", "fuse"})
        if unknown:
            raise ConfigError(unknown[0], "a config with `experiments:` takes only experiments, report, title and fuse")
        files = config["experiments"]
        if not isinstance(files, list) or not files:
            raise ConfigError("experiments", "a non-empty list of experiment config files (config/paper/*.yaml)")
        fuse = config.get("fuse", DEFAULT_FUSE)
        if not isinstance(fuse, int) or isinstance(fuse, bool) or fuse < 1:
            raise ConfigError("fuse", f"runs per fused job: an integer >= 1 (1: every run its own job), not {fuse!r}")
        plans = [(str(name), self._plan(str(name), f"experiments[{i}]")) for i, name in enumerate(files)]
        self.merged: dict[str, dict[str, Job]] = {rule: {} for rule in RULES}
        self.owner: dict[tuple[str, str], str] = {}
        for name, plan in plans:
            for job in plan.jobs(name):
                if job.rule != "report":
                    self._add(job, name)
        jobs = fuse_jobs([job for rule in RULES for job in self.merged[rule].values()], lambda job: fuse)
        super().__init__(plans, jobs, config.get("report") or DEFAULT_REPORT)

    def _plan(self, name: str, where: str) -> Plan:
        path = self.root / name
        if not path.is_file():
            raise ConfigError(where, f"no experiment config {name!r} (config/paper/*.yaml lists them)")
        sub = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if is_multi(sub):
            raise ConfigError(where, f"{name} names experiments itself; list experiment configs only")
        errors = schema_errors(sub, self.root / CONFIG_SCHEMA)
        if errors:
            raise ConfigError(where, f"{name} is not a valid config:\n" + "\n".join(errors))
        # The merged runs are fused by all.yaml's `fuse` (a run two experiments share must be one run of
        # one job, whichever experiment's grouping it would fall in), not by each experiment's own.
        (sub.get("stage0") or {}).pop("fuse", None)
        for setting in (sub.get("settings") or {}).values():
            (setting.get("optimize") or {}).pop("fuse", None)
        try:
            return Plan(sub, self.root)
        except ConfigError as err:
            raise ConfigError(where, f"{name}: {err}") from None

    def _add(self, job: Job, name: str) -> None:
        key = first_output(job.output)
        held = self.merged[job.rule].get(key)
        if held is None:
            self.merged[job.rule][key] = job
            self.owner[job.rule, key] = name
        elif job.rule == "results_index":  # experiments sharing a results folder: it lists all their results
            held.input = Files(results=list(dict.fromkeys(held.input["results"] + job.input["results"])))
        elif held.command != job.command or held.resources != job.resources:
            other = self.owner[job.rule, key]
            raise ConfigError("experiments", f"{other} and {name} both plan {key} ({job.rule}) with different "
                                             f"command lines or resources:\n  {held.command}\n  {job.command}\n"
                                             "give one of them another `results:` folder or make them agree")

    def report_args(self, config_file: str) -> str:
        tables = list(dict.fromkeys(str(Path(job.output["files"][0]).parent) for job in self.index["tables"].values()))
        title = self.config.get("title") or "deltaspace: every experiment of the four papers"
        return (f"--results {' '.join(shlex.quote(r) for r in self.roots)} "
                f"--tables {' '.join(shlex.quote(t) for t in tables)} --out {shlex.quote(self.report)} "
                f"--config {shlex.quote(config_file)} --title {shlex.quote(title)}")

    def jobs(self, config_file: str = "config/paper/all.yaml") -> list[Job]:
        """Every job once (each experiment's in its order, shared ones where first planned) and the report."""
        threads, resources = self.plans[0][1].rule_resources("report", Files())
        report = Job("report", Files(), Files(tables=self.all_tables(), index=self.result_indexes()),
                     Files(report=self.report), f"deltaspace report {self.report_args(config_file)}", threads,
                     resources)
        return [job for rule in RULES for job in self.index[rule].values()] + [report]
