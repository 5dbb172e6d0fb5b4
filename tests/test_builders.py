"""Row builders (src/deltaspace/data/builders.py) and the url source, on hand-written rows.

Each builder gets a few rows shaped as ``datasets`` gives them and must give CrossFit's lines for
them (github.com/INK-USC/CrossFit, tasks/<task>.py): the expected strings are written out by hand.
The url source (proto_qa) is exercised with ``urllib.request.urlopen`` patched: nothing here
reaches the network.
"""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml
from transformers import ByT5Tokenizer

from deltaspace.data import builders, loaders
from deltaspace.data.builders import Line, build_split, crossfit_test_share, get_builder
from deltaspace.data.loaders import DataError, Record
from deltaspace.data.prepare import PrepareOptions, load_prepared, prepare_task, to_examples
from deltaspace.data.registry import RegistryError, _parse_source, load_registry

REGISTRY = load_registry()
REPO = Path(__file__).resolve().parents[1]
SIX = ("superglue-multirc", "empathetic_dialogues", "wiki_bio", "crows_pairs", "limit", "proto_qa")


@pytest.fixture(scope="module")
def tokenizer():
    return ByT5Tokenizer()


# --------------------------------------------------------------------------- the builders on hand-written rows


def multirc_row(q, paragraph, question, answer, label):
    return {"paragraph": paragraph, "question": question, "answer": answer,
            "idx": {"paragraph": 0, "question": q, "answer": 0}, "label": label}


def test_multirc_groups_candidate_answers_per_question():
    rows = [multirc_row(7, "P one\nline two", "What is X?", "ans a", 1),
            multirc_row(7, "P one\nline two", "What is X?", "ans\tb", 0),
            multirc_row(9, "P2", "Who?", "nobody", 0),
            multirc_row(7, "P one\nline two", "What is X?", "ans c", 1)]
    assert build_split("multirc", rows, "train") == [
        Line("question: What is X? (A) ans a (B) ans b (C) ans c context: P one line two", ("ans a [SEP] ans c",), 0),
        Line("question: Who? (A) nobody context: P2", ("NO ANSWER!",), 2),
    ]
    assert build_split("multirc", rows, "test") == build_split("multirc", rows, "train")  # test = validation, whole


def dialogue_row(prompt, context, utterance, i=0):
    return {"conv_id": f"hit:{i}_conv:1", "utterance_idx": i, "context": context, "prompt": prompt,
            "speaker_idx": i % 2, "utterance": utterance, "selfeval": "", "tags": ""}


def test_empathetic_dialogues_merges_the_utterances_of_one_situation():
    rows = [dialogue_row("I remember going to the fireworks_comma_ with my friend", "sentimental",
                         "I remember going to see the fireworks with my best friend."),
            dialogue_row("I remember going to the fireworks_comma_ with my friend", "sentimental",
                         "Was this a friend you were in love with_comma_ or just a best friend?", 1),
            dialogue_row("I remember going to the fireworks_comma_ with my friend", "sentimental", "hit:3_conv:6", 2),
            dialogue_row("My dog died", "sad", "Oh no\nso sorry", 3)]
    assert build_split("empathetic_dialogues", rows, "train") == [
        Line("I remember going to the fireworks, with my friend [SEP] sentimental",
             ("I remember going to see the fireworks with my best friend.",
              "Was this a friend you were in love with, or just a best friend?"), 0),
        Line("My dog died [SEP] sad", ("Oh no so sorry",), 3),
    ]
    test = [dialogue_row(f"situation {i}", "sad", f"reply {i}", i) for i in range(10)]
    kept = build_split("empathetic_dialogues", test, "test")  # 20% of the validation lines, shuffled with seed 42
    assert [line.input for line in kept] == ["situation 8 [SEP] sad", "situation 1 [SEP] sad"]


def test_the_test_share_is_crossfits_seed_42_shuffle():
    lines = [Line(f"x{i}", (f"y{i}",), i) for i in range(1000)]
    expected = list(lines)
    np.random.seed(42)
    np.random.shuffle(expected)
    assert crossfit_test_share(lines, 0.01) == expected[:10]
    assert crossfit_test_share(lines, 0.2) == expected[:200]


