"""Task-level transfer (survey §5.4): the best source θ of a grid, evaluated zero-shot on a target."""

import json

import pandas as pd
import pytest

from conftest import write_prepared
from deltaspace.backbones import load_backbone, load_tokenizer
from deltaspace.cli import main
from deltaspace.deltas import build_delta
from deltaspace.heads import make_head
from deltaspace.train.batching import load_task_data, split_rows
from deltaspace.train.evaluate import evaluate_rows
from deltaspace.train.stage0 import load_theta

THREE = {"negative": ["awful", "bad", "dull"], "neutral": ["okay", "average", "plain"],
         "positive": ["great", "lovely", "superb"]}


def write_three_way(folder, backbone="tiny-bert"):
    """A prepared 3-label target task: a label set the sentiment sources never saw."""
    folder.mkdir(parents=True, exist_ok=True)
    tok = load_tokenizer(backbone)
    verbalizers = list(THREE)
    for split, n in (("train", 6), ("dev", 6), ("test", 9)):
        rows = []
        for i in range(n):
            label = i % 3
            text = f"a {THREE[verbalizers[label]][(i // 3) % 3]} story"
            rows.append({"idx": i, "input": text, "target": verbalizers[label], "references": [verbalizers[label]],
                         "label": label, "input_ids": tok(text)["input_ids"], "target_ids": []})
        pd.DataFrame(rows).to_parquet(folder / f"{split}.parquet", index=False)
    (folder / "manifest.json").write_text(json.dumps({
        "task": "toy-three-way", "category": "sentiment", "metric": "accuracy", "kind": "classification",
        "verbalizers": verbalizers, "backbone": backbone, "content_sha256": "toy3"}))
    return folder


def train(data, out, lr, backbone="tiny-bert", seed=7):
    assert main(["train", "--data", str(data), "--method", "lora", "--set", "r=4", "--backbone", backbone,
                 "--lr", str(lr), "--steps", "4", "--batch-size", "4", "--eval-every", "2", "--checkpoint-every",
                 "2", "--seed", str(seed), "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """Two stage-0 runs of one source task (an LR grid); the second is made the best on dev."""
    root = tmp_path_factory.mktemp("grid")
    source = write_prepared(root / "source", "tiny-bert", task="toy-source")
    a, b = train(source, root / "lr-a", 0.05), train(source, root / "lr-b", 0.01)
    result = pd.read_parquet(b / "result.parquet")
    result["dev_metric"] = 101.0  # higher than any real score: the choice must follow dev_metric
    result.to_parquet(b / "result.parquet", index=False)
    return root, a, b


def zero_shot(run, target_dir):
    """The expected score, computed independently of the command."""
    theta, meta = load_theta(run)
    seed = int(pd.read_parquet(run / "result.parquet").seed.iloc[0])
    bb = load_backbone(meta["backbone"], seed=seed)
    delta = build_delta(meta["method"], bb, **meta["options"])
    target = load_task_data(target_dir)
    head = make_head(bb, delta, target.verbalizers)
    return evaluate_rows(delta, head, theta, split_rows(target, "test"), target.metric, 32)


@pytest.mark.parametrize("target_kind", ["same-labels", "other-labels"])
def test_best_source_run_is_evaluated_zero_shot_on_the_target_test_split(grid, target_kind, tmp_path):
    root, a, b = grid
    if target_kind == "same-labels":
        target = write_prepared(tmp_path / "target", "tiny-bert", task="toy-target", shift=2)
    else:
        target = write_three_way(tmp_path / "target")
    out = tmp_path / "out"
    assert main(["task-transfer", "--source", str(a), str(b), "--data", str(target), "--out", str(out),
                 "--eval-batch-size", "4", "--experiment", "e1", "--no-progress"]) == 0
    row = pd.read_parquet(out / "result.parquet").iloc[0]
    assert row.stage == "task-transfer" and row.experiment == "e1"
    assert row.source_task == "toy-source" and row.task == load_task_data(target).name
    assert row.method == "lora" and row.backbone == "tiny-bert" and row.metric == "accuracy"
    assert row.source_run == str(b) and row.source_runs == 2 and row.source_dev_metric == 101.0
    assert row.lr == pytest.approx(0.01)
    assert row.test_metric == pytest.approx(zero_shot(b, target))
    assert 0 <= row.test_metric <= 100 and row.git_commit and json.loads(row.versions)["torch"]
    # Argument order does not change the choice.
    again = tmp_path / "again"
    assert main(["task-transfer", "--source", str(b), str(a), "--data", str(target), "--out", str(again)]) == 0
    assert pd.read_parquet(again / "result.parquet").iloc[0].test_metric == row.test_metric


def test_backbone_mismatch_names_both_backbones(grid, tmp_path, capsys):
    _, a, _ = grid
    target = write_prepared(tmp_path / "t5-target", "tiny-t5", task="toy-target")
    assert main(["task-transfer", "--source", str(a), "--data", str(target), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "'tiny-t5'" in err and "'tiny-bert'" in err and "--backbone tiny-bert" in err
    assert not (tmp_path / "o" / "result.parquet").exists()


def test_sources_must_be_one_grid_of_finished_runs(grid, tmp_path, capsys):
    root, a, _ = grid
    other = train(write_prepared(tmp_path / "other", "tiny-bert", task="toy-other"), tmp_path / "other-run", 0.05)
    target = write_prepared(tmp_path / "target", "tiny-bert", task="toy-target")
    assert main(["task-transfer", "--source", str(a), str(other), "--data", str(target), "--out",
                 str(tmp_path / "o")]) == 2
    assert "they differ in task" in capsys.readouterr().err
    assert main(["task-transfer", "--source", str(tmp_path / "missing"), "--data", str(target), "--out",
                 str(tmp_path / "o")]) == 2
    assert "no result.parquet" in capsys.readouterr().err
