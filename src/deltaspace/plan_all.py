"""Several experiment configs as one DAG: ``snakemake --configfile config/paper/all.yaml``.

A config with ``experiments: [FILE, ...]`` names whole experiment configs (``config/paper/*.yaml``).
Each is planned alone by :class:`deltaspace.plan.Plan`; their jobs are merged into one table keyed
by each job's files. A job that two experiments both plan (the IPT splits' shared stage-0 runs, the
unified-dt settings' shared training tasks, a table two configs both compile) appears once; two
experiments that plan the same files with different command lines are a config error naming both,
since running one would leave the other's result wrong. One report covers every experiment.

:class:`PaperPlans` answers the calls the ``.smk`` rules make of a single plan (file patterns, input
functions, command lines, resources) by looking the job up in that table, with the results folder
as a ``{results}`` wildcard, so the rule declarations are the same in both cases.
"""

from __future__ import annotations

import copy
import shlex
from pathlib import Path
from typing import Any

import yaml

from .plan import CONFIG_SCHEMA, RESOURCE_KEYS, RULES, ConfigError, Files, Job, Plan, _flat, schema_errors

DEFAULT_REPORT = "reports/all.html"
# Rule functions of a single plan that the rules call with a job's wildcards, by rule.
INPUT_FUNCTIONS = {"prepare_inputs": "prepare", "train_inputs": "train_delta", "fit_inputs": "fit_subspace",
                   "optimize_inputs": "optimize_subspace", "landscape_inputs": "landscape",
                   "task_transfer_inputs": "task_transfer", "tables_inputs": "tables"}
ARG_FUNCTIONS = {"prepare_args": "prepare", "convert_args": "convert_backbone", "train_args": "train_delta",
                 "fit_args": "fit_subspace", "optimize_args": "optimize_subspace", "landscape_args": "landscape",
                 "task_transfer_args": "task_transfer", "efficiency_args": "efficiency",
                 "synthetic_mpc_args": "synthetic_mpc", "tables_args": "tables"}
FAMILY_RULES: dict[str, str] = {}
for _rule, _spec in RULES.items():  # a family's first rule (train_fused sizes itself from train_delta's)
    FAMILY_RULES.setdefault(_spec.family, _rule)


def is_multi(config: dict) -> bool:
    """Whether a config names experiment configs (``experiments:``) rather than being one."""
    return "experiments" in (config or {})


def make_plan(config: dict, root: str | Path = "."):
    """The plan of a config: one experiment's :class:`Plan`, or :class:`PaperPlans` of several."""
    return PaperPlans(config, root) if is_multi(config) else Plan(config, root)


def first_output(files: dict) -> str:
    return _flat(files.values())[0]


