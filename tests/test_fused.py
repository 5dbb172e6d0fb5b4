"""Fused stage-0 runs (`deltaspace train-fused`): equal to separate runs per method, preemptible."""

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import write_prepared, run_theta as _theta

from deltaspace.cli import main
from deltaspace.train.fused import RUN_ARGS

COLS = ["task", "method", "seed", "lr", "best_step", "steps_run", "dev_metric", "test_metric", "size", "config_hash"]


def run_args(data, out, *, backbone="tiny-bert", method="lora", lr=0.05, steps=6, sets=(), extra=()):
    args = ["--data", str(data), "--method", method, "--backbone", backbone, "--lr", str(lr), "--steps", str(steps),
            "--batch-size", "4", "--eval-every", "3", "--checkpoint-every", "3", "--seed", "7", "--out", str(out),
            "--no-progress", "--optimizer", "adamw", *extra]
    for s in sets:
        args += ["--set", s]
    return args


def _key_bias_mask(backbone, method, sets, extra, size) -> torch.Tensor:
    """θ's elements that are key biases: a key bias adds the same q·b to every score of a query,
    which softmax ignores, so its gradient is zero up to rounding and Adam turns that rounding into
    steps of any size up to the lr. Separate and fused runs round differently: these elements are
    noise in both and are left out of the comparison (BitFit tunes them)."""
    import math

    from deltaspace.backbones import load_backbone
    from deltaspace.deltas import build_delta

    if "bitfit" not in method:
        return torch.zeros(size, dtype=torch.bool)
    options = {k: int(v) for k, v in (s.split("=") for s in sets)}
    mlm = any(head in extra for head in ("mlm", "mlm-template"))  # BitFit tunes the masked-LM head's biases
    delta = build_delta(method, load_backbone(backbone, mlm_head=mlm), **options)
    mask = torch.zeros(delta.size, dtype=torch.bool)
    for slot in delta.manifest:
        if slot.name.endswith((".k.bias", ".key.bias")):
            mask[slot.offset:slot.offset + math.prod(slot.shape)] = True
    return mask


def _tasks(tmp_path, backbone):
    """Two toy tasks, the second's rows three times as long: their runs take separate forwards
    (width_buckets), as tweets and news articles do in the quickstart."""
    return [write_prepared(tmp_path / f"data{i}", backbone, n_train=12, task=f"toy{i}", shift=i, filler=6 * i)
            for i in range(2)]


def test_runs_of_about_one_width_share_a_forward():
    from deltaspace.train.fused import width_buckets

    assert width_buckets([30, 64, 45, 64, 60]) == [[1, 3, 4], [2], [0]]  # 60 >= 0.8 * 64 > 45; 30 < 0.8 * 45
    assert width_buckets([20, 24, 21]) == [[1, 2, 0]]  # widest first
    assert width_buckets([]) == []


CASES = [  # (backbone, method, options, extra train arguments)
    ("tiny-bert", "lora", ["r=4"], []),
    ("tiny-bert", "adapter", ["r=4"], []),
    ("tiny-bert", "prefix", ["m=4", "hidden=8"], []),
    ("tiny-bert", "prompt", ["n=5"], []),
    ("tiny-bert", "bitfit", [], []),
    ("tiny-bert", "ia3", [], []),
    ("tiny-bert", "ssb", [], []),
    ("tiny-bert", "lora-mpco", ["r=4"], []),
    ("tiny-bert", "dora", ["r=4"], []),
    ("tiny-bert", "adalora", [], []),
    ("tiny-bert", "prompt+bitfit", ["prompt.n=5"], []),
    ("tiny-bert", "bitfit+adapter", ["adapter.r=4"], []),  # a tuned bias inside an adapter's host
    ("tiny-bert", "prompt+bitfit+adapter", ["prompt.n=5", "adapter.r=4"], []),
    ("tiny-bert", "prompt+adapter", ["prompt.n=5", "adapter.r=4"], []),
    ("tiny-bert", "lora", ["r=4"], ["--head", "classifier"]),
    ("tiny-bert", "bitfit", [], ["--head", "mlm"]),  # BitFit tunes the masked-LM head's biases too
    ("tiny-t5", "prompt+bitfit+adapter", ["prompt.n=5", "adapter.r=4"], ["--head", "mlm"]),  # the sentinel head
    ("tiny-t5", "lora", ["r=4"], []),
    ("tiny-t5", "prefix", ["m=4", "hidden=8"], []),
    ("tiny-t5", "prompt", ["n=5"], []),
    ("tiny-bart", "adapter", ["r=4"], []),
]


