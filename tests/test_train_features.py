"""Training features for the survey and decomposition experiments: composite methods, --epochs,
--patience, the trainable classifier head (and regression), --init-from, --record."""

import json
import math

import pandas as pd
import pytest
import torch

from conftest import ConstantStream, toy_batch, write_prepared
from deltaspace.backbones import load_backbone
from deltaspace.cli import main
from deltaspace.deltas import DeltaOptionError, UnknownMethodError, build_delta, delta_size
from deltaspace.heads import make_head
from deltaspace.train.loop import LoopConfig, run_loop


def train(data, out, *extra, backbone="tiny-bert", method="lora", steps=8, lr="0.05"):
    argv = ["train", "--data", str(data), "--method", method, "--backbone", backbone, "--lr", lr,
            "--batch-size", "4", "--eval-every", "2", "--checkpoint-every", "2", "--seed", "7",
            "--out", str(out), "--no-progress", *extra]
    if steps is not None:
        argv += ["--steps", str(steps)]
    return main(argv)


def result(out):
    return pd.read_parquet(out / "result.parquet").iloc[0]


def theta_of(out):
    from deltaspace.train.stage0 import load_theta

    return load_theta(out)


@pytest.fixture
def toy(tmp_path):
    return write_prepared(tmp_path / "data", "tiny-bert")


# ---------------------------------------------------------------- composite methods


def test_composite_size_is_the_sum_of_its_parts_and_slices_match_standalone_inits():
    assert delta_size("prompt+bitfit", "t5-base", **{"prompt.n": 10}) == \
        delta_size("prompt", "t5-base", n=10) + delta_size("bitfit", "t5-base")
    # Install order does not follow the name: LoRA on every Linear, installed first, would hide them
    # from the adapter, and BitFit, installed last, would give the adapter's Linears biases.
    assert delta_size("lora+adapter+bitfit", "tiny-t5", **{"lora.targets": "all"}) == \
        delta_size("lora", "tiny-t5", targets="all") + delta_size("adapter", "tiny-t5") \
        + delta_size("bitfit", "tiny-t5")
    bb = load_backbone("tiny-bert")
    delta = build_delta("prompt+bitfit+adapter", bb, **{"prompt.n": 10, "adapter.r": 24})
    names = [s.name for s in delta.manifest]
    assert names == sorted(names) and delta.options["prompt.n"] == 10 and delta.options["adapter.r"] == 24
    theta = delta.init(3)
    for name, options in (("prompt", {"n": 10}), ("bitfit", {}), ("adapter", {"r": 24})):
        alone = build_delta(name, load_backbone("tiny-bert"), **options)
        mine = [s for s in delta.manifest if delta.method.component_of(s.name).name == name]
        assert [s.name for s in mine] == [s.name for s in alone.manifest]
        # each component initializes its tensors exactly as the standalone method would
        assert torch.equal(torch.cat([theta[s.offset:s.offset + s.numel] for s in mine]), alone.init(3))
    assert delta.method.component_sizes(delta.manifest) == {
        "prompt": 10 * 64, "bitfit": delta_size("bitfit", "tiny-bert"), "adapter": delta_size("adapter", "tiny-bert",
                                                                                            r=24)}


def test_composite_option_and_name_errors_list_the_valid_ones():
    with pytest.raises(DeltaOptionError, match=r"option 'n' must be written component.key; valid options: prompt.n"):
        delta_size("prompt+bitfit", "tiny-t5", n=4)
    with pytest.raises(DeltaOptionError, match=r"takes no option 'adapter.rank'; valid options: prompt.n, adapter.r"):
        delta_size("prompt+adapter", "tiny-t5", **{"adapter.rank": 4})
    with pytest.raises(DeltaOptionError, match=r"takes no option 'lora.r'"):
        delta_size("prompt+adapter", "tiny-t5", **{"lora.r": 4})
    with pytest.raises(UnknownMethodError, match=r"names component 'prompt' twice.*Valid components: adapter"):
        delta_size("prompt+bitfit+prompt", "tiny-t5")
    with pytest.raises(UnknownMethodError, match=r"'prompt\+bitfix'.*Did you mean bitfit.*Valid methods: adapter"):
        delta_size("prompt+bitfix", "tiny-t5")
    with pytest.raises(DeltaOptionError, match="both tune"):  # two peft injections claim the same tensors
        delta_size("lora+adalora", "tiny-bert")


