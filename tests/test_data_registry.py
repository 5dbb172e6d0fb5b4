"""The task registry: the papers' task lists and splits, validation errors, and `tasks list`."""

import json
import string
import textwrap

import pytest

from deltaspace.cli import main
from deltaspace.data.metrics import canonical_metric
from deltaspace.data.registry import (CLASSIFICATION, ONTOLOGY_CATEGORIES, RegistryError, UnknownTaskError,
                                      load_registry)

# unified-dt, single-task setting (Tables 1, 2, 6, 8, 10) and its per-category metric rule
UDT_SINGLE = {
    "glue-sst2": "classification_f1", "rotten_tomatoes": "classification_f1", "amazon_polarity": "classification_f1",
    "glue-mnli": "classification_f1", "scitail": "classification_f1", "glue-rte": "classification_f1",
    "superglue-wic": "accuracy", "superglue-wsc": "accuracy", "glue-qqp": "accuracy", "glue-mrpc": "accuracy",
    "eli5-eli5": "rouge_l", "eli5-askh": "rouge_l", "eli5-asks": "rouge_l",
    "dream": "accuracy", "codah": "accuracy", "quartz-no_knowledge": "accuracy", "superglue-copa": "accuracy",
}
# Table 13 (proceedings version, with BLiMP-ANA) and the metrics of Tables 3/4/11
UDT_MULTI_TEST = {
    "rotten_tomatoes": "classification_f1", "yelp_polarity": "classification_f1", "superglue-wsc": "accuracy",
    "ai2_arc": "accuracy", "qasc": "accuracy", "quartz-no_knowledge": "accuracy",
    "blimp-anaphor_number_agreement": "accuracy", "eli5-asks": "rouge_l", "ethos-gender": "classification_f1",
}
IPT_RANDOM_TEST = {"wiki_qa", "glue-qnli", "tweet_eval-stance_climate", "tweet_eval-stance_atheism", "rotten_tomatoes",
                   "ethos-disability", "wiki_split", "quoref", "ethos-sexual_orientation", "race-high", "ai2_arc",
                   "crawl_domain", "blimp-ellipsis_n_bar_1", "ropes", "quartz-no_knowledge", "openbookqa", "xsum",
                   "kilt_trex", "eli5-eli5", "lama-google_re"}


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_every_task_is_complete(registry):
    assert len(registry.tasks) > 150
    for name, task in registry.tasks.items():
        assert task.ontology in ONTOLOGY_CATEGORIES, name
        assert canonical_metric(task.metric) == task.metric, name
        assert task.source.type and task.source_of_type(None) is not None, name
        if task.kind == CLASSIFICATION:
            assert task.verbalizers or task.verbalizers_from_hub, name
        if task.source.type == "hub":
            assert task.source.get("id"), name
        if task.template is not None:  # every format string parses; choices come with an answer field
            for fmt in (task.template.input, task.template.target or ""):
                list(string.Formatter().parse(fmt))
            assert bool(task.template.choices) == bool(task.template.answer), name
        assert task.papers, f"{name} belongs to no paper"


def test_udt_lists_every_table_task_with_the_papers_metric(registry, capsys):
    rows = {r["task"]: r for r in registry.listing("udt")}
    for task, metric in UDT_SINGLE.items():
        assert rows[task]["metric"] == metric, task
    for task, metric in UDT_MULTI_TEST.items():
        assert rows[task]["metric"] == metric, task
        assert "13" in rows[task]["tables"].split(","), task
    multi = registry.split("udt", "multi")
    assert len(multi.tasks("train")) == 60 and "ade_corpus_v2-dosage" in multi.tasks("train")  # notes 6.11
    assert set(multi.tasks("test")) == set(UDT_MULTI_TEST)
    assert not set(multi.tasks("train")) & set(multi.tasks("test"))
    assert set(rows) == set(UDT_SINGLE) | set(multi.tasks())
    assert "12" in rows["financial_phrasebank"]["tables"].split(",")
    assert rows["glue-sst2"]["tables"].split(",")[:3] == ["1", "2", "5"]
    # the CLI shows the same: every task, with its metric
    code, out, _ = run_cli(capsys, "tasks", "list", "--paper", "udt")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()[1:-1]}
    assert set(lines) == set(rows)
    assert "rouge_l" in lines["eli5-askh"] and "classification_f1" in lines["glue-rte"]


