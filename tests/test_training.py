"""Stage-0 training: determinism, kill-and-resume equivalence, divergence handling."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from conftest import ConstantStream, write_prepared, run_theta as _theta

from deltaspace.cli import main
from deltaspace.train.loop import LoopConfig, TrainingDiverged, run_loop

def train_args(data, out, backbone="tiny-bert", method="lora", steps=12, extra=()):
    return ["train", "--data", str(data), "--method", method, "--backbone", backbone, "--lr", "0.05",
            "--steps", str(steps), "--batch-size", "4", "--eval-every", "4", "--checkpoint-every", "4",
            "--seed", "7", "--out", str(out), "--no-progress", "--set", "r=4", *extra]


STABLE = ["task", "method", "seed", "lr", "best_step", "dev_metric", "test_metric", "size", "config_hash"]


@pytest.fixture
def toy(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    return write_prepared(data, "tiny-bert")


def test_training_writes_outputs_and_is_deterministic(toy, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(train_args(toy, a)) == 0
    assert main(train_args(toy, b)) == 0
    ra, rb = pd.read_parquet(a / "result.parquet"), pd.read_parquet(b / "result.parquet")
    pd.testing.assert_frame_equal(ra[STABLE], rb[STABLE])
    assert torch.equal(_theta(a), _theta(b))
    curve = pd.read_parquet(a / "curve.parquet")
    assert list(curve.step) == [4, 8, 12] and curve.loss.notna().all()
    row = ra.iloc[0]
    assert row.stage == "stage0" and row.best_step in (4, 8, 12) and 0 <= row.test_metric <= 100
    assert json.loads(row.versions)["torch"] and row.git_commit
    sidecar = json.loads((a / "theta.json").read_text())
    assert sidecar["size"] == _theta(a).numel() and sidecar["method"] == "lora"
    assert not (a / "checkpoint.pt").exists()


def test_kill_and_resume_equals_uninterrupted(toy, tmp_path):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert main(train_args(toy, whole)) == 0
    assert main(train_args(toy, resumed, extra=["--stop-after-step", "6"])) == 143
    assert (resumed / "checkpoint.pt").exists() and not (resumed / "result.parquet").exists()
    assert main(train_args(toy, resumed)) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(whole / "result.parquet")[STABLE],
                                  pd.read_parquet(resumed / "result.parquet")[STABLE])
    assert torch.equal(_theta(whole), _theta(resumed))
    cols = ["step", "loss", "dev_metric"]
    pd.testing.assert_frame_equal(pd.read_parquet(whole / "curve.parquet")[cols],
                                  pd.read_parquet(resumed / "curve.parquet")[cols])


def test_real_sigterm_checkpoints_and_resumes(tmp_path):
    """A real SIGTERM (what Slurm sends) mid-run, on a seq2seq backbone with dropout active."""
    data = tmp_path / "data"
    data.mkdir()
    write_prepared(data, "tiny-t5", n_train=32)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    args = lambda out: train_args(data, out, backbone="tiny-t5", method="adapter", steps=40,  # noqa: E731
                                  extra=["--checkpoint-every", "1"])
    cmd = [sys.executable, "-m", "deltaspace.cli", *args(killed)]
    cmd[cmd.index("--set") + 1] = "r=4"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ))
    deadline = time.time() + 120
    while not (killed / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 143, out.decode()
    assert main(args(killed)) == 0
    assert main(args(whole)) == 0
    assert torch.equal(_theta(whole), _theta(killed))
    pd.testing.assert_frame_equal(pd.read_parquet(whole / "result.parquet")[STABLE],
                                  pd.read_parquet(killed / "result.parquet")[STABLE])


class _Diverging:
    """An objective whose loss turns NaN at its third step."""

    def __init__(self):
        self.w = torch.nn.Parameter(torch.ones(1))
        self.calls = 0

    def param_groups(self, lr):
        return [{"params": [self.w], "lr": lr}]

    def loss(self, batch):
        self.calls += 1
        return self.w.sum() * (float("nan") if self.calls == 3 else 1.0)

    def evaluate(self, step):
        return 0.0

    def snapshot(self):
        return {"w": self.w.detach().clone()}

    def state_dict(self):
        return {"w": self.w.detach().clone()}

    def load_state_dict(self, state):
        self.w.data.copy_(state["w"])


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = LoopConfig(steps=10, lr=0.1, optimizer="adamw", eval_every=1, checkpoint_every=1)
    with pytest.raises(TrainingDiverged, match="loss is nan at step 3"):
        run_loop(_Diverging(), ConstantStream(), cfg, tmp_path, progress=False)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["step"] == 2


def test_backbone_mismatch_and_missing_data_fail_clearly(toy, tmp_path, capsys):
    assert main(train_args(toy, tmp_path / "x", backbone="tiny-t5")) == 2
    assert "prepared (tokenized) for backbone 'tiny-bert'" in capsys.readouterr().err
    assert main(train_args(tmp_path / "nope", tmp_path / "y")) == 2
    assert "not a prepared task folder" in capsys.readouterr().err
