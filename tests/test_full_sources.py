"""Full-data sources for the tasks that used to prepare from CrossFit's few-shot TSV files only.

Each task below is prepared in the `full` setting through the real hub path (``prepare_task`` ->
``loaders.read_hub`` -> ``datasets.load_dataset``, patched to return a small ``datasets.Dataset``
with the features of the dataset card), and its rendered rows are compared with what CrossFit's
builder (github.com/INK-USC/CrossFit, tasks/<task>.py) makes of the same rows. The expected lines
are computed here from the builder's logic, spelled out per task; preparation normalizes
whitespace (``" ".join(text.split())``), so the expected inputs are normalized the same way.

The last tests check that every task of the paper configs that prepare full data has a source that
can do full data, so a crossfit-only task cannot slip back into them unnoticed.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml
from transformers import ByT5Tokenizer

from deltaspace.data.prepare import PrepareOptions, load_prepared, prepare_task, to_examples
from deltaspace.data.loaders import Record
from deltaspace.data.registry import RegistryError, load_registry

REGISTRY = load_registry()
ROOT = Path(__file__).resolve().parents[1]
FULL_CONFIGS = ("udt-multi", "udt-simplified", "survey-table3", "survey-transfer")

# Tasks of those configs still without a full-data source, and why (their registry notes say so too).
# None is left: wiki_bio, the last one, prepares from the hub through its row builder (tests/test_builders.py).
NOT_COVERED: dict[str, str] = {}


def norm(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def tokenizer():
    return ByT5Tokenizer()


class Hub:
    """``datasets.load_dataset`` answering one (id, config) with given rows per split."""

    def __init__(self, dataset_id, config, features: datasets.Features, splits: dict[str, dict[str, list]]):
        self.key, self.features, self.splits, self.calls = (dataset_id, config), features, splits, []

    def __call__(self, path, name=None, *, split=None, revision=None, data_files=None, **kwargs):
        assert (path, name) == self.key, f"unexpected dataset {(path, name)}, expected {self.key}"
        if split not in self.splits:
            raise ValueError(f'Unknown split "{split}". Should be one of {list(self.splits)}.')
        self.calls.append(split)
        return datasets.Dataset.from_dict(self.splits[split], features=self.features, split=datasets.NamedSplit(split))

    def rows(self, split):
        """The rows as ``datasets`` gives them to a builder (e.g. float32 values as Python floats)."""
        return list(datasets.Dataset.from_dict(self.splits[split], features=self.features))


def prepare_full(task, hub: Hub, tmp_path, monkeypatch, tokenizer, **options):
    monkeypatch.setattr(datasets, "load_dataset", hub)
    opts = PrepareOptions(setting="full", **options)
    manifest = prepare_task(task, tmp_path, seed=42, backbone="tiny-t5", options=opts, tokenizer=tokenizer,
                            registry=REGISTRY)
    prepared = load_prepared(tmp_path)
    rows = {s: [(r["input"], r["target"]) for r in prepared.rows(s)] for s in ("train", "dev", "test")}
    return manifest, prepared, rows


def crossfit_holdout(lines):
    """CrossFit's 80/20 carve of a train-only dataset: np.random.seed(42); shuffle; first 80% train."""
    lines = list(lines)
    np.random.seed(42)
    np.random.shuffle(lines)
    cut = int(0.8 * len(lines))
    return lines[:cut], lines[cut:]


# --------------------------------------------------------------------------- BLiMP (8 tasks)

BLIMP_FEATURES = datasets.Features({
    "sentence_good": datasets.Value("string"), "sentence_bad": datasets.Value("string"),
    "field": datasets.Value("string"), "linguistics_term": datasets.Value("string"), "UID": datasets.Value("string"),
    "simple_LM_method": datasets.Value("bool"), "one_prefix_method": datasets.Value("bool"),
    "two_prefix_method": datasets.Value("bool"), "lexically_identical": datasets.Value("bool"),
    "pair_id": datasets.Value("int32"),
})


def blimp_rows(n):
    return {"sentence_good": [f"The cat {i} sees itself." for i in range(n)],
            "sentence_bad": [f"The cat {i} sees themselves." for i in range(n)],
            "field": ["morphology"] * n, "linguistics_term": ["anaphor_agreement"] * n, "UID": ["uid"] * n,
            "simple_LM_method": [True] * n, "one_prefix_method": [True] * n, "two_prefix_method": [False] * n,
            "lexically_identical": [False] * n, "pair_id": list(range(n))}


def crossfit_blimp(rows):
    """tasks/blimp.py map_hf_dataset_to_list: np.random.seed(42), one random() per row."""
    lines = []
    np.random.seed(42)
    for dp in rows:
        if np.random.random() > 0.5:
            lines.append(("sentence 1: " + dp["sentence_good"] + " [SEP] sentence 2: " + dp["sentence_bad"], "sentence 1"))
        else:
            lines.append(("sentence 1: " + dp["sentence_bad"] + " [SEP] sentence 2: " + dp["sentence_good"], "sentence 2"))
    return lines