@pytest.mark.parametrize("backbone", ["tiny-bert", "tiny-t5"])
def test_composite_zero_init_parts_leave_outputs_unchanged(backbone):
    """bitfit, adapter and lora start as the identity: adding them to prompt changes nothing."""

    def loss(method, options):
        bb = load_backbone(backbone, seed=1)
        delta = build_delta(method, bb, **options)
        head = make_head(bb, delta, ["yes", "no"] if bb.kind == "encoder" else None)
        with torch.no_grad(), delta.bound(delta.init(5)):
            return head.loss(toy_batch(bb))

    reference = loss("prompt", {"n": 4})
    combined = loss("prompt+bitfit+adapter+lora", {"prompt.n": 4, "adapter.r": 4, "lora.r": 4})
    assert torch.allclose(combined, reference, atol=1e-6)
    assert not torch.allclose(loss("prompt", {"n": 6}), reference)  # the comparison can fail


def test_composite_penalty_sums_and_kv_cache_is_the_and(monkeypatch):
    from deltaspace.deltas.adapter import Adapter
    from deltaspace.deltas.prompt import Prompt

    bb = load_backbone("tiny-bert")
    delta = build_delta("lora-mpco+adapter", bb, **{"lora-mpco.r": 4, "adapter.r": 4})
    alone = build_delta("lora-mpco", load_backbone("tiny-bert"), r=4)
    theta = torch.randn(delta.size, generator=torch.Generator().manual_seed(0))
    by_name = {s.name: theta[s.offset:s.offset + s.numel] for s in delta.manifest}
    theta_alone = torch.cat([by_name[s.name].reshape(-1) for s in alone.manifest])
    assert torch.allclose(delta.penalty(theta), alone.penalty(theta_alone))
    # a second regularized component adds its own term, computed on its own tensors only
    monkeypatch.setattr(Adapter, "penalty", lambda self, views: sum(v.pow(2).sum() for v in views.values()))
    adapter_part = sum(v.pow(2).sum() for n, v in by_name.items() if "deltaspace_adapter" in n)
    assert torch.allclose(delta.penalty(theta), alone.penalty(theta_alone) + adapter_part)
    assert build_delta("prompt+bitfit", load_backbone("tiny-t5")).method.supports_kv_cache
    monkeypatch.setattr(Prompt, "supports_kv_cache", False)
    assert not build_delta("prompt+bitfit", load_backbone("tiny-t5")).method.supports_kv_cache


