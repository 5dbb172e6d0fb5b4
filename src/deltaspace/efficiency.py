"""`deltaspace efficiency`: peak memory of one training step per batch size (survey Figure 9).

For each batch size, a fresh child process builds the delta-tuned backbone (fp32, AdamW on θ),
creates the static state (weights, θ, its gradient, AdamW's two moments), resets the peak
counter, and then either stops (batch size 0: the *static* memory, no activations) or runs one
full training step on a synthetic batch of fixed input/target length (forward, backward, AdamW
step; the optimizer state already exists, as at any step after the first). Measures:

* ``cuda_max_memory_allocated``: ``torch.cuda.max_memory_allocated`` in the child, the
  framework's own count of live tensor bytes (no CUDA context, no allocator cache).
* ``cpu_peak_rss``: the child's peak resident set size (``VmHWM`` in ``/proc/self/status``),
  whose high-water mark the child resets (``/proc/self/clear_refs``) at the same point. It counts
  *everything* resident: interpreter, libraries, tokenizer, the allocator's slack;
  ``baseline_bytes`` (the child's RSS after its imports) is recorded beside it, not subtracted.
  Where the reset is impossible the peak covers the child's whole life and the measure is named
  ``cpu_peak_rss_lifetime``. Not ``os.wait4``'s ``ru_maxrss``: Linux folds the pre-``exec`` copy of
  the *parent's* address space into it, so it is never below the parent's RSS at spawn time
  (measured: 979 MB for a child whose own peak was 9 MB, under a parent holding 1 GB).

The backbone tensors that θ stands in for (every weight for fine-tuning, the biases for BitFit)
are freed before measuring: ``Delta.bound`` makes the model read θ's views, so in one training
step they are never read, and keeping them would bill fine-tuning for two copies of the model.
An out-of-memory failure is a result (``status: oom``), not an error of the command.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from .io import write_parquet
from .options import parse_sets
from .provenance import provenance

MEASURES = {"cuda": "cuda_max_memory_allocated", "cpu": "cpu_peak_rss"}
VERBALIZERS = ["negative", "positive"]  # encoders' label head needs some label set; two is the common case


def int_list(text: str, flag: str, minimum: int, note: str = "") -> list[int]:
    """A comma-separated list of integers >= ``minimum`` (``--batch-sizes``, ``--input-lengths``)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(v < minimum for v in values):
        raise ValueError(f"{flag} expects comma-separated integers >= {minimum}{note}, got {text!r}")
    return values


def parse_batch_sizes(text: str) -> list[int]:
    return int_list(text, "--batch-sizes", 0, " (0 = static memory)")


def parse_lengths(text: str) -> list[int]:
    return int_list(text, "--input-lengths", 1)


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {name!r}")
    return name


# ----------------------------------------------------------------------------------------------
# The child: one measurement in a fresh process


def _rss_bytes(field: str) -> int:
    try:
        status = Path("/proc/self/status").read_text()
    except FileNotFoundError:
        raise OSError("the CPU memory measure reads /proc/self/status (Linux only); use Linux or "
                      "--device cuda") from None
    for line in status.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"/proc/self/status has no {field}")


def _reset_rss_peak() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux ≥ 4.0); False where impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _drop_init_copies(method) -> None:
    """Methods whose θ0 is the pre-trained weights keep a copy for ``init()`` (finetune, bitfit,
    last-layer, selective); one training step never calls it again."""
    for m in [method, *getattr(method, "components", [])]:
        m.__dict__.pop("_pretrained", None)


def synthetic_batch(backbone, batch_size: int, input_length: int, target_length: int, seed: int) -> dict:
    """Random token ids of exactly the requested lengths (no padding): memory depends on shapes only."""
    import torch

    g = torch.Generator().manual_seed(seed)
    vocab = backbone.config.vocab_size
    batch = {"input_ids": torch.randint(3, vocab, (batch_size, input_length), generator=g),
             "attention_mask": torch.ones(batch_size, input_length, dtype=torch.long)}
    if backbone.kind == "seq2seq":
        batch["labels"] = torch.randint(3, vocab, (batch_size, target_length), generator=g)
    elif backbone.kind == "decoder":  # one sequence: prompt then target, the loss on the target only
        target = torch.randint(3, vocab, (batch_size, target_length), generator=g)
        batch = {"input_ids": torch.cat([batch["input_ids"], target], dim=1),
                 "attention_mask": torch.ones(batch_size, input_length + target_length, dtype=torch.long),
                 "labels": torch.cat([torch.full((batch_size, input_length), -100), target], dim=1)}
    else:
        batch["label"] = torch.randint(0, len(VERBALIZERS), (batch_size,), generator=g)
    return batch