BLIMP_TASKS = sorted(t for t in REGISTRY.tasks if t.startswith("blimp-"))


def test_all_eight_blimp_tasks_have_the_crossfit_template():
    assert len(BLIMP_TASKS) == 8
    for name in BLIMP_TASKS:
        spec = REGISTRY.get(name)
        source = spec.source_of_type(None)
        assert source.type == "hub" and source.get("id") == "nyu-mll/blimp" and source.get("holdout") == 0.2
        assert source.get("config") == name.removeprefix("blimp-") and spec.exact
        assert spec.template.shuffle == {"fields": ["sentence_good", "sentence_bad"], "seed": 42, "draw": "coin"}
        assert spec.verbalizers == ("sentence 1", "sentence 2")
        assert [s.type for s in spec.alternatives] == ["crossfit_tsv"]


@pytest.mark.parametrize("name", ["blimp-anaphor_number_agreement", "blimp-ellipsis_n_bar_1"])
def test_blimp_full_matches_crossfit(name, tmp_path, monkeypatch, tokenizer):
    n = 40
    hub = Hub("nyu-mll/blimp", name.removeprefix("blimp-"), BLIMP_FEATURES, {"train": blimp_rows(n)})
    manifest, prepared, rows = prepare_full(name, hub, tmp_path, monkeypatch, tokenizer, max_dev=4)
    assert hub.calls == ["train"]  # train only: the test split is CrossFit's 80/20 carve
    train_lines, test_lines = crossfit_holdout(crossfit_blimp(hub.rows("train")))
    assert rows["test"] == [(norm(i), o) for i, o in test_lines]  # same rows, same order
    assert sorted(rows["train"] + rows["dev"]) == sorted((norm(i), o) for i, o in train_lines)
    assert manifest["sizes"] == {"train": 28, "dev": 4, "test": 8} and manifest["setting"] == "full"
    assert {o for _, o in test_lines + train_lines} == {"sentence 1", "sentence 2"}  # both orders occur
    for row in prepared.rows("train"):
        assert row["label"] == ["sentence 1", "sentence 2"].index(row["target"])


def test_blimp_coin_by_hand():
    """The first draws of RandomState(42) are 0.3745, 0.9507, 0.7320, 0.5987, 0.1560: only rows 1-3
    keep sentence_good first."""
    spec = REGISTRY.get("blimp-anaphor_gender_agreement")
    recs = [Record(f"r{i}", i, {"sentence_good": f"good {i}", "sentence_bad": f"bad {i}"}) for i in range(5)]
    examples = to_examples(spec, recs, "train", spec.verbalizers)
    assert [e.target for e in examples] == ["sentence 2", "sentence 1", "sentence 1", "sentence 1", "sentence 2"]
    assert examples[0].input == "sentence 1: bad 0 [SEP] sentence 2: good 0"
    assert examples[1].input == "sentence 1: good 1 [SEP] sentence 2: bad 1"


def test_blimp_crossfit_tsv_alternative_still_prepares(tmp_path, tokenizer):
    """A task with a hub template still reads CrossFit's TSV lines as they are (few-shot)."""
    folder = tmp_path / "data" / "blimp-ellipsis_n_bar_1"
    folder.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        (folder / f"blimp-ellipsis_n_bar_1_16_100_{split}.tsv").write_text(
            f"sentence 1: a {split} [SEP] sentence 2: b {split}\tsentence 1\n"
            f"sentence 1: c {split} [SEP] sentence 2: d {split}\tsentence 2\n")
    manifest = prepare_task("blimp-ellipsis_n_bar_1", tmp_path / "out", seed=100, backbone="tiny-t5",
                            options=PrepareOptions(source="crossfit_tsv", data_dir=str(tmp_path / "data")),
                            tokenizer=tokenizer, registry=REGISTRY)
    assert manifest["source"]["type"] == "crossfit_tsv" and manifest["sizes"] == {"train": 2, "dev": 2, "test": 2}
    assert [r["input"] for r in load_prepared(tmp_path / "out").rows("test")][0] == \
        "sentence 1: a test [SEP] sentence 2: b test"


# --------------------------------------------------------------------------- sciq

SCIQ_FEATURES = datasets.Features({k: datasets.Value("string") for k in
                                   ("question", "distractor3", "distractor1", "distractor2", "correct_answer", "support")})


def sciq_rows(split, n, empty_every=5):
    return {"question": [f"{split} question\n{i}?" for i in range(n)],
            "distractor1": [f"d1-{split}{i}" for i in range(n)], "distractor2": [f"d2-{split}{i}" for i in range(n)],
            "distractor3": [f"d3-{split}{i}" for i in range(n)], "correct_answer": [f"ok-{split}{i}" for i in range(n)],
            "support": ["" if i % empty_every == 2 else f"{split} support\n{i}." for i in range(n)]}