def bio_row(context, headers, contents, target):
    return {"input_text": {"table": {"column_header": headers, "row_number": [1] * len(headers), "content": contents},
                           "context": context}, "target_text": target}


def test_wiki_bio_zips_the_infobox():
    rows = [bio_row(" john smith \n", ["name", "birth_date"], ["john smith ", "1 may\n1900"],
                    "john smith ( 1 may 1900 ) was a\nfarmer .\n"),
            bio_row("jane doe", ["name", "article_title"], ["jane doe"], "jane doe was a poet .")]
    assert build_split("wiki_bio", rows, "train") == [
        Line("john smith [SEP] name: john smith [n] birth_date: 1 may 1900 [n] ",
             ("john smith ( 1 may 1900 ) was a farmer .",), 0)]
    assert get_builder("wiki_bio").test_share == 0.01


def limit_row(sentence, motion, entities):
    return {"id": 0, "sentence": sentence, "motion": motion,
            "motion_entities": [{"entity": e, "start_index": i} for i, e in enumerate(entities)]}


def test_limit_keeps_motion_rows_and_joins_their_entities():
    rows = [limit_row(" The ball rolled down the hill . ", "yes", ["The ball", "the hill"]),
            limit_row("The house stood still .", "no", []),
            limit_row("Something moved .", "yes", []),  # no entity: no output, dropped
            limit_row("He ran .", "yes", ["He"])]
    assert build_split("limit", rows, "train") == [
        Line("The ball rolled down the hill .", ("The ball [SEP] the hill",), 0),
        Line("He ran .", ("He",), 3)]


def test_crows_pairs_needs_no_builder_its_template_shuffles():
    """tasks/crows_pairs.py: np.random.seed(42), then random() > 0.5 keeps sent_more first (label
    sentence 1). RandomState(42)'s first draws are 0.37 and 0.95: the first pair swaps, the second not."""
    task = REGISTRY.get("crows_pairs")
    assert task.source.get("builder") is None and task.template.shuffle["seed"] == 42
    rows = [{"sent_more": "Poor people are lazy.", "sent_less": "Rich people are lazy."},
            {"sent_more": "Women can't drive.", "sent_less": "Men can't drive."}]
    records = [Record(f"r{i}", i, row) for i, row in enumerate(rows)]
    examples = to_examples(task, records, "train", task.verbalizers)
    assert [(e.input, e.target) for e in examples] == [
        ("sentence 1: Rich people are lazy. [SEP] sentence 2: Poor people are lazy.", "sentence 2"),
        ("sentence 1: Women can't drive. [SEP] sentence 2: Men can't drive.", "sentence 1")]


def test_every_builder_is_documented_and_its_fields_declared():
    assert set(builders.BUILDERS) == {"multirc", "empathetic_dialogues", "wiki_bio", "limit"}
    for spec in builders.BUILDERS.values():
        assert spec.crossfit.startswith("tasks/") and spec.summary and spec.reads
        assert set(spec.group_by) <= set(spec.reads) and set(spec.keep) <= set(spec.reads)


# --------------------------------------------------------------------------- names and errors


def test_an_unknown_builder_name_fails_with_the_valid_list():
    with pytest.raises(RegistryError, match=r"w: hub source: unknown builder 'multirk' \(closest: multirc\); "
                                            r"valid builders: empathetic_dialogues, limit, multirc, wiki_bio"):
        _parse_source({"type": "hub", "id": "aps/super_glue", "builder": "multirk"}, "w")
    with pytest.raises(KeyError, match="valid builders"):
        get_builder("nope")
    with pytest.raises(RegistryError, match="unknown key"):
        _parse_source({"type": "crossfit_tsv", "builder": "limit"}, "w")  # TSV lines are already built