@pytest.mark.parametrize("backbone,method,sets,extra", CASES, ids=[f"{c[0]}-{c[1]}{'-' + c[3][1] if c[3] else ''}"
                                                                   for c in CASES])
def test_fused_runs_equal_separate_runs(tmp_path, no_dropout, backbone, method, sets, extra):
    tasks = _tasks(tmp_path, backbone)
    # two tasks, two learning rates, one run with a linear schedule: each keeps its own settings
    specs = [(tasks[0], 0.05, []), (tasks[1], 0.02, ["--schedule", "linear"]), (tasks[0], 0.01, [])]
    separate = [tmp_path / f"sep{i}" for i in range(len(specs))]
    fused = [tmp_path / f"fused{i}" for i in range(len(specs))]
    runs = []
    for (data, lr, more), sep, fus in zip(specs, separate, fused):
        kw = dict(backbone=backbone, method=method, lr=lr, sets=sets, extra=[*extra, *more])
        assert main(["train", *run_args(data, sep, **kw)]) == 0
        runs += ["--run", shlex.join(run_args(data, fus, **kw))]
    assert main(["train-fused", *runs]) == 0
    noise = _key_bias_mask(backbone, method, sets, extra, len(_theta(separate[0])))
    for sep, fus in zip(separate, fused):
        a, b = pd.read_parquet(sep / "result.parquet"), pd.read_parquet(fus / "result.parquet")
        pd.testing.assert_frame_equal(a[COLS], b[COLS])
        # Adam divides by sqrt(v) + 1e-8: float noise (rows padded to another width, another summation order)
        # in a gradient near 1e-8 moves that element by up to ~2% of one lr-0.05 step; the losses above and
        # below agree to 1e-4, which a wrong gradient would not
        torch.testing.assert_close(_theta(sep)[~noise], _theta(fus)[~noise], rtol=1e-3, atol=1e-3)
        ca, cb = pd.read_parquet(sep / "curve.parquet"), pd.read_parquet(fus / "curve.parquet")
        pd.testing.assert_frame_equal(ca[["step", "loss", "dev_metric"]], cb[["step", "loss", "dev_metric"]],
                                      rtol=1e-4)
        # the same files, and the record of the arguments the fused run was made with
        assert sorted(p.name for p in fus.iterdir()) == sorted([RUN_ARGS, *(p.name for p in sep.iterdir())])


def test_early_stopped_run_drops_out_and_others_go_on(tmp_path, no_dropout):
    data = _tasks(tmp_path, "tiny-bert")[0]
    early = run_args(data, tmp_path / "early", steps=30, lr=0.0001, sets=["r=4"],
                     extra=["--patience", "1", "--eval-every", "2"])
    long = run_args(data, tmp_path / "long", steps=8, sets=["r=4"])
    assert main(["train", *run_args(data, tmp_path / "early_sep", steps=30, lr=0.0001, sets=["r=4"],
                                    extra=["--patience", "1", "--eval-every", "2"])]) == 0
    assert main(["train-fused", "--run", shlex.join(early), "--run", shlex.join(long)]) == 0
    a, b = pd.read_parquet(tmp_path / "early_sep" / "result.parquet"), pd.read_parquet(tmp_path / "early" / "result.parquet")
    pd.testing.assert_frame_equal(a[COLS], b[COLS])
    assert pd.read_parquet(tmp_path / "long" / "result.parquet").steps_run.iloc[0] == 8


def test_spec_file_and_skip_of_finished_runs(tmp_path, capsys):
    import json

    data = _tasks(tmp_path, "tiny-bert")[0]
    spec = tmp_path / "runs.json"
    spec.write_text(json.dumps([run_args(data, tmp_path / "a", sets=["r=4"]),
                                shlex.join(run_args(data, tmp_path / "b", lr=0.01, sets=["r=4"]))]))
    assert main(["train-fused", "--spec", str(spec)]) == 0
    before = _theta(tmp_path / "a")
    assert main(["train-fused", "--spec", str(spec)]) == 0
    assert "already has result.parquet; skipped" in capsys.readouterr().out
    assert torch.equal(before, _theta(tmp_path / "a"))