def measure(spec: dict) -> dict:
    """One measurement, in this (fresh) process; returns what the parent cannot see itself."""
    import torch
    from torch import nn

    from .backbones import load_backbone
    from .deltas import build_delta
    from .heads import make_head, training_loss
    from .train.transfer import head_for_method

    cuda = spec["device"] == "cuda"
    baseline = 0 if cuda else _rss_bytes("VmRSS")
    backbone = load_backbone(spec["backbone"], seed=spec["seed"])
    delta = build_delta(spec["method"], backbone, **spec["options"])
    head = make_head(backbone, delta, VERBALIZERS if backbone.kind == "encoder" else None,
                     head=head_for_method(spec["method"]))
    theta0 = delta.init(spec["seed"])
    _drop_init_copies(delta.method)
    model = backbone.model
    with torch.no_grad():
        for slot in delta.manifest:  # θ replaces these tensors in every forward pass
            p = model.get_parameter(slot.name)
            p.data = torch.empty(0, dtype=p.dtype, device=p.device)
    if not cuda:
        # from_pretrained may leave weights as views into the memory-mapped checkpoint, resident
        # only once read; a training step reads them all (and a GPU holds them all), so the CPU
        # measure makes them resident, private copies before it starts counting.
        with torch.no_grad():
            for t in [*model.parameters(), *model.buffers()]:
                if t.numel():
                    t.data = t.data.clone()
    device = torch.device(spec["device"])
    model.to(device)
    theta = nn.Parameter(theta0.to(device))
    del theta0
    optimizer = torch.optim.AdamW([theta], lr=1e-5)
    batch = None
    if spec["batch_size"]:
        batch = {k: v.to(device) for k, v in synthetic_batch(backbone, spec["batch_size"], spec["input_length"],
                                                             spec["target_length"], spec["seed"]).items()}
    # The static state: gradient buffer and AdamW's moments, as after any first step.
    theta.grad = torch.zeros_like(theta)
    optimizer.step()
    if batch is not None:
        optimizer.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        reset = True
    else:
        reset = _reset_rss_peak()
    try:
        if batch is not None:
            loss = training_loss(delta, head, theta, batch)
            loss.backward()
            optimizer.step()
            del loss
        if cuda:
            torch.cuda.synchronize()
    except torch.cuda.OutOfMemoryError:
        return {"status": "oom", "peak_bytes": None, "baseline_bytes": baseline, "reset": reset}
    peak = torch.cuda.max_memory_allocated() if cuda else _rss_bytes("VmHWM")
    step_seconds = None
    if batch is not None and spec.get("time_steps"):
        # Time (survey Figure 13, A28): the median wall time of further full training steps (forward,
        # backward, AdamW), the first measured step above being the warm-up; after the memory peak.
        times = []
        for _ in range(int(spec["time_steps"])):
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss = training_loss(delta, head, theta, batch)
            loss.backward()
            optimizer.step()
            del loss
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
        step_seconds = statistics.median(times)
    return {"status": "ok", "peak_bytes": peak, "baseline_bytes": baseline, "reset": reset,
            "step_seconds": step_seconds}


def _child_main(argv: list[str]) -> int:
    spec_path, out_path = argv
    spec = json.loads(Path(spec_path).read_text())
    try:
        result = measure(spec)
    except MemoryError:
        result = {"status": "oom", "peak_bytes": None}
    except RuntimeError as err:  # the CPU allocator's failure is a plain RuntimeError
        if "can't allocate memory" not in str(err) and "out of memory" not in str(err).lower():
            raise
        result = {"status": "oom", "peak_bytes": None}
    Path(out_path).write_text(json.dumps(result))
    return 0


# ----------------------------------------------------------------------------------------------
# The parent: one child per batch size


def run_child(spec: dict) -> dict:
    """Run :func:`measure` in a fresh process and return what it reports."""
    with tempfile.TemporaryDirectory(prefix="deltaspace-efficiency-") as tmp:
        spec_path, out_path, err_path = Path(tmp, "spec.json"), Path(tmp, "result.json"), Path(tmp, "stderr")
        spec_path.write_text(json.dumps(spec))
        # A fixed mmap threshold: tensors freed during the step go back to the OS, so RSS follows
        # live tensors instead of glibc's growing heap (glibc otherwise raises the threshold).
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
        with open(err_path, "w") as err:
            proc = subprocess.Popen([sys.executable, "-m", "deltaspace.efficiency", "--child", str(spec_path),
                                     str(out_path)], stdout=subprocess.DEVNULL, stderr=err, env=env)
            code = proc.wait()
        if code == -9 and spec["device"] == "cpu":  # the kernel's OOM killer
            return {"status": "oom", "peak_bytes": None}
        if code != 0 or not out_path.exists():
            tail = err_path.read_text()[-3000:]
            raise RuntimeError(f"memory measurement of {spec['method']} on {spec['backbone']} at batch size "
                               f"{spec['batch_size']} failed (exit {code}):\n{tail}")
        result = json.loads(out_path.read_text())
    return result