def test_a_row_lacking_a_builder_field_fails_naming_the_row():
    records = [Record("hub:limit/train#4", 4, {"sentence": "x", "motion": "yes"})]
    with pytest.raises(DataError, match=r"hub:limit/train#4: builder 'limit' reads field\(s\) motion_entities.entity"):
        loaders.apply_builder("limit", records, "train")


def test_built_records_point_at_their_source_rows():
    records = [Record(f"hub:x/train#{i}", i, row) for i, row in enumerate(
        [limit_row("a .", "no", ["a"]), limit_row("b .", "yes", ["b"])])]
    built = loaders.apply_builder("limit", records, "train")
    assert built == [Record("hub:x/train#1 (limit builder)", 1, {"input": "b .", "outputs": ["b"]})]


@pytest.mark.parametrize("node, message", [
    ({"type": "url", "url": "ftp://x/y.jsonl", "file": "y.jsonl", "holdout": 0.2}, "http"),
    ({"type": "url", "url": "https://x/y.txt", "file": "y.txt", "holdout": 0.2}, "format 'txt'"),
    ({"type": "url", "url": "https://x/y.jsonl", "file": "../y.jsonl", "holdout": 0.2}, "relative path"),
    ({"type": "url", "url": "https://x/y.jsonl", "file": "y.jsonl"}, "needs key 'holdout'"),
])
def test_url_sources_validate(node, message):
    with pytest.raises(RegistryError, match=message):
        _parse_source(node, "w")


# --------------------------------------------------------------------------- through preparation


class Hub:
    def __init__(self, features, splits):
        self.features, self.splits, self.calls = features, splits, []

    def __call__(self, path, name=None, *, split=None, revision=None, data_files=None, **kwargs):
        self.calls.append((path, name, split))
        return datasets.Dataset.from_list(self.splits[split], features=self.features, split=datasets.NamedSplit(split))


def test_wiki_bio_prepares_full_data_from_the_hub(tmp_path, monkeypatch, tokenizer):
    """survey-table3 runs wiki_bio in the full setting: train from `train`, test 1% of `val`."""
    features = datasets.Features({
        "input_text": {"table": datasets.Sequence({"column_header": datasets.Value("string"),
                                                   "row_number": datasets.Value("int16"),
                                                   "content": datasets.Value("string")}),
                       "context": datasets.Value("string")},
        "target_text": datasets.Value("string")})
    split_rows = {split: [bio_row(f"person {split} {i}", ["name", "job"], [f"person {i}", "poet"],
                                  f"person {i} was a poet .") for i in range(n)] for split, n in (("train", 30), ("val", 300))}
    hub = Hub(features, split_rows)
    monkeypatch.setattr(datasets, "load_dataset", hub)
    manifest = prepare_task("wiki_bio", tmp_path, seed=42, backbone="tiny-t5", tokenizer=tokenizer, registry=REGISTRY,
                            options=PrepareOptions(setting="full", max_dev=5))
    assert [c[2] for c in hub.calls] == ["train", "val"] and manifest["sizes"] == {"train": 25, "dev": 5, "test": 3}
    prepared = load_prepared(tmp_path)
    order = np.random.RandomState(42).permutation(300)[:3]
    assert [r["input"] for r in prepared.rows("test")] == [
        f"person val {i} [SEP] name: person {i} [n] job: poet [n]" for i in order]
    assert prepared.rows("test")[0]["target"] == f"person {order[0]} was a poet ."


# --------------------------------------------------------------------------- proto_qa's url source


PROTO_ROWS = [{"metadata": {"id": f"r{i}"}, "question": {"normalized": f"name something {i} people do at a party"},
               "answers": {"raw": {f"dance {i}": 20, f"eat {i}": 10}, "clusters": {}}} for i in range(20)]
PROTO_BYTES = "".join(json.dumps(r) + "\n" for r in PROTO_ROWS).encode()


class FakeUrlopen:
    def __init__(self, payload=PROTO_BYTES, error=None):
        self.payload, self.error, self.urls = payload, error, []

    def __call__(self, url, timeout=None):
        self.urls.append(url)
        if self.error is not None:
            raise self.error
        return io.BytesIO(self.payload)


