"""Fused optimize-subspace runs (`deltaspace optimize-fused`): equal to separate runs per source
method, zero-step and backbone-weight runs alone, preemptible."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from conftest import write_prepared
from deltaspace.cli import main

METHODS = ["adapter", "prefix", "lora"]
SETS = {"adapter": ["r=4"], "prefix": ["m=4", "hidden=8"], "lora": ["r=4"]}
LOOP = ["--batch-size", "4", "--eval-batch-size", "8", "--seed", "3", "--no-progress"]
COLS = ["stage", "task", "source_method", "target_method", "lr", "seed", "best_step", "dev_metric", "test_metric",
        "config_hash"]


@pytest.fixture(scope="module")
def subspace(tmp_path_factory):
    """A joint subspace of adapter, prefix and LoRA fitted on two toy tasks, and two unseen tasks."""
    root = tmp_path_factory.mktemp("fused-opt")
    train = [write_prepared(root / f"data/t{i}", "tiny-bert", task=f"toy-{i}", shift=i) for i in range(2)]
    unseen = [write_prepared(root / f"data/u{i}", "tiny-bert", n_train=12, task=f"toy-u{i}", shift=3 + i)
              for i in range(2)]
    stage0 = []
    for data in train:
        for m in METHODS:
            out = root / "stage0" / data.name / m
            assert main(["train", "--data", str(data), "--method", m, "--backbone", "tiny-bert", "--lr", "0.05",
                         "--steps", "4", "--eval-every", "2", "--out", str(out),
                         *[x for s in SETS[m] for x in ("--set", s)], *LOOP]) == 0
            stage0.append(out)
    sub = root / "subspace"
    assert main(["fit-subspace", "--mode", "joint", "--backbone", "tiny-bert", "--methods", ",".join(METHODS),
                 "--y", "4", "--train-data", *map(str, train), "--stage0", *map(str, stage0), "--lr", "0.01",
                 "--steps", "4", "--eval-every", "2", "--out", str(sub), *LOOP]) == 0
    return {"root": root, "sub": sub, "unseen": unseen}


def opt_args(subspace, data, out, *, method="lora", lr=0.5, steps=6, extra=()):
    return ["--subspace", str(subspace), "--method", method, "--data", str(data), "--lr", str(lr), "--steps",
            str(steps), "--eval-every", "3", "--checkpoint-every", "3", "--optimizer", "adamw", "--out", str(out),
            "--experiment", "toy", "--setting", "single", "--subset", "test", *LOOP, *extra]


def _fused(runs, *options):
    return ["optimize-fused", *options, *[x for r in runs for x in ("--run", shlex.join(r))]]


def _vectors(out):
    return load_file(str(out / "intrinsic.safetensors"))


def _rows(out):
    return pd.read_parquet(out / "result.parquet").sort_values("target_method").reset_index(drop=True)[COLS]


@pytest.mark.parametrize("method", METHODS)
def test_fused_optimize_runs_equal_separate_runs(subspace, tmp_path, no_dropout, method):
    sub, (u0, u1) = subspace["sub"], subspace["unseen"]
    # two tasks, two learning rates, one linear schedule: each run keeps its own settings
    specs = [(u0, 0.5, []), (u1, 0.2, ["--schedule", "linear"]), (u0, 0.1, [])]
    for i, (data, lr, extra) in enumerate(specs):
        assert main(["optimize-subspace", *opt_args(sub, data, tmp_path / f"sep{i}", method=method, lr=lr,
                                                    extra=extra)]) == 0
    runs = [opt_args(sub, data, tmp_path / f"fused{i}", method=method, lr=lr, extra=extra)
            for i, (data, lr, extra) in enumerate(specs)]
    assert main(_fused(runs)) == 0
    for i in range(len(specs)):
        a, b = _vectors(tmp_path / f"sep{i}"), _vectors(tmp_path / f"fused{i}")
        assert a.keys() == b.keys() == set(METHODS)  # the own row and both transfers
        for target in a:
            torch.testing.assert_close(a[target], b[target], rtol=1e-4, atol=1e-5)
        pd.testing.assert_frame_equal(_rows(tmp_path / f"sep{i}"), _rows(tmp_path / f"fused{i}"), atol=1e-6)
        assert not (tmp_path / f"fused{i}" / "checkpoint.pt").exists()


def test_zero_step_runs_alone_and_finished_runs_are_skipped(subspace, tmp_path, capsys):
    sub, (u0, _) = subspace["sub"], subspace["unseen"]
    runs = [opt_args(sub, u0, tmp_path / "zero", steps=0), opt_args(sub, u0, tmp_path / "a"),
            opt_args(sub, u0, tmp_path / "b", lr=0.1)]
    assert main(_fused(runs)) == 0
    assert "a run of no training step" in capsys.readouterr().out
    assert main(["optimize-subspace", *opt_args(sub, u0, tmp_path / "zero_sep", steps=0)]) == 0
    pd.testing.assert_frame_equal(_rows(tmp_path / "zero_sep"), _rows(tmp_path / "zero"))
    before = _vectors(tmp_path / "a")["lora"]
    assert main(_fused(runs)) == 0
    assert capsys.readouterr().out.count("already has result.parquet; skipped") == 3
    assert torch.equal(before, _vectors(tmp_path / "a")["lora"])


def test_a_finished_run_planned_with_other_arguments_trains_again(subspace, tmp_path, capsys):
    """A workflow rerunning a fused job after a config change deletes only its manifest: the run whose
    arguments changed must not keep the result of the old ones."""
    sub, (u0, _) = subspace["sub"], subspace["unseen"]
    runs = [opt_args(sub, u0, tmp_path / "a"), opt_args(sub, u0, tmp_path / "b", lr=0.1)]
    assert main(_fused(runs, "--manifest", str(tmp_path / "m.json"))) == 0
    assert json.loads((tmp_path / "m.json").read_text())["runs"] == [str(tmp_path / "a"), str(tmp_path / "b")]
    kept = _rows(tmp_path / "a")
    capsys.readouterr()
    changed = [runs[0], opt_args(sub, u0, tmp_path / "b", lr=0.3)]
    assert main(_fused(changed)) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'a'} already has result.parquet; skipped" in out
    assert f"{tmp_path / 'b'} was made with other arguments" in out
    pd.testing.assert_frame_equal(_rows(tmp_path / "a"), kept)
    assert set(pd.read_parquet(tmp_path / "b" / "result.parquet")["lr"]) == {0.3}


def test_sigterm_checkpoints_every_run_and_rerun_resumes_them_all(subspace, tmp_path):
    """A real SIGTERM on a fused optimize job (dropout on): the rerun ends where an uninterrupted job
    does, also when a finished run's folder is deleted first, as Snakemake deletes a killed job's outputs."""
    sub, (u0, u1) = subspace["sub"], subspace["unseen"]

    def job(prefix):
        runs = [opt_args(sub, data, tmp_path / f"{prefix}{i}", lr=lr, steps=steps, extra=["--checkpoint-every", "1"])
                for i, (data, lr, steps) in enumerate(((u0, 0.5, 60), (u1, 0.2, 60), (u0, 0.1, 2)))]
        return _fused(runs)

    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    proc = subprocess.Popen([sys.executable, "-m", "deltaspace.cli", *job("killed")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 120
    while not (tmp_path / "killed2" / "result.parquet").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the job finished before the signal arrived")
    assert proc.returncode == 143, out.decode()
    steps = [torch.load(tmp_path / f"killed{i}" / "checkpoint.pt", weights_only=False)["step"] for i in range(3)]
    assert steps[0] == steps[1] and 2 <= steps[0] < 60 and steps[2] == 2
    for name in ("result.parquet", "intrinsic.safetensors", "curve.parquet"):
        (tmp_path / "killed2" / name).unlink()
    assert main(job("killed")) == 0
    assert main(job("whole")) == 0
    assert not any((tmp_path / f"killed{i}" / "checkpoint.pt").exists() for i in range(3))
    for i in range(3):
        a, b = _vectors(tmp_path / f"whole{i}"), _vectors(tmp_path / f"killed{i}")
        for target in a:
            assert torch.equal(a[target], b[target])
        pd.testing.assert_frame_equal(_rows(tmp_path / f"whole{i}"), _rows(tmp_path / f"killed{i}"))
