"""The masked-LM heads (--head mlm / mlm-template): the survey's prompt-based classification over
label words (LM-BFF; Tables 4-7), on T5 through the sentinel (Table 6), task prompts in the
registry, their rendering at preparation, and LM-BFF's few-shot STS-B (16 per side of 2.5)."""

import json
import math

import pandas as pd
import pytest
import torch

from deltaspace.backbones import load_backbone, load_tokenizer
from deltaspace.cli import main
from deltaspace.data.prepare import PrepareOptions, prepare_task
from deltaspace.data.registry import RegistryError, load_registry
from deltaspace.deltas import build_delta
from deltaspace.heads import MLMHead, SentinelHead, label_word_ids, make_head
from deltaspace.train.batching import collate

SURVEY_GLUE = ["glue-cola", "glue-sst2", "glue-mrpc", "glue-stsb", "glue-qqp", "glue-mnli", "glue-qnli", "glue-rte"]

TOY_REGISTRY = """\
tasks:
  toy-sentiment:
    ontology: cls/sentiment analysis
    kind: classification
    metric: accuracy
    verbalizers: [negative, positive]
    source: {type: jsonl, train: sentiment.jsonl, holdout: 0.25}
    template: {input: 'review: {text}', label: label}
    prompt: {template: '{text} It was {mask} .', label_words: {negative: bad, positive: good}}
  toy-sts:
    ontology: cls/paraphrase
    kind: regression
    metric: pearson
    source: {type: jsonl, train: sts.jsonl, holdout: 0.25}
    template: {input: '{text}', target: '{score:.1f}'}
    prompt: {template: '{text} {mask} !', label_words: {low: 'n', high: 'y'}, range: [0, 5]}
"""

WORDS = ["great", "lovely", "fine", "dull", "bad", "awful"]