def crossfit_sciq(rows):
    """tasks/sciq.py: np.random.seed(42) per split; skip empty support; shuffle the 4 answers per row."""
    id2alphabet = {0: "(A)", 1: "(B)", 2: "(C)", 3: "(D)"}
    np.random.seed(42)
    lines = []
    for dp in rows:
        if len(dp["support"].replace("\n", " ")) == 0:
            continue
        answer = dp["correct_answer"]
        answers = [dp["distractor1"], dp["distractor2"], dp["distractor3"], answer]
        np.random.shuffle(answers)
        choices = "".join(" " + id2alphabet[i] + " " + a for i, a in enumerate(answers))
        text = dp["question"].replace("\n", " ") + choices + " [SEP] " + dp["support"].replace("\n", " ")
        lines.append((text, answer))
    return lines


def test_sciq_full_matches_crossfit(tmp_path, monkeypatch, tokenizer):
    hub = Hub("allenai/sciq", None, SCIQ_FEATURES,
              {"train": sciq_rows("train", 30), "validation": sciq_rows("validation", 12), "test": sciq_rows("test", 3)})
    manifest, _, rows = prepare_full("sciq", hub, tmp_path, monkeypatch, tokenizer, max_dev=5)
    assert sorted(hub.calls) == ["train", "validation"]
    expected_test = crossfit_sciq(hub.rows("validation"))
    assert rows["test"] == [(norm(i), o) for i, o in expected_test]
    assert sorted(rows["train"] + rows["dev"]) == sorted((norm(i), o) for i, o in crossfit_sciq(hub.rows("train")))
    assert manifest["sizes"] == {"train": 19, "dev": 5, "test": 10}  # 30 - 6 empty supports; 12 - 2
    # the answer is not always in the last slot: the permutation is CrossFit's
    assert {i.index(o) < i.index("(D)") for i, o in rows["test"]} == {True, False}


# --------------------------------------------------------------------------- hatexplain

HATEXPLAIN_FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "annotators": datasets.Sequence({"label": datasets.ClassLabel(names=["hatespeech", "normal", "offensive"]),
                                     "annotator_id": datasets.Value("int32"),
                                     "target": datasets.Sequence(datasets.Value("string"))}),
    "rationales": datasets.Sequence(datasets.Sequence(datasets.Value("int32"))),
    "post_tokens": datasets.Sequence(datasets.Value("string")),
})


def hatexplain_rows(split, votes):
    n = len(votes)
    return {"id": [f"{split}{i}_gab" for i in range(n)],
            "annotators": [{"label": v, "annotator_id": list(range(len(v))), "target": [["None"]] * len(v)} for v in votes],
            "rationales": [[] for _ in range(n)],
            "post_tokens": [[f"{split}", "post", str(i), "tokens"] for i in range(n)]}


def crossfit_hatexplain(rows):
    """tasks/hatexplain.py + utils.get_majority: majority label (a tie drops the post), tokens joined."""
    from collections import Counter

    label = {0: "hatespeech", 1: "normal", 2: "offensive"}
    lines = []
    for dp in rows:
        rank = Counter(dp["annotators"]["label"]).most_common()
        majority = rank[0][0] if len(rank) == 1 or rank[0][1] != rank[1][1] else None
        if majority is not None:
            lines.append((" ".join(dp["post_tokens"]), label[majority]))
    return lines


def test_hatexplain_full_matches_crossfit(tmp_path, monkeypatch, tokenizer):
    votes = [[0, 0, 2], [1, 2, 0], [2, 2, 1], [1, 1, 1], [0, 1, 1], [2, 0, 2], [0, 0, 0], [1, 2, 2], [0, 1, 2], [1, 0, 1]]
    hub = Hub("Hate-speech-CNERG/hatexplain", None, HATEXPLAIN_FEATURES,
              {"train": hatexplain_rows("train", votes * 2), "validation": hatexplain_rows("validation", votes),
               "test": hatexplain_rows("test", votes[:2])})
    manifest, _, rows = prepare_full("hatexplain", hub, tmp_path, monkeypatch, tokenizer, max_dev=2)
    expected_test = crossfit_hatexplain(hub.rows("validation"))
    assert rows["test"] == expected_test and len(expected_test) == 8  # the two ties are dropped
    assert ("validation post 0 tokens", "hatespeech") in rows["test"]
    assert sorted(rows["train"] + rows["dev"]) == sorted(crossfit_hatexplain(hub.rows("train")))
    assert manifest["verbalizers"] == ["hatespeech", "normal", "offensive"]


# --------------------------------------------------------------------------- google_wellformed_query

GWQ_FEATURES = datasets.Features({"rating": datasets.Value("float32"), "content": datasets.Value("string")})


def gwq_rows(split, n):
    ratings = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    return {"rating": [ratings[i % 6] for i in range(n)], "content": [f" {split} query number {i} ? " for i in range(n)]}


def crossfit_gwq(rows):
    """tasks/google_wellformed_query.py: rating < 0.4 not well-formed, > 0.6 well-formed, else dropped."""
    lines = []
    for dp in rows:
        if dp["rating"] < 0.4:
            lines.append((dp["content"].strip(), "not well-formed"))
        elif dp["rating"] > 0.6:
            lines.append((dp["content"].strip(), "well-formed"))
    return lines