def test_backbone_weight_methods_and_zero_step_runs_run_alone(tmp_path, capsys):
    data = _tasks(tmp_path, "tiny-bert")[0]
    runs = [run_args(data, tmp_path / f"ft{i}", method="finetune", lr=lr, steps=3) for i, lr in enumerate((1e-3, 1e-4))]
    runs.append(run_args(data, tmp_path / "zero", sets=["r=4"], steps=0))  # a zero-shot row
    assert main(["train-fused", *[x for r in runs for x in ("--run", shlex.join(r))]]) == 0
    out = capsys.readouterr().out
    assert "tunes backbone weights" in out and "a run of no training step" in out
    assert main(["train", *run_args(data, tmp_path / "sep", method="finetune", lr=1e-3, steps=3)]) == 0
    torch.testing.assert_close(_theta(tmp_path / "ft0"), _theta(tmp_path / "sep"))
    assert main(["train", *run_args(data, tmp_path / "zero_sep", sets=["r=4"], steps=0)]) == 0
    a, b = pd.read_parquet(tmp_path / "zero_sep" / "result.parquet"), pd.read_parquet(tmp_path / "zero" / "result.parquet")
    pd.testing.assert_frame_equal(a[COLS], b[COLS])


def test_sigterm_checkpoints_every_run_and_rerun_resumes_them_all(tmp_path):
    """A real SIGTERM on a fused job (dropout on, seq2seq): the rerun ends where an uninterrupted job does,
    also when the folder of a run that had finished is deleted first, as Snakemake deletes a killed job's outputs."""
    data = write_prepared(tmp_path / "data", "tiny-t5", n_train=32)
    def job(prefix):
        runs = [run_args(data, tmp_path / f"{prefix}{i}", backbone="tiny-t5", method="adapter", lr=lr, steps=steps,
                         sets=["r=4"], extra=["--checkpoint-every", "1"])
                for i, (lr, steps) in enumerate(((0.05, 40), (0.01, 40), (0.02, 3)))]
        return ["train-fused", "--no-progress", *[x for r in runs for x in ("--run", shlex.join(r))]]

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
    assert steps[0] == steps[1] and 3 <= steps[0] < 40 and steps[2] == 3
    for name in ("result.parquet", "theta.safetensors", "theta.json", "curve.parquet"):
        (tmp_path / "killed2" / name).unlink()
    assert main(job("killed")) == 0
    assert main(job("whole")) == 0
    assert not any((tmp_path / f"killed{i}" / "checkpoint.pt").exists() for i in range(3))
    for i in range(3):
        assert torch.equal(_theta(tmp_path / f"whole{i}"), _theta(tmp_path / f"killed{i}"))
        a = pd.read_parquet(tmp_path / f"whole{i}" / "result.parquet")
        b = pd.read_parquet(tmp_path / f"killed{i}" / "result.parquet")
        pd.testing.assert_frame_equal(a[COLS], b[COLS])


def test_preflight_checks_fused_jobs(tmp_path):
    """A fused job's estimate: one backbone and process, every run's state and steps."""
    import yaml

    from deltaspace.plan import Plan
    from deltaspace.preflight import Checker, preflight

    repo = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((repo / "config/smoke.yaml").read_text())
    config["stage0"]["fuse"] = 4
    path = tmp_path / "fused.yaml"
    path.write_text(yaml.safe_dump(config))
    report = preflight(path, repo)
    assert report.ok, report.render()
    assert "train_fused 4" in report.summary[0]
    plan = Plan(config, repo)
    checker = Checker(plan, repo)
    job = next(j for j in plan.jobs() if j.rule == "train_fused")
    alone = {wc.task: checker.estimate(j) for j in Plan({**config, "stage0": {**config["stage0"], "fuse": 1}},
                                                         repo).jobs()
             if j.rule == "train_delta" and j.wildcards.method == job.wildcards.method for wc in [j.wildcards]}
    fused = checker.estimate(job)
    assert fused.steps == sum(e.steps for e in alone.values())
    assert max(e.host_gb for e in alone.values()) < fused.host_gb < sum(e.host_gb for e in alone.values())


def test_backbone_weight_methods_match_the_registry():
    """The torch-free list the plan keeps out of fused jobs is the registry's BackboneWeights methods."""
    from deltaspace.deltas.finetune import BackboneWeights
    from deltaspace.deltas.registry import METHODS
    from deltaspace.method_names import BACKBONE_WEIGHT_METHODS

    assert sorted(BACKBONE_WEIGHT_METHODS) == sorted(n for n, c in METHODS.items() if issubclass(c, BackboneWeights))
