"""The precision forwards compute in (DELTASPACE_PRECISION): chosen by the hardware unless set,
applied to training and evaluation alike, recorded in every result row. The rest of the suite pins
fp32 (conftest.py); these tests run bf16."""

import shlex

import pandas as pd
import pytest
import torch

from conftest import write_prepared, run_theta as _theta

from deltaspace.cli import main
from deltaspace import precision as module
from deltaspace.precision import precision


def test_precision_follows_the_variable_else_the_hardware(monkeypatch):
    for choice in ("bf16", "fp32"):
        monkeypatch.setenv("DELTASPACE_PRECISION", choice)
        assert precision() == choice
    for unset in ("auto", ""):
        monkeypatch.setenv("DELTASPACE_PRECISION", unset)
        for native, expected in ((True, "bf16"), (False, "fp32")):
            monkeypatch.setattr(module, "native_bf16", lambda native=native: native)
            assert precision() == expected
    monkeypatch.setenv("DELTASPACE_PRECISION", "fp16")
    with pytest.raises(ValueError, match=r"DELTASPACE_PRECISION='fp16': expected one of auto, bf16, fp32"):
        precision()


def test_evaluation_runs_under_the_same_autocast_as_training(monkeypatch):
    from deltaspace.backbones import load_backbone
    from deltaspace.deltas import build_delta
    from deltaspace.train.evaluate import predict_rows

    delta = build_delta("lora", load_backbone("tiny-bert"), r=4)
    seen = []

    class SpyHead:
        def predict(self, batch):
            seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu"))
            return ["x"] * len(batch["input_ids"])

    rows = [{"input_ids": [101, 7, 8, 102], "label": 0}] * 3
    for choice, expected in (("bf16", torch.bfloat16), ("fp32", False)):
        monkeypatch.setenv("DELTASPACE_PRECISION", choice)
        seen.clear()
        assert predict_rows(delta, SpyHead(), delta.init(0), rows, batch_size=2) == ["x"] * 3
        assert seen == [expected, expected]


def _args(data, out, extra=()):
    return ["--data", str(data), "--method", "lora", "--backbone", "tiny-bert", "--lr", "0.05", "--steps", "12",
            "--batch-size", "4", "--eval-every", "4", "--checkpoint-every", "4", "--seed", "7", "--out", str(out),
            "--no-progress", "--set", "r=4", *extra]


def test_bf16_runs_record_it_resume_exactly_fuse_and_stay_near_fp32(tmp_path, monkeypatch):
    data = write_prepared(tmp_path / "data", "tiny-bert")
    monkeypatch.setenv("DELTASPACE_PRECISION", "fp32")
    assert main(["train", *_args(data, tmp_path / "fp32")]) == 0
    monkeypatch.setenv("DELTASPACE_PRECISION", "bf16")
    assert main(["train", *_args(data, tmp_path / "bf16")]) == 0
    assert main(["train", *_args(data, tmp_path / "resumed", ["--stop-after-step", "6"])]) == 143
    assert main(["train", *_args(data, tmp_path / "resumed")]) == 0
    for name in ("fused", "fused-again"):
        assert main(["train-fused", "--run", shlex.join(_args(data, tmp_path / name))]) == 0

    fp32, bf16 = _theta(tmp_path / "fp32"), _theta(tmp_path / "bf16")
    assert torch.equal(bf16, _theta(tmp_path / "resumed"))  # bf16 is as deterministic as fp32
    assert torch.equal(_theta(tmp_path / "fused"), _theta(tmp_path / "fused-again"))  # and fused bf16 jobs
    assert not torch.equal(bf16, fp32)  # the matrix products did run in bf16
    for name, expected in (("fp32", "fp32"), ("bf16", "bf16"), ("resumed", "bf16"), ("fused", "bf16")):
        assert set(pd.read_parquet(tmp_path / name / "result.parquet").precision) == {expected}
    losses = [pd.read_parquet(tmp_path / name / "curve.parquet").loss for name in ("fp32", "bf16")]
    # ...and training went the same way: Adam turns rounding in near-zero gradients into whole steps, so θ
    # drifts apart elementwise on a random backbone, but the loss it reaches does not
    assert losses[1].tolist() == pytest.approx(losses[0].tolist(), rel=0.05)



def test_jobs_that_never_autocast_record_fp32(tmp_path, monkeypatch):
    monkeypatch.setenv("DELTASPACE_PRECISION", "bf16")
    assert main(["synthetic-mpc", "--out", str(tmp_path), "--ranks", "2", "--seeds", "1", "--n", "8", "--m", "8",
                 "--steps", "5", "--lrs", "0.01", "--methods", "lora", "--experiment", "quickstart"]) == 0
    assert set(pd.read_parquet(tmp_path / "result.parquet").precision) == {"fp32"}


def test_a_bad_value_fails_the_plan_before_any_job_starts(monkeypatch):
    from pathlib import Path

    from deltaspace import preflight

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("DELTASPACE_PRECISION", "half")
    report = preflight.preflight(repo / "config/smoke.yaml", repo)
    assert report.problems == [f"{repo / 'config/smoke.yaml'}: config error at DELTASPACE_PRECISION (environment): "
                               "DELTASPACE_PRECISION='half': expected one of auto, bf16, fp32"]