def test_google_wellformed_query_full_matches_crossfit(tmp_path, monkeypatch, tokenizer):
    hub = Hub("google-research-datasets/google_wellformed_query", None, GWQ_FEATURES,
              {"train": gwq_rows("train", 24), "validation": gwq_rows("validation", 12), "test": gwq_rows("test", 6)})
    manifest, _, rows = prepare_full("google_wellformed_query", hub, tmp_path, monkeypatch, tokenizer, max_dev=3)
    expected_test = crossfit_gwq(hub.rows("validation"))
    assert rows["test"] == [(norm(i), o) for i, o in expected_test]
    assert sorted(rows["train"] + rows["dev"]) == sorted((norm(i), o) for i, o in crossfit_gwq(hub.rows("train")))
    # float32 0.6 reads as 0.6000000238 > 0.6: CrossFit (and so this source) calls it well-formed; 0.4 is dropped
    assert ("validation query number 3 ?", "well-formed") in rows["test"]
    assert not any(i.startswith("validation query number 2 ") for i, _ in rows["test"])
    assert len(rows["test"]) == 10


# --------------------------------------------------------------------------- wiki_auto, crawl_domain, qa_srl


def test_wiki_auto_full_matches_crossfit(tmp_path, monkeypatch, tokenizer):
    features = datasets.Features({
        "alignment_label": datasets.ClassLabel(names=["notAligned", "aligned", "partialAligned"]),
        "normal_sentence_id": datasets.Value("string"), "simple_sentence_id": datasets.Value("string"),
        "normal_sentence": datasets.Value("string"), "simple_sentence": datasets.Value("string"),
        "gleu_score": datasets.Value("float32")})

    def split_rows(split, n):
        return {"alignment_label": [i % 2 for i in range(n)], "normal_sentence_id": [f"n{i}" for i in range(n)],
                "simple_sentence_id": [f"s{i}" for i in range(n)],
                "normal_sentence": [f"{split} normal {i}" for i in range(n)],
                "simple_sentence": [f"{split} simple {i}" for i in range(n)], "gleu_score": [0.5] * n}

    hub = Hub("chaojiang06/wiki_auto", "manual", features,
              {"train": split_rows("train", 10), "dev": split_rows("dev", 4), "test": split_rows("test", 2)})
    _, _, rows = prepare_full("wiki_auto", hub, tmp_path, monkeypatch, tokenizer, max_dev=2)
    label = {0: "notAligned", 1: "aligned"}  # tasks/wiki_auto.py; the test split is "dev"
    expected = [("normal sentence: " + dp["normal_sentence"] + " [SEP] simple_sentence: " + dp["simple_sentence"],
                 label[dp["alignment_label"]]) for dp in hub.rows("dev")]
    assert rows["test"] == expected and sorted(hub.calls) == ["dev", "train"]


def test_crawl_domain_full_matches_crossfit(tmp_path, monkeypatch, tokenizer):
    features = datasets.Features({"example": datasets.Value("string")})
    words = ["Open Research", "common Crawl", "NASA", "Open BSD", "my Cool Site", "Hello World", "A B C", "x Y z"]
    hub = Hub("google-research-datasets/crawl_domain", None, features,
              {"train": {"example": words + [w + " Two" for w in words]}, "validation": {"example": [w + " Dev" for w in words]},
               "test": {"example": words[:1]}})
    _, _, rows = prepare_full("crawl_domain", hub, tmp_path, monkeypatch, tokenizer, max_dev=2)
    expected = [(dp["example"].replace(" ", "").lower(), dp["example"]) for dp in hub.rows("validation")]
    assert rows["test"] == expected and rows["test"][0] == ("openresearchdev", "Open Research Dev")


def test_qa_srl_full_matches_crossfit(tmp_path, monkeypatch, tokenizer):
    features = datasets.Features({
        "sentence": datasets.Value("string"), "sent_id": datasets.Value("string"),
        "predicate_idx": datasets.Value("int32"), "predicate": datasets.Value("string"),
        "question": datasets.Sequence(datasets.Value("string")), "answers": datasets.Sequence(datasets.Value("string"))})

    def split_rows(split, n):
        return {"sentence": [f"The {split} man {i} ate an apple ." for i in range(n)], "sent_id": [str(i) for i in range(n)],
                "predicate_idx": [4] * n, "predicate": ["ate"] * n,
                "question": [["Who", "_", "_", "ate", "something", "_", "?"] for _ in range(n)],
                "answers": [[f"The {split} man {i}", f"man {i}"] for i in range(n)]}

    hub = Hub("luheng/qa_srl", None, features,
              {"train": split_rows("train", 8), "validation": split_rows("validation", 3), "test": split_rows("test", 2)})
    _, prepared, _ = prepare_full("qa_srl", hub, tmp_path, monkeypatch, tokenizer, max_dev=2)
    # tasks/qa_srl.py: the TSV line's outputs are "\t".join(answers): every answer is a reference
    expected = [("question: " + " ".join(dp["question"]) + " context: " + dp["sentence"], dp["answers"])
                for dp in hub.rows("validation")]
    got = [(r["input"], r["references"]) for r in prepared.rows("test")]
    assert got == expected
    assert got[0][0] == "question: Who _ _ ate something _ ? context: The validation man 0 ate an apple ."