def efficiency(backbone: str, method: str, options: dict, batch_sizes: list[int], out: str | Path, *,
               input_length: int = 128, target_length: int = 32, device: str = "auto", seed: int = 0,
               experiment: str = "adhoc", record: dict | None = None, progress: bool = True,
               input_lengths: list[int] | None = None, time_steps: int = 0) -> pd.DataFrame:
    """Measure every batch size (at every input length) in its own child process; write
    ``out/result.parquet``. ``time_steps`` > 0 also times that many further training steps
    (``step_seconds``, their median); ``input_lengths`` replaces ``input_length`` by a list."""
    from .backbones import load_backbone
    from .deltas import build_delta

    started = time.perf_counter()
    # Names and options fail here, in one clear line, not in a child's traceback; the shapes give
    # |θ| and the backbone's size even for a batch size that runs out of memory.
    shapes = load_backbone(backbone, config_only=True)
    backbone_parameters = shapes.num_parameters
    probe = build_delta(method, shapes, **options)
    options, trainable = probe.options, probe.size
    lengths = list(input_lengths or [input_length])
    if min(lengths) < 1 or target_length < 1:
        raise ValueError(f"--input-length(s) and --target-length must be at least 1, got {lengths}, "
                         f"{target_length}")
    if time_steps < 0:
        raise ValueError(f"--time-steps must be at least 0, got {time_steps}")
    device = resolve_device(device)
    config = {"backbone": backbone, "method": method, "options": options, "batch_sizes": batch_sizes,
              "input_length": input_length, "target_length": target_length, "device": device, "seed": seed,
              "experiment": experiment}
    if input_lengths:  # new settings enter the hash only when used, so plain measurements keep theirs
        config["input_lengths"] = lengths
    if time_steps:
        config["time_steps"] = time_steps
    rows = []
    for input_length, batch_size in ((n, b) for n in lengths for b in batch_sizes):
        spec = {"backbone": backbone, "method": method, "options": options, "batch_size": batch_size,
                "input_length": input_length, "target_length": target_length, "device": device, "seed": seed,
                "time_steps": time_steps}
        result = run_child(spec)
        measure_name = MEASURES[device] if result.get("reset", True) else "cpu_peak_rss_lifetime"
        rows.append({"experiment": experiment, "stage": "efficiency", "backbone": backbone, "method": method,
                     "options": json.dumps(options, sort_keys=True), "batch_size": batch_size,
                     "input_length": input_length, "target_length": target_length,
                     "peak_bytes": result.get("peak_bytes"), "baseline_bytes": result.get("baseline_bytes"),
                     "measure": measure_name, "status": result["status"], "trainable": trainable,
                     "backbone_parameters": backbone_parameters, "step_seconds": result.get("step_seconds")})
        if progress:
            peak = result.get("peak_bytes")
            shown = f"{peak / 2**20:,.1f} MiB" if peak is not None else result["status"]
            timed = result.get("step_seconds")
            timed = f", {1000 * timed:,.1f} ms a step" if timed is not None else ""
            print(f"{method} on {backbone}, batch {batch_size}, length {input_length}: {shown} ({measure_name})"
                  f"{timed}", flush=True)
    frame = pd.DataFrame(rows).astype({"peak_bytes": "Int64", "baseline_bytes": "Int64", "trainable": "Int64",
                                       "backbone_parameters": "Int64"})
    for key, value in (record or {}).items():
        frame[key] = value
    for key, value in provenance(config, time.perf_counter() - started, precision="fp32").items():  # no autocast
        frame[key] = value
    write_parquet(frame, Path(out) / "result.parquet")
    return frame


def _run(args) -> int:
    efficiency(args.backbone, args.method, parse_sets(args.set), parse_batch_sizes(args.batch_sizes), args.out,
               input_length=args.input_length, target_length=args.target_length, device=args.device,
               seed=args.seed, experiment=args.experiment, record=parse_sets(args.record),
               progress=not args.no_progress,
               input_lengths=parse_lengths(args.input_lengths) if args.input_lengths else None,
               time_steps=args.time_steps)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("efficiency", help="peak memory of one training step per batch size (survey Fig. 9)")
    p.add_argument("--backbone", required=True)
    p.add_argument("--method", required=True, help="delta method (finetune = full fine-tuning)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="method option, e.g. r=8")
    p.add_argument("--batch-sizes", default="0,1,8,32,64", help="comma-separated; 0 = static memory")
    p.add_argument("--input-length", type=int, default=128)
    p.add_argument("--input-lengths", default=None, metavar="N,N,...",
                   help="comma-separated input lengths, each measured at every batch size (replaces --input-length)")
    p.add_argument("--time-steps", type=int, default=0,
                   help="also time this many further training steps; step_seconds = their median (survey Fig. 13)")
    p.add_argument("--target-length", type=int, default=32, help="decoder length (seq2seq backbones)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("--seed", type=int, default=0, help="seed of θ0 and of the synthetic batch")
    p.add_argument("--out", required=True, help="output folder: result.parquet (stage efficiency)")
    p.add_argument("--experiment", default="adhoc", help="experiment name recorded in the results")
    p.add_argument("--record", action="append", metavar="KEY=VALUE",
                   help="extra result column (repeatable), e.g. method=lora-r8 to name a configured instance")
    p.add_argument("--no-progress", action="store_true", help="no per-measurement lines")
    p.set_defaults(func=_run)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        sys.exit(_child_main(sys.argv[2:]))
    sys.exit("usage: deltaspace efficiency ... (python -m deltaspace.efficiency is the measuring child)")