def test_udt_single_task_groups_test_within_their_category(registry):
    single = registry.split("udt", "single")
    groups = {}
    for m in single.members:
        groups.setdefault(m.group, {}).setdefault(m.role, []).append(m.task)
    assert groups["SA"] == {"train": ["glue-sst2"], "test": ["rotten_tomatoes", "amazon_polarity"]}
    assert groups["MC-QA"]["test"] == ["codah", "quartz-no_knowledge", "superglue-copa"]
    assert sum(len(g["test"]) for g in groups.values()) == 11


def test_ipt_random_split_lists_100_train_and_20_test(registry, capsys):
    rows = registry.listing("ipt", "random")
    roles = {}
    for row in rows:
        roles.setdefault(row["role"], set()).add(row["task"])
    assert {r: len(t) for r, t in roles.items()} == {"train": 100, "test": 20}
    assert roles["test"] == IPT_RANDOM_TEST
    code, out, _ = run_cli(capsys, "tasks", "list", "--paper", "ipt", "--split", "random")
    assert code == 0
    table = [line.split() for line in out.splitlines()[1:121]]
    assert sum(row[1] == "train" for row in table) == 100 and sum(row[1] == "test" for row in table) == 20
    assert "120 tasks (train: 100, test: 20)" in out


def test_ipt_cls_and_noncls_splits_follow_a1(registry):
    everything = set(registry.split("ipt", "random").tasks())
    noncls, cls = registry.split("ipt", "noncls"), registry.split("ipt", "cls")
    counts = {s.name: {r: len(s.tasks(r)) for r in s.roles} for s in (noncls, cls)}
    assert counts == {"noncls": {"train": 35, "test_in": 41, "test_out": 43},
                      "cls": {"train": 35, "test_in": 8, "test_out": 76}}
    cls_tasks = set(cls.tasks("train")) | set(cls.tasks("test_in"))
    noncls_tasks = set(noncls.tasks("train")) | set(noncls.tasks("test_in"))
    assert set(noncls.tasks("test_out")) == cls_tasks  # the other coarse type is the out-of-domain test
    assert set(cls.tasks("test_out")) == noncls_tasks
    assert everything - cls_tasks - noncls_tasks == {"discovery"}  # A1: only in the random split
    assert all(registry.get(t).ontology.startswith("cls/") for t in cls_tasks)
    assert "discovery" in (registry.split("ipt", "noncls").notes + registry.split("ipt", "cls").notes)


def test_ipt_k_rules_follow_crossfit(registry):
    assert registry.get("glue-sst2").k_rule == "per_class"
    assert registry.get("kilt_fever").k_rule == "total"  # a classification task CrossFit samples 32 in total
    assert registry.get("piqa").k_rule == "per_class"  # a non-cls task CrossFit samples per class
    assert registry.get("squad-no_context").k_rule == "total"
    assert registry.paper("ipt").data_seeds[:3] == (100, 13, 21)


def test_survey_and_decomposition_task_lists(registry):
    main_split = registry.split("survey", "main")
    assert len(main_split.tasks("eval")) == 104 and main_split.tasks("extra") == ["superglue-wsc", "swag", "kilt_ay2"]
    assert registry.metric_for("glue-cola", "survey") == "matthews"
    assert registry.metric_for("glue-mrpc", "survey", "combination") == "f1:equivalent"
    assert registry.metric_for("glue-mrpc", "survey", "main") == "accuracy"
    glue = registry.split("decomposition", "glue").tasks()
    assert {t: registry.metric_for(t, "decomposition") for t in glue} == {
        "glue-mnli": "accuracy", "glue-sst2": "accuracy", "glue-cola": "matthews", "glue-qqp": "accuracy",
        "glue-qnli": "accuracy", "glue-rte": "accuracy", "glue-mrpc": "accuracy", "glue-stsb": "pearson"}
    assert registry.get("glue-stsb").kind == "regression"