# --------------------------------------------------------------------------- quarel, math_qa (template extract)


def test_quarel_full_matches_crossfit(tmp_path, monkeypatch, tokenizer):
    features = datasets.Features({
        "id": datasets.Value("string"), "answer_index": datasets.Value("int32"),
        "logical_forms": datasets.Sequence(datasets.Value("string")), "logical_form_pretty": datasets.Value("string"),
        "world_literals": datasets.Sequence({"world1": datasets.Value("string"), "world2": datasets.Value("string")}),
        "question": datasets.Value("string")})
    stems = ["Mike rolls a ball {i} on carpet and on tile. Where does it go farther? (A) carpet {i} or (B) tile {i}",
             "A car {i} is faster than a bike. Which takes longer? (A) the car {i} (B) the bike {i}",
             "Jo{i} sees that ice is smoother than a rug for sliding. (A) rug for (B) ice {i} or "]

    def split_rows(split, n):
        return {"id": [f"{split}{i}" for i in range(n)], "answer_index": [i % 2 for i in range(n)],
                "logical_forms": [[] for _ in range(n)], "logical_form_pretty": [""] * n,
                "world_literals": [{"world1": [], "world2": []} for _ in range(n)],
                "question": [stems[i % 3].format(i=f"{split}{i}") for i in range(n)]}

    def crossfit(rows):  # tasks/quarel.py get_answer_string
        lines = []
        for dp in rows:
            q, st1, st2 = dp["question"], dp["question"].find("(A)"), dp["question"].find("(B)")
            answer = q[st1 + 4: st2] if dp["answer_index"] == 0 else q[st2 + 4:]
            if answer.endswith("or "):
                answer = answer[:-3]
            lines.append((q, answer.strip()))
        return lines

    hub = Hub("community-datasets/quarel", None, features,
              {"train": split_rows("train", 12), "validation": split_rows("validation", 6), "test": split_rows("test", 2)})
    _, _, rows = prepare_full("quarel", hub, tmp_path, monkeypatch, tokenizer, max_dev=2)
    expected = [(norm(i), o) for i, o in crossfit(hub.rows("validation"))]
    assert rows["test"] == expected
    assert sorted(rows["train"] + rows["dev"]) == sorted((norm(i), o) for i, o in crossfit(hub.rows("train")))
    assert [o for _, o in expected[:4]] == ["carpet validation0", "the bike validation1", "rug f", "tile validation3"]