@pytest.fixture
def online(monkeypatch, tmp_path):
    """Downloads allowed (the offline variables unset), the cache in a temporary folder, urlopen faked."""
    for name in loaders.OFFLINE_ENVS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(loaders.DOWNLOADS_ENV, str(tmp_path / "cache"))
    fake = FakeUrlopen()
    monkeypatch.setattr(urllib.request, "urlopen", fake)
    return fake


def prepare_proto(out, tokenizer, data_dir=None):
    return prepare_task("proto_qa", out, seed=42, backbone="tiny-t5", tokenizer=tokenizer, registry=REGISTRY,
                        options=PrepareOptions(setting="full", max_dev=2, data_dir=data_dir))


def test_proto_qa_is_downloaded_once_into_the_cache(online, tmp_path, tokenizer):
    manifest = prepare_proto(tmp_path / "a", tokenizer)
    url = REGISTRY.get("proto_qa").source.get("url")
    assert online.urls == [url] and url.startswith("https://raw.githubusercontent.com/iesl/protoqa-data/")
    cached = tmp_path / "cache" / "proto_qa" / "train.jsonl"
    assert cached.read_bytes() == PROTO_BYTES
    assert [p.name for p in cached.parent.iterdir()] == ["train.jsonl"]  # no temporary file left
    assert manifest["sizes"] == {"train": 14, "dev": 2, "test": 4} and manifest["source"]["type"] == "url"
    prepare_proto(tmp_path / "b", tokenizer)
    assert len(online.urls) == 1  # the second preparation reads the cached copy
    assert load_prepared(tmp_path / "a").rows("train")[0]["references"][1].startswith("eat ")


def test_proto_qa_downloads_into_the_data_folder_when_one_is_given(online, tmp_path, tokenizer):
    prepare_proto(tmp_path / "out", tokenizer, data_dir=str(tmp_path / "data"))
    assert (tmp_path / "data" / "proto_qa" / "train.jsonl").read_bytes() == PROTO_BYTES
    assert not (tmp_path / "cache").exists()


def test_a_failed_download_leaves_nothing_and_says_so(online, tmp_path, tokenizer, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", FakeUrlopen(error=urllib.error.URLError("no route to host")))
    with pytest.raises(DataError, match=r"protoqa-data/master/data/train/train.jsonl: download to .*cache/proto_qa/"
                                        r"train.jsonl failed: URLError: .*no route to host"):
        prepare_proto(tmp_path / "out", tokenizer)
    folder = tmp_path / "cache" / "proto_qa"
    assert not folder.exists() or list(folder.iterdir()) == []
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_offline_a_missing_copy_fails_saying_where_to_put_it(online, tmp_path, tokenizer, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"not downloaded yet .* downloads are off \(HF_HUB_OFFLINE set\); "
                                        r"fix: download it to .*cache/proto_qa/train.jsonl"):
        prepare_proto(tmp_path / "out", tokenizer)
    assert online.urls == []
    (tmp_path / "data" / "proto_qa").mkdir(parents=True)  # CrossFit's data folder layout: used as it is
    (tmp_path / "data" / "proto_qa" / "train.jsonl").write_bytes(PROTO_BYTES)
    assert prepare_proto(tmp_path / "out", tokenizer, data_dir=str(tmp_path / "data"))["sizes"]["test"] == 4
    assert online.urls == []


# --------------------------------------------------------------------------- preflight


def test_preflight_accepts_the_six_tasks_in_the_full_setting(tmp_path):
    """The six tasks that used to need CrossFit's TSV files (or a local file) need nothing now."""
    from deltaspace import preflight as pf

    config = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    config["data"]["setting"] = "full"
    config["data"].pop("data_dir", None)
    config["stage0"]["tasks"] = list(SIX)
    config["backbone"] = "tiny-t5"  # some of the six generate their answers, which an encoder's head cannot
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    report = pf.preflight(path, REPO)
    assert not [p for p in report.problems if any(f"task {t} " in p for t in SIX)], report.problems