def test_quickstart_suite_supports_both_settings(registry):
    names = [n for n in registry.tasks if n.startswith("qs-")]
    assert all("quickstart" in registry.get(n).papers for n in names)
    assert {registry.get(n).category for n in names} == {"sentiment", "topic"}
    single = registry.split("quickstart", "single")
    for m in single.members:  # test tasks are unseen tasks of the train task's category
        assert registry.get(m.task).category == {"sentiment": "sentiment", "topic": "topic"}[m.group]
    multi = registry.split("quickstart", "multi")
    assert not set(multi.tasks("train")) & set(multi.tasks("test"))
    assert {registry.get(t).category for t in multi.tasks("test")} == {"sentiment", "topic"}


def test_aliases_and_unknown_names(registry):
    assert registry.get("sst2").name == "glue-sst2"
    assert registry.get("adversarial_qa").name == "adversarialqa"
    with pytest.raises(UnknownTaskError, match=r"unknown task 'glue-sst'; close matches: glue-sst2"):
        registry.get("glue-sst")
    with pytest.raises(RegistryError, match=r"paper 'ipt' has no split 'randm'; splits: random, noncls, cls"):
        registry.listing("ipt", "randm")


def test_cli_unknown_task_and_json_listing(capsys):
    code, _, err = run_cli(capsys, "tasks", "show", "rotten_tomatos")
    assert code == 2 and "close matches: rotten_tomatoes" in err
    code, out, _ = run_cli(capsys, "tasks", "list", "--paper", "ipt", "--split", "cls", "--json")
    rows = json.loads(out)
    assert code == 0 and {r["role"] for r in rows} == {"train", "test_in", "test_out"} and len(rows) == 119
    code, out, _ = run_cli(capsys, "tasks", "show", "glue-rte")
    assert json.loads(out)["verbalizers"] == ["entailment", "not_entailment"]


# ---------------------------------------------------------------- validation of a broken registry

TASK = """\
tasks:
  toy:
    ontology: cls/topic
    kind: classification
    metric: accuracy
    verbalizers: [a, b]
    source: {type: jsonl, train: t.jsonl, test: t.jsonl}
    template: {input: '{text}', label: label}
"""


def write_registry(tmp_path, *files):
    folder = tmp_path / "tasks"
    folder.mkdir(exist_ok=True)
    for i, text in enumerate(files):
        (folder / f"f{i}.yaml").write_text(textwrap.dedent(text))
    return folder


@pytest.mark.parametrize("mutation, message", [
    (lambda t: t.replace("    metric: accuracy\n", "    metric: accuracy\n    metirc: f1\n"),
     r"f0.yaml:2: task 'toy': unknown key\(s\) 'metirc'"),
    (lambda t: t.replace("kind: classification", "kind: cls"), r"f0.yaml:2: task 'toy': kind must be one of"),
    (lambda t: t.replace("metric: accuracy", "metric: bleu"), r"unknown metric 'bleu'"),
    (lambda t: t.replace("verbalizers: [a, b]", "verbalizers: [a]"), r"needs at least two verbalizers"),
    (lambda t: t.replace("cls/topic", "cls/topics"), r"unknown ontology 'cls/topics'; close: cls/topic"),
    (lambda t: t.replace(", label: label}", "}"), r"classification template needs `label`"),
    (lambda t: t.replace("type: jsonl,", "type: xml,"), r"unknown source type 'xml'"),
    (lambda t: t + "    kind: generation\n", r"f0.yaml:9: duplicate key 'kind'"),
])
def test_invalid_task_entries_fail_with_file_line_and_key(tmp_path, mutation, message):
    folder = write_registry(tmp_path, mutation(TASK))
    with pytest.raises(RegistryError, match=message):
        load_registry(folder)


def test_split_with_unknown_task_fails_with_close_matches(tmp_path):
    papers = """\
    papers:
      toypaper:
        splits:
          main:
            roles: {train: [toy], test: [tyo]}
    """
    with pytest.raises(UnknownTaskError, match=r"split toypaper/main: unknown task 'tyo'; close matches: toy"):
        load_registry(write_registry(tmp_path, TASK, papers))


def test_a_task_is_defined_once(tmp_path):
    with pytest.raises(RegistryError, match=r"f1.yaml:2: task 'toy' is already defined at .*f0.yaml:2"):
        load_registry(write_registry(tmp_path, TASK, TASK))