def test_math_qa_full_matches_crossfit(tmp_path, monkeypatch, tokenizer):
    features = datasets.Features({k: datasets.Value("string") for k in (
        "Problem", "Rationale", "options", "correct", "annotated_formula", "linear_formula", "category")})
    options = ["a ) 38 , b ) 27.675 , c ) 30 , d ) data inadequate , e ) 28",
               "a ) rs . 1,200 , b ) rs . 1,500 , c ) rs . 2,000 , d ) 400 , e ) none",  # commas inside options
               "a ) 5 , b ) 6 , c ) 7 , d ) 8 , e ) 9 , f ) 10",
               "a ) 1 , b ) 2 , c ) 3 , d ) 4 , e ) 5"]
    letters = ["b", "c", "e", "a"]

    def split_rows(split, n):
        return {"Problem": [f"{split} problem {i} : what is x ?" for i in range(n)], "Rationale": [""] * n,
                "options": [options[i % 4] for i in range(n)], "correct": [letters[(i + i // 4) % 4] for i in range(n)],
                "annotated_formula": [""] * n, "linear_formula": [""] * n, "category": ["general"] * n}

    def crossfit(rows):  # tasks/math_qa.py process_line; `answer` stays from the previous row if unset (never here)
        lines = []
        for dp in rows:
            opts = dp["options"].split(",")
            cut = [opts[0][4:-1], opts[1][5:-1], opts[2][5:-1], opts[3][5:-1], opts[4][5:]]
            choices = "".join(f" ({'ABCDE'[k]}) {c}" for k, c in enumerate(cut))
            answer = cut["abcde".index(dp["correct"])]
            if answer:
                lines.append((dp["Problem"] + choices, answer.strip()))
        return lines

    hub = Hub("allenai/math_qa", None, features,
              {"train": split_rows("train", 16), "validation": split_rows("validation", 8), "test": split_rows("test", 2)})
    _, _, rows = prepare_full("math_qa", hub, tmp_path, monkeypatch, tokenizer, max_dev=2)
    expected = [(norm(i), o) for i, o in crossfit(hub.rows("validation"))]
    assert rows["test"] == expected
    assert sorted(rows["train"] + rows["dev"]) == sorted((norm(i), o) for i, o in crossfit(hub.rows("train")))
    # CrossFit's comma split cuts "a ) rs . 1,200 , b ) ..." into "a ) rs . 1" ([4:-1]: "rs . ") and "200 "
    # ([5:-1]: "") ...
    assert expected[1] == ("validation problem 1 : what is x ? (A) rs . (B) (C) rs . (D) (E) rs . 2", "rs .")
    assert len(rows["train"] + rows["dev"]) == 15  # ... and train row 13, whose answer (B) is such an empty cut, is dropped


def test_hotpot_qa_full_matches_crossfit(tmp_path, monkeypatch, tokenizer):
    features = datasets.Features({
        "id": datasets.Value("string"), "question": datasets.Value("string"), "answer": datasets.Value("string"),
        "type": datasets.Value("string"), "level": datasets.Value("string"),
        "supporting_facts": datasets.Sequence({"title": datasets.Value("string"), "sent_id": datasets.Value("int32")}),
        "context": datasets.Sequence({"title": datasets.Value("string"),
                                      "sentences": datasets.Sequence(datasets.Value("string"))})})

    def split_rows(split, n):
        rows = {k: [] for k in features}
        for i in range(n):
            titles = [f"T{i}a", f"T{i}b", f"T{i}c"]
            rows["id"].append(f"{split}{i}"), rows["type"].append("bridge"), rows["level"].append("easy")
            rows["question"].append(f"{split} question {i}?"), rows["answer"].append(f"{split} answer {i}")
            support = [titles[2], titles[0]] if i % 2 else [titles[1], titles[1]]  # out of order, repeated
            rows["supporting_facts"].append({"title": support, "sent_id": [0, 1]})
            rows["context"].append({"title": titles, "sentences": [[f"{t} one.", f" {t} two."] for t in titles]})
        return rows

    def crossfit(rows):  # tasks/hotpot_qa.py get_context
        lines = []
        for dp in rows:
            context, titles = "", dp["supporting_facts"]["title"]
            for sentences, title in zip(dp["context"]["sentences"], dp["context"]["title"]):
                if title in titles:
                    context += "".join(sentences) + " "
            lines.append(("question: " + dp["question"] + " context: " + context.strip(), dp["answer"]))
        return lines

    hub = Hub("hotpotqa/hotpot_qa", "distractor", features,
              {"train": split_rows("train", 8), "validation": split_rows("validation", 4)})
    _, _, rows = prepare_full("hotpot_qa", hub, tmp_path, monkeypatch, tokenizer, max_dev=2)
    expected = [(norm(i), o) for i, o in crossfit(hub.rows("validation"))]
    assert rows["test"] == expected
    assert expected[1][0] == "question: validation question 1? context: T1a one. T1a two. T1c one. T1c two."
    assert sorted(rows["train"] + rows["dev"]) == sorted((norm(i), o) for i, o in crossfit(hub.rows("train")))


def test_freebase_qa_full_matches_crossfit(tmp_path, monkeypatch, tokenizer):
    answers = datasets.Sequence({"AnswersMid": datasets.Value("string"),
                                 "AnswersName": datasets.Sequence(datasets.Value("string"))})
    features = datasets.Features({
        "Question-ID": datasets.Value("string"), "RawQuestion": datasets.Value("string"),
        "ProcessedQuestion": datasets.Value("string"),
        "Parses": datasets.Sequence({k: datasets.Value("string") for k in (
            "Parse-Id", "PotentialTopicEntityMention", "TopicEntityName", "TopicEntityMid", "InferentialChain")}
            | {"Answers": answers})})

    def split_rows(split, n):
        rows = {k: [] for k in features}
        for i in range(n):
            rows["Question-ID"].append(f"{split}-{i}"), rows["ProcessedQuestion"].append("")
            rows["RawQuestion"].append(f"What was {split} film {i}?")
            parse = {k: ["p0", "p1"] for k in ("Parse-Id", "PotentialTopicEntityMention", "TopicEntityName",
                                               "TopicEntityMid", "InferentialChain")}
            parse["Answers"] = [{"AnswersMid": ["m.1"], "AnswersName": [[f"zeta {i}", f"goldeneye {i}"]]},
                                {"AnswersMid": ["m.1", "m.2"], "AnswersName": [[f"goldeneye {i}"], [f"alpha {i}"]]}]
            rows["Parses"].append(parse)
        return rows

    def crossfit(rows):  # tasks/freebase_qa.py
        lines = []
        for dp in rows:
            names = [what for item in dp["Parses"]["Answers"] for name in item["AnswersName"] for what in name]
            lines.append((dp["RawQuestion"], sorted(set(names))))
        return lines

    hub = Hub("KelvinJiang/freebase_qa", None, features,
              {"train": split_rows("train", 8), "validation": split_rows("validation", 3), "test": split_rows("test", 1)})
    _, prepared, _ = prepare_full("freebase_qa", hub, tmp_path, monkeypatch, tokenizer, max_dev=2)
    got = [(r["input"], r["references"]) for r in prepared.rows("test")]
    assert got == crossfit(hub.rows("validation"))
    assert got[0] == ("What was validation film 0?", ["alpha 0", "goldeneye 0", "zeta 0"])
    assert prepared.rows("test")[0]["target"] == "alpha 0"  # the first reference trains, as with CrossFit TSV lines


def test_acronym_identification_full_matches_crossfit(tmp_path, monkeypatch, tokenizer):
    features = datasets.Features({
        "id": datasets.Value("string"), "tokens": datasets.Sequence(datasets.Value("string")),
        "labels": datasets.Sequence(datasets.ClassLabel(names=["B-long", "B-short", "I-long", "I-short", "O"]))})
    # (tokens, labels); 0 B-long, 1 B-short, 2 I-long, 3 I-short, 4 O. No span ends a sentence: CrossFit's
    # `while labels[end + 1] == ...` would fail on one (so the data it ran on has none)
    patterns = [
        ("the Natural Language Processing ( NLP ) task".split(), [4, 0, 2, 2, 4, 1, 4, 4]),
        ("we use BERT - base and long short term memory .".split(), [4, 4, 1, 3, 3, 4, 0, 2, 2, 2, 4]),
        ("two acronyms A and B here".split(), [4, 4, 1, 4, 1, 4]),  # two B-short: dropped
        ("no long form for XYZ".split(), [4, 4, 4, 4, 1]),  # no B-long: dropped
    ]

    def split_rows(split, n):
        rows = {"id": [], "tokens": [], "labels": []}
        for i in range(n):
            tokens, labels = patterns[i % 4]
            rows["id"].append(f"{split}{i}"), rows["labels"].append(labels)
            rows["tokens"].append([f"{t}-{split}{i}" if t.isalpha() and t.islower() else t for t in tokens])
        return rows

    def crossfit(rows):  # tasks/acronym_identification.py
        lines = []
        for dp in rows:
            labels = dp["labels"]
            if labels.count(1) != 1 or labels.count(0) != 1:
                continue
            short_st = short_ed = labels.index(1)
            while labels[short_ed + 1] == 3:
                short_ed += 1
            long_st = long_ed = labels.index(0)
            while labels[long_ed + 1] == 2:
                long_ed += 1
            acronym, full = " ".join(dp["tokens"][short_st:short_ed + 1]), " ".join(dp["tokens"][long_st:long_ed + 1])
            lines.append((" ".join(dp["tokens"]) + " [SEP] acronym: " + acronym, full))
        return lines

    hub = Hub("amirveyseh/acronym_identification", None, features,
              {"train": split_rows("train", 16), "validation": split_rows("validation", 8), "test": split_rows("test", 2)})
    _, _, rows = prepare_full("acronym_identification", hub, tmp_path, monkeypatch, tokenizer, max_dev=2)
    expected = crossfit(hub.rows("validation"))
    assert rows["test"] == expected and len(expected) == 4
    assert expected[1][0].endswith(". [SEP] acronym: BERT - base-validation1")
    assert expected[1][1] == "long-validation1 short-validation1 term-validation1 memory-validation1"
    assert sorted(rows["train"] + rows["dev"]) == sorted(crossfit(hub.rows("train")))


def test_proto_qa_full_matches_crossfit(tmp_path, tokenizer):
    """proto_qa reads iesl/protoqa-data's train.jsonl, as CrossFit's builder does (not the hub); a copy
    in the data folder (CrossFit's layout) is used without downloading (tests/test_builders.py: the url source)."""
    import json

    rows = [{"metadata": {"id": f"r{i}"}, "question": {"normalized": f"name something {i} people do at a party",
                                                       "original": f"Name something {i}"},
             "answers": {"raw": {f"dance {i}": 20, f"eat {i}": 10, f"drink {i}": 3} if i % 2 else {f"sing {i}": 5},
                         "clusters": {}}} for i in range(20)]
    (tmp_path / "data" / "proto_qa").mkdir(parents=True)
    (tmp_path / "data" / "proto_qa" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = prepare_task("proto_qa", tmp_path / "out", seed=42, backbone="tiny-t5", tokenizer=tokenizer,
                            options=PrepareOptions(setting="full", max_dev=2, data_dir=str(tmp_path / "data")),
                            registry=REGISTRY)
    prepared = load_prepared(tmp_path / "out")
    # tasks/proto_qa.py: (question.normalized, "\t".join(answers.raw keys)), then the 80/20 carve with seed 42
    lines = [(dp["question"]["normalized"], list(dp["answers"]["raw"].keys())) for dp in rows]
    train_lines, test_lines = crossfit_holdout(lines)
    assert [(r["input"], r["references"]) for r in prepared.rows("test")] == test_lines
    assert manifest["sizes"] == {"train": 14, "dev": 2, "test": 4}
    got = [(r["input"], r["references"], r["target"]) for r in prepared.rows("train") + prepared.rows("dev")]
    assert sorted((i, refs) for i, refs, _ in got) == sorted(train_lines)
    assert all(target == refs[0] for _, refs, target in got)  # the first key trains


def test_extract_needs_a_matching_example():
    from deltaspace.data.registry import _parse_template

    with pytest.raises(RegistryError, match="does not match its example"):
        _parse_template({"input": "{x}", "target": "{x}", "extract": {"field": "q", "pattern": "(?P<x>a+)b",
                                                                      "example": "ccc"}}, "generation", "w")
    with pytest.raises(RegistryError, match="named group"):
        _parse_template({"input": "{x}", "target": "{x}", "extract": {"field": "q", "pattern": "a+", "example": "a"}},
                        "generation", "w")


# --------------------------------------------------------------------------- no crossfit-only task in full configs


def full_config_tasks(name: str) -> list[str]:
    from deltaspace.plan import Plan

    config = yaml.safe_load((ROOT / "config" / "paper" / f"{name}.yaml").read_text())
    assert config["data"]["setting"] == "full"
    return sorted({job.wildcards["task"] for job in Plan(config, root=ROOT).jobs() if job.rule == "prepare"})


@pytest.mark.parametrize("config", FULL_CONFIGS)
def test_every_task_of_a_full_data_config_has_a_full_data_source(config):
    missing = {}
    for name in full_config_tasks(config):
        spec = REGISTRY.get(name)
        source = spec.source_of_type(None)
        if source.type == "crossfit_tsv":
            missing[name] = spec.notes
    unexplained = sorted(set(missing) - set(NOT_COVERED))
    assert not unexplained, (f"{config}: tasks whose only source is CrossFit's few-shot TSV files cannot prepare full "
                             f"data: {unexplained}; give them a hub template (docs/data.md)")
    for name, notes in missing.items():
        assert "no full-data source" in notes, f"{name}: its registry notes should say why it has no full-data source"


def test_not_covered_list_is_current():
    """A task given a full-data source must leave NOT_COVERED (and the docs' list)."""
    for name in NOT_COVERED:
        assert REGISTRY.get(name).source_of_type(None).type == "crossfit_tsv", f"{name} has a full-data source now"
    used = {t for c in FULL_CONFIGS for t in full_config_tasks(c)}
    assert set(NOT_COVERED) <= used


def test_the_full_setting_still_refuses_crossfit_tsv():
    with pytest.raises(Exception, match="CrossFit TSV files are few-shot samples"):
        prepare_task("wiki_bio", "/nonexistent", seed=1, backbone="tiny-t5",
                     options=PrepareOptions(setting="full", source="crossfit_tsv"), tokenizer=ByT5Tokenizer(),
                     registry=REGISTRY)


# --------------------------------------------------------------------------- the template extensions


def test_shuffle_and_filters_validate():
    from deltaspace.data.registry import _parse_source, _parse_template

    with pytest.raises(RegistryError, match="coin"):
        _parse_template({"input": "{shuffled.0}", "label": "shuffled_gold",
                         "shuffle": {"fields": ["a", "b", "c"], "seed": 1, "draw": "coin"}}, "classification", "x")
    with pytest.raises(RegistryError, match="seed"):
        _parse_template({"input": "x", "target": "y", "shuffle": {"fields": ["a", "b"]}}, "generation", "x")
    with pytest.raises(RegistryError, match="label_vote"):
        _parse_source({"type": "hub", "id": "x", "label_vote": "mean"}, "x")
    with pytest.raises(RegistryError, match="label_bins"):
        _parse_source({"type": "hub", "id": "x", "label_bins": [{"under": 1, "label": "a"}]}, "x")


def test_format_filters_and_list_index():
    from deltaspace.data.prepare import _FORMATTER

    record = {"tokens": ["a", "b", "c"], "name": "Open BSD", "pair": ["x", "y"], "nested": [["a", " b"], ["c"]]}
    assert _FORMATTER.format("{tokens:join}|{name:nospace|lower}|{pair.1}|{tokens}", **record) == "a b c|openbsd|y|a, b, c"
    assert _FORMATTER.format("{nested:concat|join}/{tokens:concat}", **record) == "a b c/abc"
    from deltaspace.data.prepare import LIST_FILTERS

    assert LIST_FILTERS["keys"]({"b": 1, "a": 2}) == ["b", "a"]
    assert LIST_FILTERS["sorted_set"]([["b", "a"], ["a"]]) == ["a", "b"] == LIST_FILTERS["flatten"]([["a"], [["b"]]])


def test_cli_prepare_full_blimp(tmp_path, monkeypatch, capsys):
    """The command of issue 12 item 3, through the patched hub: BLiMP's 1000 pairs give CrossFit's
    800/200 carve, and the full setting takes 240 dev and the remaining 560 for train."""
    from deltaspace.cli import main

    monkeypatch.setattr(datasets, "load_dataset",
                        Hub("nyu-mll/blimp", "anaphor_number_agreement", BLIMP_FEATURES, {"train": blimp_rows(1000)}))
    argv = ["prepare", "--task", "blimp-anaphor_number_agreement", "--seed", "100", "--setting", "full",
            "--backbone", "tiny-t5", "--out", str(tmp_path / "x")]
    assert main(argv) == 0
    assert load_prepared(tmp_path / "x").manifest["sizes"] == {"train": 560, "dev": 240, "test": 200}