@pytest.mark.parametrize("backbone", ["tiny-bert", "tiny-t5"])
def test_composite_trains_from_the_cli(backbone, tmp_path, capsys):
    data = write_prepared(tmp_path / "data", backbone)
    out = tmp_path / "run"
    method = "prompt+bitfit+adapter"
    assert train(data, out, "--set", "prompt.n=4", "--set", "adapter.r=4", backbone=backbone, method=method,
                 steps=4) == 0
    row = result(out)
    theta, meta = theta_of(out)
    expected = delta_size("prompt", backbone, n=4) + delta_size("bitfit", backbone) + delta_size("adapter", backbone,
                                                                                                   r=4)
    assert row.method == method and row["size"] == expected == theta.numel() and meta["options"]["prompt.n"] == 4
    start = build_delta(method, load_backbone(backbone), **{"prompt.n": 4, "adapter.r": 4}).init(7)
    assert not torch.equal(theta, start)  # it trained
    assert train(data, tmp_path / "bad", "--set", "n=4", backbone=backbone, method=method, steps=2) == 2
    err = capsys.readouterr().err
    valid = err.split("valid options: ", 1)[1].strip().split(", ")
    assert "must be written component.key" in err and {"prompt.n", "bitfit.mlm_head", "adapter.r"} <= set(valid)
    assert main(["describe", "--backbone", backbone, "--method", method, "--set", "prompt.n=4", "--set",
                 "adapter.r=4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)[0]
    assert report["size"] == expected == sum(report["components"].values())


# ---------------------------------------------------------------- --epochs


def test_epochs_set_the_steps_from_the_prepared_data(toy, tmp_path, capsys):
    out = tmp_path / "e"
    # 16 train rows, batch 4, 1.5 epochs: ceil(1.5 * 16 / 4) = 6 steps
    assert train(toy, out, "--epochs", "1.5", "--set", "r=4", steps=None) == 0
    row = result(out)
    assert row.steps == 6 == row.steps_run and row.epochs == 1.5
    assert list(pd.read_parquet(out / "curve.parquet").step) == [2, 4, 6]
    assert train(toy, tmp_path / "x", "--epochs", "2", "--set", "r=4", steps=12) == 2
    assert "--epochs 2 and --steps 12 both set the training length" in capsys.readouterr().err


# ---------------------------------------------------------------- --patience


class _Scripted:
    """An objective whose dev scores follow a script."""

    def __init__(self, scores):
        self.w, self.scores, self.calls = torch.nn.Parameter(torch.ones(1)), scores, 0

    def param_groups(self, lr):
        return [{"params": [self.w], "lr": lr}]

    def loss(self, batch):
        return (self.w ** 2).sum()

    def evaluate(self, step):
        self.calls += 1
        return self.scores[self.calls - 1]

    def snapshot(self):
        return {"w": self.w.detach().clone()}

    def state_dict(self):
        return {"w": self.w.detach().clone(), "calls": self.calls}

    def load_state_dict(self, state):
        self.w.data.copy_(state["w"])
        self.calls = state["calls"]


def test_patience_counts_evaluations_without_a_new_best(tmp_path):
    scores = [1.0, 2.0, 2.0, 3.0, 1.0, 3.0, 2.0, 9.0, 9.0]  # ties do not count as improvements
    cfg = LoopConfig(steps=9, lr=0.1, optimizer="adamw", eval_every=1, checkpoint_every=100, patience=3)
    outcome = run_loop(_Scripted(scores), ConstantStream(), cfg, tmp_path / "a", progress=False)
    assert outcome.stopped_early and outcome.last_step == 7 and [c["step"] for c in outcome.curve] == list(range(1, 8))
    assert outcome.best_step == 4 and outcome.best_dev == 3.0
    unlimited = run_loop(_Scripted(scores), ConstantStream(), LoopConfig(**{**cfg.record(), "patience": None}),
                         tmp_path / "b", progress=False)
    assert not unlimited.stopped_early and unlimited.last_step == 9 and unlimited.best_dev == 9.0
    with pytest.raises(ValueError, match="patience must be at least 1"):
        LoopConfig(patience=0)


def test_patience_triggers_records_and_survives_resume(toy, tmp_path):
    # lr 0: θ never moves, so dev never beats the first evaluation and patience 2 stops at step 6.
    args = ("--patience", "2", "--set", "r=4")
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert train(toy, whole, *args, steps=40, lr="0") == 0
    row = result(whole)
    assert row.stopped_early and row.steps_run == 6 and row.patience == 2 and row.steps == 40 and row.best_step == 2
    assert list(pd.read_parquet(whole / "curve.parquet").step) == [2, 4, 6]
    # Preempted after step 5 (one stale evaluation counted): the resumed run must stop at 6 too.
    assert train(toy, resumed, *args, "--stop-after-step", "5", steps=40, lr="0") == 143
    assert train(toy, resumed, *args, steps=40, lr="0") == 0
    cols = ["steps_run", "stopped_early", "best_step", "dev_metric", "test_metric", "config_hash"]
    assert result(resumed)[cols].tolist() == row[cols].tolist()
    pd.testing.assert_frame_equal(pd.read_parquet(whole / "curve.parquet")[["step", "loss", "dev_metric"]],
                                  pd.read_parquet(resumed / "curve.parquet")[["step", "loss", "dev_metric"]])
    plain = tmp_path / "plain"
    assert train(toy, plain, "--set", "r=4", steps=4) == 0
    assert not result(plain).stopped_early and result(plain).steps_run == 4


# ---------------------------------------------------------------- --head classifier and regression


def test_classifier_head_is_part_of_theta_and_trains(toy, tmp_path, capsys):
    out = tmp_path / "c"
    assert train(toy, out, "--head", "classifier", "--set", "r=4", steps=8) == 0
    row = result(out)
    theta, meta = theta_of(out)
    head_size = 64 * 64 + 64 + 2 * 64 + 2  # dense h×h + bias, out h×labels + bias (tiny-bert: h = 64)
    assert row.method == "lora+classifier" and row["head"] == "classifier"
    assert row["size"] == delta_size("lora", "tiny-bert", r=4) + head_size == theta.numel()
    assert meta["options"]["classifier.labels"] == 2 and meta["options"]["lora.r"] == 4
    out_weight = next(s for s in meta["manifest"] if s["name"] == "deltaspace_classifier.out.weight")
    assert out_weight["shape"] == [2, 64]
    start = out_weight["offset"]
    assert theta[start:start + 128].abs().sum() > 0  # out-proj starts at zero and has trained
    assert train(write_prepared(tmp_path / "t5", "tiny-t5"), tmp_path / "x", "--head", "classifier",
                 backbone="tiny-t5", steps=2) == 2
    assert "--head classifier runs on encoder backbones; 'tiny-t5' is seq2seq" in capsys.readouterr().err
    assert train(toy, tmp_path / "y", "--set", "lora.r=4", method="lora+classifier", steps=2) == 2
    assert "only --head classifier reads" in capsys.readouterr().err


def test_fresh_classifier_outputs_zero():
    bb = load_backbone("tiny-bert")
    delta = build_delta("classifier", bb, labels=3)
    head = make_head(bb, delta, ["a", "b", "c"], head="classifier")
    with torch.no_grad(), delta.bound(delta.init(0)):
        assert torch.equal(head.logits(toy_batch(bb)), torch.zeros(2, 3))


REGRESSION_REGISTRY = """\
tasks:
  toy-sts:
    ontology: cls/paraphrase
    kind: regression
    metric: pearson
    source: {type: jsonl, train: sts.jsonl, holdout: 0.25}
    template: {input: 'the film was {word}', target: '{score:.2f}'}
"""


def test_regression_on_an_encoder_with_the_classifier_head(tmp_path, capsys):
    from deltaspace.data.prepare import PrepareOptions, prepare_task
    from deltaspace.data.registry import load_registry

    words = ["great", "lovely", "fine", "dull", "bad", "awful"]
    # Every (input, target) distinct: prepare refuses a test row that repeats a train or dev row.
    rows = [{"word": words[i % 6], "score": 4.5 - 0.8 * (i % 6) + 0.01 * i} for i in range(48)]
    (tmp_path / "sts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "toy.yaml").write_text(REGRESSION_REGISTRY)
    data = tmp_path / "data"
    manifest = prepare_task("toy-sts", data, seed=1, backbone="tiny-bert", registry=load_registry(tmp_path / "tasks"),
                            options=PrepareOptions(setting="full", data_dir=str(tmp_path), max_dev=12))
    assert manifest["kind"] == "regression" and not manifest["verbalizers"]
    train_rows = pd.read_parquet(data / "train.parquet")
    assert (train_rows.label == -1).all() and train_rows.target.map(float).between(0, 5).all()

    out = tmp_path / "run"
    assert train(data, out, "--head", "classifier", "--set", "r=4", "--set", "classifier.dropout=0",
                 steps=16, lr="0.02") == 0
    row = result(out)
    theta, meta = theta_of(out)
    assert meta["options"]["classifier.labels"] == 1 and row.metric == "pearson"
    assert -100 <= row.dev_metric <= 100 and not math.isnan(row.test_metric)
    curve = pd.read_parquet(out / "curve.parquet")
    assert curve.loss.iloc[-1] < 0.5 * curve.loss.iloc[0]  # MSE falls as the head fits the scores

    assert train(data, tmp_path / "label", "--set", "r=4", steps=2) == 2
    assert "needs a trainable output: use --head classifier" in capsys.readouterr().err


# ---------------------------------------------------------------- --init-from (sequential combination)


def test_init_from_takes_the_best_run_and_freezes_its_slices(toy, tmp_path, capsys):
    runs = []
    for lr in ("0", "0.3"):  # a stage-0 LR grid for prompt alone
        runs.append(tmp_path / f"prompt-{lr}")
        assert train(toy, runs[-1], "--set", "n=4", method="prompt", steps=4, lr=lr) == 0
    best = max(runs, key=lambda r: (result(r).dev_metric, -runs.index(r)))
    out = tmp_path / "stage1"
    assert train(toy, out, "--init-from", *map(str, runs), "--set", "prompt.n=4", "--optimizer", "adamw",
                 "--weight-decay", "0.5", method="prompt+bitfit", steps=6) == 0
    assert result(out).init_from == str(best)
    earlier, _ = theta_of(best)
    theta, meta = theta_of(out)
    start = build_delta("prompt+bitfit", load_backbone("tiny-bert"), **{"prompt.n": 4}).init(7)
    prompt = next(s for s in meta["manifest"] if s["name"] == "deltaspace_prompt.weight")
    frozen = torch.zeros(theta.numel(), dtype=torch.bool)
    frozen[prompt["offset"]:prompt["offset"] + 4 * 64] = True
    assert torch.equal(theta[frozen], earlier)  # copied and frozen: bit-identical, weight decay 0.5 or not
    assert not torch.equal(theta[~frozen], start[~frozen])  # the bitfit slices trained
    assert train(toy, tmp_path / "none", "--init-from", str(runs[0]), "--set", "r=4", method="lora", steps=2) == 2
    assert "none of its θ slices" in capsys.readouterr().err
    assert train(toy, tmp_path / "shape", "--init-from", str(runs[0]), "--set", "prompt.n=5",
                 method="prompt+bitfit", steps=2) == 2
    assert "θ slice 'deltaspace_prompt.weight' has shape [4, 64]" in capsys.readouterr().err
    assert train(toy, tmp_path / "all", "--init-from", str(runs[0]), "--set", "n=4", method="prompt", steps=2) == 2
    assert "nothing would train" in capsys.readouterr().err


def test_frozen_objective_resumes_exactly(toy, tmp_path):
    base = tmp_path / "base"
    assert train(toy, base, "--set", "n=4", method="prompt", steps=2) == 0
    args = ("--init-from", str(base), "--set", "prompt.n=4")
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert train(toy, whole, *args, method="prompt+bitfit", steps=6) == 0
    assert train(toy, resumed, *args, "--stop-after-step", "3", method="prompt+bitfit", steps=6) == 143
    assert train(toy, resumed, *args, method="prompt+bitfit", steps=6) == 0
    assert torch.equal(theta_of(whole)[0], theta_of(resumed)[0])


# ---------------------------------------------------------------- --record


def test_record_adds_and_overrides_columns(toy, tmp_path, capsys):
    out = tmp_path / "r"
    assert train(toy, out, "--set", "r=4", "--record", "method=hlora", "--record", "rank=2", "--record",
                 "scale=0.5", "--record", "note=first try", steps=2) == 0
    row = result(out)
    assert row.method == "hlora" and row["rank"] == 2 and row.scale == 0.5 and row.note == "first try"
    df = pd.read_parquet(out / "result.parquet")
    assert df["rank"].dtype.kind == "i" and df["scale"].dtype.kind == "f"
    assert train(toy, tmp_path / "p", "--set", "r=4", "--record", "git_commit=abc", steps=2) == 2
    assert "'git_commit' is a provenance column and cannot be overridden" in capsys.readouterr().err


# ---------------------------------------------------------------- train metric (survey Table 7)


def test_train_eval_scores_a_fixed_sample_of_the_training_set(toy, tmp_path, capsys):
    from deltaspace.train.stage0 import train_sample

    rows = [{"i": i} for i in range(50)]
    sample = train_sample(rows, 10)
    assert len(sample) == 10 and sample == train_sample(rows, 10)  # the same rows every time, in order
    assert [r["i"] for r in sample] == sorted(r["i"] for r in sample) and sample != rows[:10]
    assert train_sample(rows[:5], 10) == rows[:5]

    out = tmp_path / "t"
    assert train(toy, out, "--set", "r=4", "--train-eval", "16", steps=6) == 0
    row = result(out)
    assert 0.0 <= row.train_metric <= 100.0
    # the whole toy training set (16 rows) scored with the saved θ gives the same number
    from deltaspace.heads import make_head
    from deltaspace.train.batching import load_task_data, split_rows
    from deltaspace.train.evaluate import evaluate_rows

    theta, meta = theta_of(out)
    bb = load_backbone("tiny-bert", seed=7)
    delta = build_delta("lora", bb, r=4)
    data = load_task_data(toy)
    again = evaluate_rows(delta, make_head(bb, delta, data.verbalizers), theta, split_rows(data, "train"),
                          data.metric, 32)
    assert again == pytest.approx(row.train_metric)
    assert train(toy, tmp_path / "plain", "--set", "r=4", steps=2) == 0
    assert "train_metric" not in pd.read_parquet(tmp_path / "plain" / "result.parquet").columns
    assert train(toy, tmp_path / "z", "--set", "r=4", "--train-eval", "0", steps=2) == 2
    assert "--train-eval must be at least 1" in capsys.readouterr().err


def test_zero_steps_scores_the_starting_point(toy, tmp_path):
    """--steps 0 is the survey's zero-shot column: a zero-init delta at step 0 is the bare backbone."""
    from deltaspace.heads import make_head
    from deltaspace.train.batching import load_task_data, split_rows
    from deltaspace.train.evaluate import evaluate_rows

    out = tmp_path / "zero"
    assert train(toy, out, "--set", "r=4", "--record", "method=zero-shot", steps=0) == 0
    row = result(out)
    assert row.method == "zero-shot" and row.best_step == 0 and row.steps_run == 0
    theta, _ = theta_of(out)
    bb = load_backbone("tiny-bert", seed=7)
    delta = build_delta("lora", bb, r=4)
    assert torch.equal(theta, delta.init(7))
    data = load_task_data(toy)
    head = make_head(bb, delta, data.verbalizers)
    bare = evaluate_rows(delta, head, torch.zeros(delta.size), split_rows(data, "test"), data.metric, 32)
    assert row.test_metric == pytest.approx(bare)  # B = 0: the same predictions as with every delta at zero
    curve = pd.read_parquet(out / "curve.parquet")
    assert curve.step.tolist() == [0] and curve.dev_metric.iloc[0] == pytest.approx(row.dev_metric)
