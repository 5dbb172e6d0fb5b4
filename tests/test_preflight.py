"""deltaspace preflight: every job of a config checked before any runs, offline.

A config that would fail on the cluster (a few-shot-only task in a full-data setting, a template
naming a field the hub dataset lacks, a job declaring less memory than it needs) fails preflight
with one line naming the key path and the task or job; a sound config passes and gets its plan.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from deltaspace import preflight as pf
from deltaspace.plan import Plan

REPO = Path(__file__).resolve().parents[1]

EXTRA_TASKS = """
tasks:
  probe-fewshot-only:
    ontology: cls/sentiment analysis
    kind: classification
    metric: classification_f1
    verbalizers: [negative, positive]
    source: {type: crossfit_tsv}
  probe-missing-field:
    ontology: cls/sentiment analysis
    kind: classification
    metric: classification_f1
    verbalizers: [negative, positive]
    source: {type: hub, id: fancyzhx/amazon_polarity, test: test}
    template: {input: 'review: {review}', label: label}
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A repository root whose registry has two extra (broken) tasks; schemas and specs are the real ones."""
    shutil.copytree(REPO / "config/tasks", tmp_path / "config/tasks")
    (tmp_path / "config/tasks/probes.yaml").write_text(EXTRA_TASKS)
    for link in ("workflow/schemas", "src/deltaspace/tables/specs"):
        (tmp_path / link).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / link).symlink_to(REPO / link)
    return tmp_path


def smoke(tmp_path: Path, edit=None) -> Path:
    config = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    if edit:
        edit(config)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_smoke_config_passes_and_prints_its_plan():
    report = pf.preflight(REPO / "config/smoke.yaml", REPO)
    assert report.ok, report.problems
    text = report.render()
    plan_jobs = Plan(yaml.safe_load((REPO / "config/smoke.yaml").read_text()), REPO).jobs()
    assert f"{len(plan_jobs)} jobs: prepare 4, train_delta 16" in text
    assert "optimizer steps in all:" in text and "on A100" in text and "on H100" in text
    assert "largest job:" in text
    assert text.rstrip().endswith("preflight: OK")


def test_fewshot_only_task_in_a_full_data_setting_fails(root, tmp_path):
    def edit(c):
        c["data"]["setting"] = "full"
        c["stage0"]["tasks"] = ["probe-fewshot-only"]

    report = pf.preflight(smoke(tmp_path, edit), root)
    lines = [p for p in report.problems if "probe-fewshot-only" in p]
    assert any(p.startswith("data.setting: task probe-fewshot-only") and "few-shot" in p for p in lines), lines
    assert any(p.startswith("data.data_dir: task probe-fewshot-only") for p in lines), lines
    assert "probes.yaml" in lines[0]  # where the task is defined
    assert not report.ok


def test_template_field_missing_from_the_hub_schema_fails(root, tmp_path):
    report = pf.preflight(smoke(tmp_path, lambda c: c["stage0"].update(tasks=["probe-missing-field"])), root)
    lines = [p for p in report.problems if "probe-missing-field" in p]
    assert lines, report.problems
    assert any("review" in p and "content" in p for p in lines), lines  # the missing field and the real ones
    assert all(p.startswith("tasks: ") for p in lines)


def test_job_declaring_less_memory_than_its_estimate_fails(tmp_path):
    report = pf.preflight(smoke(tmp_path, lambda c: c["resources"]["train"].update(mem_mb=50)), REPO)
    lines = [p for p in report.problems if p.startswith("resources.train.mem_mb: train_delta ")]
    assert len(lines) == 16, report.problems  # every stage-0 job of the smoke config
    assert "declares 50 MB, needs about" in lines[0]


def test_gpu_job_too_large_for_one_gpu_fails(tmp_path):
    def edit(c):
        c["backbone"] = "t5-lm-large"
        c["data"]["max_input_length"] = 512
        c["resources"]["train"].update(gpu=1, mem_mb=64000, runtime=10000)
        for block in ("adapter", "prefix", "lora", "prompt"):
            c["stage0"]["methods"][block] = {"loop": {"batch_size": 64}}

    report = pf.preflight(smoke(tmp_path, edit), REPO)
    assert any(p.startswith("resources.train.gpu: train_delta t5-lm-large/") and "GB of GPU memory" in p
               for p in report.problems), report.problems


def test_schema_violation_is_reported_with_its_key_path(tmp_path):
    report = pf.preflight(smoke(tmp_path, lambda c: c["stage0"].setdefault("loop", {}).update(stpes=5)), REPO)
    assert not report.ok
    assert any("stage0.loop" in p and "stpes" in p for p in report.problems)


def test_runtime_estimate_scales_with_steps_and_batch():
    plan = Plan(yaml.safe_load((REPO / "config/smoke.yaml").read_text()), REPO)
    checker = pf.Checker(plan, REPO)
    jobs = [j for j in plan.jobs() if j.rule == "train_delta" and j.wildcards.method == "lora"]
    est = checker.estimate(jobs[0])
    shape = checker.backbone_shape(jobs[0].wildcards.backbone)
    loop = {**pf.DEFAULT_LOOP, **plan.stage0_block(jobs[0].wildcards.task, "lora")["loop"]}
    s_in, _ = checker.lengths()
    train = loop["steps"] * loop["batch_size"] * 2 * shape["params"] * s_in * 2  # encoder: 2N per token, x2 fwd+bwd
    evals = -(-loop["steps"] // loop["eval_every"]) * pf.DEV_ROWS * 2 * shape["params"] * s_in
    assert est.flops == pytest.approx(train + evals)
    assert est.steps == loop["steps"]


@pytest.mark.parametrize("head, backbone, message", [
    # the qs tasks have no manual template (registry `prompt`)
    ("mlm-template", "minilm", "--head mlm-template reads the task's manual template"),
    ("likelihood", "minilm", "--head likelihood runs on decoder backbones; 'minilm' is encoder"),
    ("classifier", "t5-lm-base", "--head classifier runs on encoder backbones; 't5-lm-base' is seq2seq"),
    ("mlm", "smollm2-135m", "--head mlm runs on encoder and seq2seq backbones"),
])
def test_a_head_that_cannot_run_on_its_backbone_or_task_fails(tmp_path, head, backbone, message):
    def edit(c):
        c["backbone"] = backbone
        c["stage0"]["head"] = head

    report = pf.preflight(smoke(tmp_path, edit), REPO)
    lines = [p for p in report.problems if p.startswith("stage0.head: task qs-tweet-sentiment on ")
             and "(method lora-cls)" not in p]  # the instance with its own head (classifier)
    assert lines and all(message in p for p in lines), report.problems
    # one line per (head, backbone, task), not one per run
    assert len(lines) == len(set(lines)) == 1, lines


def test_the_t5_template_head_passes_on_a_task_with_a_prompt(tmp_path):
    def edit(c):
        c["backbone"] = "tiny-t5"
        c["stage0"]["head"] = "mlm-template"
        c["stage0"]["tasks"] = ["glue-sst2"]

    report = pf.preflight(smoke(tmp_path, edit), REPO)
    assert not [p for p in report.problems if p.startswith("stage0.head: task glue-sst2 ")], report.problems
    # the instances that keep their own quickstart tasks, which have no template, are still named
    assert any(p.startswith("stage0.head: task qs-tweet-sentiment on tiny-t5") for p in report.problems)
