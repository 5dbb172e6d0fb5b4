"""Attention implementation: a training step with PyTorch's SDPA against the eager attention.

Stage 0 loads the backbone with SDPA unless the method needs eager attention (prefix tuning,
which extends keys and masks inside attention; ``deltaspace.train.stage0.attention_for``). This
times the same LoRA step (θ bound into the backbone, the label-head loss, AdamW) on two copies of
the backbone, one per implementation, alternating step by step so that a shared machine's load
falls on both alike. It reports the median process CPU time per step (the work, which waiting for
a core does not inflate) and the median wall time, and the eager/SDPA ratios.

Usage: python benchmarks/attention.py [--backbone minilm] [--steps 20] [--batch 16] [--length 64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=64)
    args = parser.parse_args()

    from deltaspace.backbones import load_backbone
    from deltaspace.deltas import build_delta
    from deltaspace.heads import make_head

    verbalizers = ["negative", "neutral", "positive"]
    g = torch.Generator().manual_seed(0)
    steppers = {}
    for impl in ("eager", "sdpa"):
        bb = load_backbone(args.backbone, attn_implementation=impl)
        delta = build_delta("lora", bb, r=8)
        head = make_head(bb, delta, verbalizers)
        theta = torch.nn.Parameter(delta.init(0))
        opt = torch.optim.AdamW([theta], lr=1e-3)
        bb.model.train()

        def step(batch, delta=delta, head=head, theta=theta, opt=opt):
            with delta.bound(theta):
                loss = head.loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        steppers[impl] = step
    vocab = bb.tokenizer.vocab_size
    lengths = torch.randint(args.length // 2, args.length + 1, (args.steps + 2, args.batch), generator=g)
    cpu = {impl: [] for impl in steppers}
    wall = {impl: [] for impl in steppers}
    for i in range(args.steps + 2):
        ids = torch.randint(1000, vocab - 1, (args.batch, args.length), generator=g)
        mask = (torch.arange(args.length) < lengths[i, :, None]).long()  # right padding, as batches have
        batch = {"input_ids": ids * mask, "attention_mask": mask,
                 "label": torch.randint(0, 3, (args.batch,), generator=g)}
        for impl, step in steppers.items():
            c, w = time.process_time(), time.perf_counter()
            step(batch)
            if i >= 2:  # two warm-up steps
                cpu[impl].append(time.process_time() - c)
                wall[impl].append(time.perf_counter() - w)
    device = f"cpu ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})"
    print(f"backbone {args.backbone}, LoRA r=8, batch {args.batch} x <= {args.length} tokens, {args.steps} steps, {device}")
    for impl in steppers:
        print(f"{impl:>6}: {statistics.median(cpu[impl]) * 1000:7.1f} ms CPU/step  "
              f"{statistics.median(wall[impl]) * 1000:7.1f} ms wall/step")
    print(f"eager/SDPA step time: {statistics.median(cpu['eager']) / statistics.median(cpu['sdpa']):.2f} (CPU), "
          f"{statistics.median(wall['eager']) / statistics.median(wall['sdpa']):.2f} (wall)")


if __name__ == "__main__":
    main()