@pytest.fixture
def toy_registry(tmp_path):
    # Every text distinct (the take number): prepare refuses a test row that repeats a train or dev row.
    rows = [{"text": f"the film was {WORDS[i % 6]}, take {i}", "label": int(i % 6 < 3)} for i in range(48)]
    (tmp_path / "sentiment.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    sts = [{"text": f"the film was {WORDS[i % 6]}, take {i}", "score": 5.0 - (i % 6)} for i in range(48)]
    (tmp_path / "sts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sts))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "toy.yaml").write_text(TOY_REGISTRY)
    return load_registry(tmp_path / "tasks")


def prepare(task, tmp_path, registry, backbone="tiny-bert"):
    out = tmp_path / task / backbone
    prepare_task(task, out, seed=1, backbone=backbone, registry=registry,
                 options=PrepareOptions(setting="full", data_dir=str(tmp_path), max_dev=12, max_input_length=64))
    return out


def train(data, out, head, steps=12, method="lora", sets=("r=4",), backbone="tiny-bert"):
    return main(["train", "--data", str(data), "--method", method, "--backbone", backbone, "--lr", "0.05",
                 "--batch-size", "4", "--eval-every", "4", "--checkpoint-every", "4", "--seed", "7",
                 *(a for kv in sets for a in ("--set", kv)),
                 "--out", str(out), "--no-progress", "--head", head, "--steps", str(steps)])


def soft_prompt_batch(data, backbone):
    """A 3-token soft prompt on ``backbone`` with the template head, and 4 test rows as its batch."""
    bb = load_backbone(backbone, mlm_head=True)
    delta = build_delta("prompt", bb, n=3)
    manifest = json.loads((data / "manifest.json").read_text())
    head = make_head(bb, delta, manifest["verbalizers"], head="mlm-template", prompt=manifest["prompt"],
                     max_length=64)
    rows = head.encode_rows(pd.read_parquet(data / "test.parquet").to_dict("records")[:4])
    return bb, delta, head, collate(rows, bb.tokenizer.pad_token_id, bb.kind)


def test_glue_prompts_are_table4():
    registry = load_registry()
    for name in SURVEY_GLUE:
        assert registry.get(name).prompt is not None, name
    sst2, mnli, stsb = (registry.get(t).prompt for t in ("glue-sst2", "glue-mnli", "glue-stsb"))
    assert sst2.template == "{sentence} It was {mask} ." and dict(sst2.label_words) == {"positive": "great",
                                                                                        "negative": "terrible"}
    assert dict(mnli.label_words) == {"entailment": "Yes", "neutral": "Maybe", "contradiction": "No"}
    assert stsb.range == (0.0, 5.0) and dict(stsb.label_words) == {"high": "Yes", "low": "No"}


@pytest.mark.parametrize("prompt, message", [
    ("{template: '{text} It was .', label_words: {negative: bad, positive: good}}", "exactly once"),
    ("{template: '{text} {mask}', label_words: {negative: bad}}", "exactly the keys ['negative', 'positive']"),
    ("{template: '{text} {mask}', label_words: {negative: bad, positive: bad}}", "repeat a word"),
    ("{template: '{text} {mask}', label_words: {negative: bad, positive: good}, range: [0, 1]}", "for regression"),
    ("{template: '{text} {mask}', words: {negative: bad, positive: good}}", "label_words"),
])
def test_bad_prompts_name_the_problem(tmp_path, prompt, message):
    (tmp_path / "t.yaml").write_text(TOY_REGISTRY.split("  toy-sts:")[0].replace(
        "prompt: {template: '{text} It was {mask} .', label_words: {negative: bad, positive: good}}",
        f"prompt: {prompt}"))
    with pytest.raises(RegistryError, match="prompt") as err:
        load_registry(tmp_path)
    assert message in str(err.value) and "t.yaml" in str(err.value)


def test_regression_prompt_needs_its_range(tmp_path):
    (tmp_path / "t.yaml").write_text("tasks:\n  toy-sts:" + TOY_REGISTRY.split("  toy-sts:")[1].replace(
        ", range: [0, 5]", ""))
    with pytest.raises(RegistryError, match=r"range: \[low, high\]"):
        load_registry(tmp_path)


def test_preparation_renders_the_prompt_and_the_manifest_carries_it(tmp_path, toy_registry):
    data = prepare("toy-sentiment", tmp_path, toy_registry)
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["prompt"] == {"template": "{text} It was {mask} .",
                                  "label_words": {"negative": "bad", "positive": "good"}, "range": None}
    train_rows = pd.read_parquet(data / "train.parquet")
    assert (train_rows.prompt == train_rows.input.str.removeprefix("review: ") + " It was {mask} .").all()


def test_encoding_puts_one_mask_and_truncation_keeps_the_template_words():
    bb = load_backbone("minilm", mlm_head=True)  # a real WordPiece tokenizer, offline
    head = MLMHead(bb, build_delta("lora", bb, r=2), ["negative", "positive"], regression=False, template=True,
                   prompt={"label_words": {"negative": "bad", "positive": "good"}}, max_length=12)
    tok = bb.tokenizer
    long = " ".join(["word"] * 30)
    row = {"idx": 0, "input": long, "prompt": long + " It was {mask} ."}
    ids = head.encode_rows([row])[0]["input_ids"]
    # The longer side (the text before the mask) loses tokens at its start: the template stays whole.
    assert tok.convert_ids_to_tokens(ids) == ["[CLS]", *["word"] * 6, "it", "was", "[MASK]", ".", "[SEP]"]
    bare = MLMHead(bb, head.delta, ["negative", "positive"], regression=False, template=False, prompt=None,
                   max_length=12).encode_rows([row])[0]["input_ids"]
    assert tok.convert_ids_to_tokens(bare)[-3:] == ["[SEP]", "[MASK]", "[SEP]"] and len(bare) == 12
    assert label_word_ids(tok, ["bad", "good"]) == tok.convert_tokens_to_ids(["bad", "good"])
    with pytest.raises(ValueError, match="needs one {mask}"):
        head.encode_rows([{"idx": 3, "input": "x", "prompt": ""}])


def test_the_mlm_head_is_frozen_and_outside_theta():
    bb = load_backbone("tiny-bert", mlm_head=True)
    delta = build_delta("finetune", bb)
    head = make_head(bb, delta, ["negative", "positive"], head="mlm", prompt=None, max_length=32)
    assert not any(p.requires_grad for p in head.module.parameters())
    # Untied: fine-tuning's word embeddings (in θ) are not the decoder's weight.
    embeddings = bb.model.get_input_embeddings().weight
    assert all(p is not embeddings for p in head.module.parameters())
    assert any(torch.equal(p, embeddings) for p in head.module.parameters())
    assert not any(s.name.startswith(("cls.", "lm_head.")) for s in delta.manifest)
    with pytest.raises(ValueError, match="without its masked-LM head"):
        make_head(load_backbone("tiny-bert"), delta, ["a", "b"], head="mlm", prompt=None, max_length=32)
    with pytest.raises(ValueError, match="needs the task's prompt template"):
        make_head(bb, delta, ["a", "b"], head="mlm-template", prompt=None, max_length=32)


@pytest.mark.parametrize("head", ["mlm", "mlm-template"])
def test_classification_trains_through_the_label_words(tmp_path, toy_registry, head):
    data = prepare("toy-sentiment", tmp_path, toy_registry)
    out = tmp_path / f"run-{head}"
    assert train(data, out, head) == 0
    row = pd.read_parquet(out / "result.parquet").iloc[0]
    assert row["head"] == head and 0 <= row.test_metric <= 100
    curve = pd.read_parquet(out / "curve.parquet")
    assert curve.loss.iloc[-1] < curve.loss.iloc[0]
    # --steps 0 scores the pretrained head on the bare backbone: the combination tables' zero-shot column.
    assert train(data, tmp_path / f"zero-{head}", head, steps=0) == 0
    zero = pd.read_parquet(tmp_path / f"zero-{head}" / "result.parquet").iloc[0]
    assert zero.best_step == 0 and 0 <= zero.test_metric <= 100


def test_soft_prompt_slots_are_skipped_when_finding_the_mask(tmp_path, toy_registry):
    """The survey's P+B+A composite: soft-prompt tokens go in front of the input, so the [MASK]
    position is counted from the input's own tokens."""
    data = prepare("toy-sentiment", tmp_path, toy_registry)
    out = tmp_path / "pba"
    assert train(data, out, "mlm-template", steps=8, method="prompt+bitfit+adapter",
                 sets=("prompt.n=3", "adapter.r=4")) == 0
    curve = pd.read_parquet(out / "curve.parquet")
    assert curve.loss.notna().all() and curve.loss.iloc[-1] < curve.loss.iloc[0]

    bb, delta, head, batch = soft_prompt_batch(data, "tiny-bert")
    theta = delta.init(0)
    with delta.bound(theta):
        logits = head.logits(batch)
        inputs = delta.prepare_inputs({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})
        hidden = bb.model(**inputs).last_hidden_state
    at = (batch["input_ids"] == head.mask_id).int().argmax(-1)
    expected = head.module(hidden[torch.arange(4), 3 + at])[:, head.word_ids]
    assert torch.allclose(logits, expected, atol=1e-5)


def test_regression_interpolates_between_the_two_words(tmp_path, toy_registry):
    data = prepare("toy-sts", tmp_path, toy_registry)
    out = tmp_path / "run"
    assert train(data, out, "mlm-template", steps=16) == 0
    row = pd.read_parquet(out / "result.parquet").iloc[0]
    assert row.metric == "pearson" and not math.isnan(row.test_metric)
    curve = pd.read_parquet(out / "curve.parquet")
    assert curve.loss.iloc[-1] < curve.loss.iloc[0]

    bb = load_backbone("tiny-bert", mlm_head=True)
    manifest = json.loads((data / "manifest.json").read_text())
    head = make_head(bb, build_delta("lora", bb, r=2), None, head="mlm-template", regression=True,
                     prompt=manifest["prompt"], max_length=64)
    rows = head.encode_rows(pd.read_parquet(data / "test.parquet").to_dict("records"))
    batch = collate(rows, load_tokenizer("tiny-bert").pad_token_id, "encoder", regression=True)
    predictions = [float(p) for p in head.predict(batch)]
    assert all(0 <= p <= 5 for p in predictions)
    # The loss is the cross-entropy against (1 - s/5, s/5): minimal where p(high) = s/5.
    logits = head.logits(batch).float()
    share = batch["score"] / 5
    expected = -(share * logits.log_softmax(-1)[:, 1] + (1 - share) * logits.log_softmax(-1)[:, 0]).mean()
    assert torch.allclose(head.loss(batch), expected)


def test_few_shot_regression_samples_k_per_side_of_its_threshold(tmp_path, toy_registry):
    (tmp_path / "few-shot-tasks").mkdir()
    (tmp_path / "few-shot-tasks" / "toy.yaml").write_text(TOY_REGISTRY.replace(
        "    kind: regression\n", "    kind: regression\n    k: per_class\n    pseudo_classes_at: 2.5\n"))
    registry = load_registry(tmp_path / "few-shot-tasks")
    assert registry.get("toy-sts").pseudo_classes_at == 2.5 and load_registry().get("glue-stsb").pseudo_classes_at == 2.5
    out = tmp_path / "few"
    prepare_task("toy-sts", out, seed=3, backbone="tiny-bert", registry=registry,
                 options=PrepareOptions(setting="fewshot", k=4, data_dir=str(tmp_path)))
    for split in ("train", "dev"):
        scores = pd.read_parquet(out / f"{split}.parquet").target.map(float)
        assert (scores < 2.5).sum() == 4 and (scores >= 2.5).sum() == 4
    assert set(pd.read_parquet(out / "train.parquet").idx).isdisjoint(pd.read_parquet(out / "dev.parquet").idx)


@pytest.mark.parametrize("edit, message", [
    (("    kind: regression\n", "    kind: regression\n    k: per_class\n"), "only with `pseudo_classes_at`"),
    (("    kind: classification\n", "    kind: classification\n    pseudo_classes_at: 2.5\n"), "for regression tasks"),
])
def test_pseudo_classes_need_a_regression_task(tmp_path, edit, message):
    (tmp_path / "t.yaml").write_text(TOY_REGISTRY.replace(*edit))
    with pytest.raises(RegistryError, match=message):
        load_registry(tmp_path)


# --- T5: the sentinel stands for the mask (survey Table 6, notes A19) --------------------------------


def test_t5_puts_the_sentinel_where_the_mask_was(tmp_path, toy_registry):
    data = prepare("toy-sentiment", tmp_path, toy_registry, backbone="tiny-t5")
    manifest = json.loads((data / "manifest.json").read_text())
    bb = load_backbone("tiny-t5", mlm_head=True)
    assert bb.mlm_head is None  # the seq2seq model's own LM head scores the words
    delta = build_delta("lora", bb, r=2)
    head = make_head(bb, delta, manifest["verbalizers"], head="mlm-template", prompt=manifest["prompt"],
                     max_length=64)
    assert isinstance(head, SentinelHead) and bb.tokenizer.convert_ids_to_tokens(head.mask_id) == "<extra_id_0>"
    row = pd.read_parquet(data / "test.parquet").to_dict("records")[0]
    tok = bb.tokenizer
    templated = head.encode_rows([row])[0]["input_ids"]
    before = row["prompt"].split("{mask}")[0].rstrip()
    assert templated == tok(before, add_special_tokens=False)["input_ids"] + [head.mask_id] + \
        tok(" .", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    bare = make_head(bb, delta, manifest["verbalizers"], head="mlm", prompt=manifest["prompt"], max_length=64)
    assert bare.encode_rows([row])[0]["input_ids"] == \
        tok(row["input"], add_special_tokens=False)["input_ids"] + [head.mask_id, tok.eos_token_id]  # x <extra_id_0>


def test_t5_scores_the_label_words_as_the_decoders_first_token_after_the_sentinel(tmp_path, toy_registry):
    data = prepare("toy-sentiment", tmp_path, toy_registry, backbone="tiny-t5")
    bb, delta, head, batch = soft_prompt_batch(data, "tiny-t5")
    theta = delta.init(0)
    with delta.bound(theta):
        logits = head.logits(batch)
        inputs = delta.prepare_inputs({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})
        decoder = torch.tensor([[bb.model.config.decoder_start_token_id, head.mask_id]] * 4)
        full = bb.model(**inputs, decoder_input_ids=decoder).logits[:, 1]
    words = label_word_ids(bb.tokenizer, ["bad", "good"])
    assert torch.allclose(logits, full[:, words], atol=1e-5)
    with delta.bound(theta):
        assert torch.allclose(head.loss(batch), torch.nn.functional.cross_entropy(logits, batch["label"]), atol=1e-5)
    assert set(head.predict(batch)) <= {"negative", "positive"}


@pytest.mark.parametrize("task, head, metric", [("toy-sentiment", "mlm-template", "accuracy"),
                                                ("toy-sentiment", "mlm", "accuracy"),
                                                ("toy-sts", "mlm-template", "pearson")])
def test_t5_trains_through_the_label_words(tmp_path, toy_registry, task, head, metric):
    data = prepare(task, tmp_path, toy_registry, backbone="tiny-t5")
    out = tmp_path / "run"
    assert train(data, out, head, steps=16, backbone="tiny-t5") == 0
    row = pd.read_parquet(out / "result.parquet").iloc[0]
    assert row["head"] == head and row.metric == metric and not math.isnan(row.test_metric)
    curve = pd.read_parquet(out / "curve.parquet")
    assert curve.loss.iloc[-1] < curve.loss.iloc[0]


def test_decoders_have_no_masked_lm_head():
    with pytest.raises(ValueError, match="encoder and seq2seq"):
        load_backbone("tiny-llama", mlm_head=True)
    bb = load_backbone("tiny-llama")
    with pytest.raises(ValueError, match="likelihood"):
        make_head(bb, build_delta("lora", bb, r=2), ["a", "b"], head="mlm", prompt=None, max_length=32)