class PaperPlans:
    """The merged plan of several experiment configs (see the module docstring)."""

    fused_groups: list = []  # no fused jobs in a merged DAG (see _plan)

    def __init__(self, config: dict, root: str | Path = "."):
        self.config, self.root = config, Path(root)
        unknown = sorted(set(config) - {"experiments", "report", "title"})
        if unknown:
            raise ConfigError(unknown[0], "a config with `experiments:` takes only experiments, report and title")
        files = config["experiments"]
        if not isinstance(files, list) or not files:
            raise ConfigError("experiments", "a non-empty list of experiment config files (config/paper/*.yaml)")
        self.plans: list[tuple[str, Plan]] = []
        for i, name in enumerate(files):
            self.plans.append((str(name), self._plan(str(name), f"experiments[{i}]")))
        self.report = config.get("report") or DEFAULT_REPORT
        self.R = "{results}"
        self.roots = list(dict.fromkeys(plan.R for _, plan in self.plans))
        self.methods = list(dict.fromkeys(m for _, plan in self.plans for m in plan.methods))
        self.pattern = copy.copy(self.plans[0][1])  # one plan's file patterns, the results folder a wildcard
        self.pattern.R = self.R
        self.index: dict[str, dict[str, Job]] = {rule: {} for rule in RULES}
        self.owner: dict[tuple[str, str], str] = {}
        for name, plan in self.plans:
            for job in plan.jobs(name):
                if job.rule != "report":
                    self._add(job, name)
        self.all_results = [first for rule in ("train_delta", "fit_subspace", "optimize_subspace", "task_transfer",
                                                "efficiency", "synthetic_mpc")
                            for job in self.index[rule].values() for first in [job.output["result"]]]

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
        # One experiment's fused jobs (stage0.fuse, a setting's optimize.fuse) group its own runs, and the
        # runs two experiments share must be one job: the merged DAG trains every run as its own job.
        (sub.get("stage0") or {}).pop("fuse", None)
        for setting in (sub.get("settings") or {}).values():
            (setting.get("optimize") or {}).pop("fuse", None)
        try:
            return Plan(sub, self.root)
        except ConfigError as err:
            raise ConfigError(where, f"{name}: {err}") from None

    def _add(self, job: Job, name: str) -> None:
        key = first_output(job.output)
        held = self.index[job.rule].get(key)
        if held is None:
            self.index[job.rule][key] = job
            self.owner[job.rule, key] = name
        elif held.command != job.command or held.resources != job.resources:
            other = self.owner[job.rule, key]
            raise ConfigError("experiments", f"{other} and {name} both plan {key} ({job.rule}) with different "
                                             f"command lines or resources:\n  {held.command}\n  {job.command}\n"
                                             "give one of them another `results:` folder or make them agree")

    # ----------------------------------------------------------------------- what the rules ask for

    def outputs(self, rule: str, wc=None) -> dict[str, Any]:
        return self.pattern.outputs(rule) if wc is None else dict(self.job(rule, wc).output)

    def log(self, rule: str, wc=None) -> str:
        if rule == "report":  # the one report is no experiment's
            return str(Path(self.report).with_suffix(".log"))
        log = self.pattern.log(rule, wc)
        if "{results}" not in first_output(self.pattern.outputs(rule)):  # e.g. the converted backbones
            log = log.replace("{results}", "results/logs-shared")
        return log

    def benchmark(self, rule: str) -> str:
        return self.pattern.benchmark(rule)

    def shell(self, rule: str) -> str:
        return self.pattern.shell(rule)

    def job(self, rule: str, wc) -> Job:
        key = first_output(self.pattern.outputs(rule)).format(**dict(wc.items()))
        return self.index[rule][key]

    def __getattr__(self, name: str):
        if name in INPUT_FUNCTIONS:
            rule = INPUT_FUNCTIONS[name]
            return lambda wildcards: dict(self.job(rule, wildcards).input)
        if name in ARG_FUNCTIONS:
            rule = ARG_FUNCTIONS[name]
            prefix = f"deltaspace {RULES[rule].command} "

            def args(wildcards, input=None, output=None):  # noqa: A002 (Snakemake's parameter names)
                return self.job(rule, wildcards).command[len(prefix):]
            return args
        raise AttributeError(name)

    def threads_of(self, family: str, by_method: bool = False):
        rule = FAMILY_RULES[family]
        if rule == "report":
            return self.plans[0][1].threads_of(family)
        return lambda wildcards: self.job(rule, wildcards).threads

    def resources_of(self, family: str, by_method: bool = False) -> dict:
        rule = FAMILY_RULES[family]
        if rule == "report":  # the one report: the first experiment's report resources
            return self.plans[0][1].resources_of(family)
        return {key: (lambda wildcards, k=key: self.job(rule, wildcards).resources[k]) for key in RESOURCE_KEYS}

    def all_tables(self) -> list[str]:
        return [f for job in self.index["tables"].values() for f in _flat(job.output.values())]

    def landscape_outputs(self) -> list[str]:
        return [f for job in self.index["landscape"].values() for f in _flat(job.output.values())]

    def report_args(self, config_file: str) -> str:
        tables = list(dict.fromkeys(str(Path(job.output["files"][0]).parent) for job in self.index["tables"].values()))
        title = self.config.get("title") or "deltaspace: every experiment of the four papers"
        return (f"--results {' '.join(shlex.quote(r) for r in self.roots)} "
                f"--tables {' '.join(shlex.quote(t) for t in tables)} --out {shlex.quote(self.report)} "
                f"--config {shlex.quote(config_file)} --title {shlex.quote(title)}")

    def jobs(self, config_file: str = "config/paper/all.yaml") -> list[Job]:
        """Every job once (each experiment's in its order, shared ones where first planned) and the report."""
        threads, resources = self.plans[0][1].rule_resources("report", Files())
        report = Job("report", Files(), Files(tables=self.all_tables(), results=self.all_results),
                     Files(report=self.report), f"deltaspace report {self.report_args(config_file)}", threads,
                     resources)
        return [job for rule in RULES for job in self.index[rule].values()] + [report]
