"""Fused runs: runs per hour of K runs in one `deltaspace train-fused` process vs K `deltaspace train` processes.

Both sides are whole processes, timed from launch to exit as a user (or a Snakemake job) runs them:
each separate run imports the library, loads the backbone, trains, evaluates on dev, tests and
writes its folder; the fused job does that once for the backbone and K times for the rest. The K
runs differ in learning rate (an lr grid, the commonest stage-0 group); everything else is the
quickstart's: MiniLM, LoRA r=8 on Q and V, the label head, the few-shot tweet-sentiment task
(prepared here offline, as the quickstart prepares it). With ``--mixed`` the runs cycle through the
quickstart's second LoRA job's tasks instead, news articles (64 tokens) beside tweets (about 30):
what the fused trainer's width buckets are for.

The separate processes run one after another, each with the same threads as the fused process,
so both sides get the same cores. Runs/hour = K / wall seconds * 3600; the ratio is fused over
separate. The last line prints the ratio at K=8 and the last batch size (4, IPT's, by default).

``--width-ablation`` measures the width buckets themselves: one fused job of K mixed runs, in this
process, with the buckets and with every run padded to one width, alternating ``--repeats`` times;
it prints the best of each and their ratio.

Usage: python benchmarks/fused_runs.py [--ks 1,2,4,8] [--batches 16,4] [--steps 20] [--quick] [--mixed]
       python benchmarks/fused_runs.py --width-ablation [--ks 4] [--batches 16] [--steps 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

TASK = "qs-tweet-sentiment"
MIXED = ("qs-bbc-topic", "qs-tweet-polarity", "qs-tweet-sentiment", "qs-tweet-subjectivity")
LRS = [2e-3, 1e-3, 5e-4, 3e-3, 1.5e-3, 7e-4, 4e-3, 2.5e-3]  # one per run; K <= 8


def deltaspace(*args: str) -> list[str]:
    return [sys.executable, "-m", "deltaspace.cli", *args]


def prepare(folder: Path, backbone: str, task: str) -> Path:
    """The quickstart's few-shot split of a task (K=16 per class, data seed 100, 64 test rows)."""
    out = folder / "data" / task
    subprocess.run(deltaspace("prepare", "--task", task, "--seed", "100", "--backbone", backbone, "--out", str(out),
                              "--setting", "fewshot", "--max-test", "64", "--max-input-length", "64"),
                   check=True, capture_output=True)
    return out


def run_args(data: Path, out: Path, backbone: str, lr: float, batch: int, steps: int) -> list[str]:
    return ["--data", str(data), "--method", "lora", "--set", "r=8", "--backbone", backbone, "--lr", f"{lr:g}",
            "--seed", "42", "--steps", str(steps), "--batch-size", str(batch), "--eval-every", str(steps),
            "--checkpoint-every", str(steps), "--optimizer", "adamw", "--eval-batch-size", "64", "--no-progress",
            "--out", str(out)]


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(command[:4])} ... failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def measure(data: list[Path], work: Path, backbone: str, k: int, batch: int, steps: int) -> tuple[float, float]:
    """Wall seconds of K separate processes (one after another) and of one fused process; run i
    trains on ``data[i % len(data)]``."""
    tag = f"k{k}_b{batch}"
    separate = sum(timed(deltaspace("train", *run_args(data[i % len(data)], work / tag / f"sep{i}", backbone, LRS[i],
                                                       batch, steps)))
                   for i in range(k))
    runs = [x for i in range(k)
            for x in ("--run", shlex.join(run_args(data[i % len(data)], work / tag / f"fused{i}", backbone, LRS[i],
                                                   batch, steps)))]
    fused = timed(deltaspace("train-fused", "--no-progress", *runs))
    return separate, fused


def width_ablation(data: list[Path], work: Path, backbone: str, k: int, batch: int, steps: int,
                   repeats: int) -> tuple[float, float]:
    """Best-of-``repeats`` wall seconds of one fused job of K mixed-width runs with the trainer's width
    buckets and with one forward padded to the widest run (``min_share=0``), in this process,
    alternating so that both see the same machine; each includes the backbone load."""
    from functools import partial

    from deltaspace.train import fused

    bucketed = fused.width_buckets
    times: dict[str, list[float]] = {"buckets": [], "one-width": []}
    for r in range(repeats):
        for name, buckets in (("buckets", bucketed), ("one-width", partial(bucketed, min_share=0.0))):
            runs = [run_args(data[i % len(data)], work / f"width{r}" / name / f"run{i}", backbone, LRS[i], batch, steps)
                    for i in range(k)]
            fused.width_buckets = buckets
            try:
                start = time.perf_counter()
                fused.train_fused(runs, progress=False)
                times[name].append(time.perf_counter() - start)
            finally:
                fused.width_buckets = bucketed
    return min(times["buckets"]), min(times["one-width"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--ks", default="1,2,4,8")
    parser.add_argument("--batches", default="16,4", help="batch sizes; the last one is the headline's")
    parser.add_argument("--steps", type=int, default=20, help="training steps of every run")
    parser.add_argument("--quick", action="store_true", help="K in {1, 8} at batch 4, 10 steps (a smoke check)")
    parser.add_argument("--mixed", action="store_true", help=f"runs cycle through {', '.join(MIXED)}")
    parser.add_argument("--width-ablation", action="store_true",
                        help="instead: one fused job of the largest K mixed runs at the first batch size, with width "
                             "buckets and with one width for all, in this process")
    parser.add_argument("--repeats", type=int, default=3, help="--width-ablation: alternations, best of")
    args = parser.parse_args()
    ks, batches, steps = [int(k) for k in args.ks.split(",")], [int(b) for b in args.batches.split(",")], args.steps
    if args.quick:
        ks, batches, steps = [1, 8], [4], 10
    if max(ks) > len(LRS):
        raise SystemExit(f"at most K={len(LRS)} (one learning rate per run)")

    import torch

    from deltaspace.precision import precision

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    tasks = MIXED if args.mixed or args.width_ablation else (TASK,)
    print(f"backbone {args.backbone}, LoRA r=8, task(s) {', '.join(tasks)}, {steps} steps a run, {device}, "
          f"{precision()}, torch threads {torch.get_num_threads()}")
    ratio = None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = [prepare(work, args.backbone, task) for task in tasks]
        if args.width_ablation:
            k, batch = max(ks), batches[0]
            bucketed, one_width = width_ablation(data, work, args.backbone, k, batch, steps, args.repeats)
            print(f"K={k} batch {batch}, best of {args.repeats}: width buckets {bucketed:.1f} s, "
                  f"one width {one_width:.1f} s")
            print(f"one width / width buckets wall time: {one_width / bucketed:.2f}x")
            return
        print(f"{'batch':>5} {'K':>3} {'separate s':>11} {'fused s':>8} {'sep runs/h':>11} {'fused runs/h':>13} "
              f"{'ratio':>6}")
        for batch in batches:
            for k in ks:
                separate, fused = measure(data, work, args.backbone, k, batch, steps)
                ratio = separate / fused
                print(f"{batch:>5} {k:>3} {separate:>11.1f} {fused:>8.1f} {k / separate * 3600:>11.0f} "
                      f"{k / fused * 3600:>13.0f} {ratio:>6.2f}", flush=True)
    print(f"K={ks[-1]} fused / separate runs per hour at batch {batches[-1]}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
