"""Peak training-step memory of delta methods vs fine-tuning (survey Figure 9), as a table.

Runs `deltaspace efficiency` for each method (one fresh child process per batch size) and prints
the peak memory per batch size and its ratio to fine-tuning's, twice: the raw measure, and for
the CPU measure also less the measuring process's own footprint after its imports
(``baseline_bytes``: interpreter, torch, transformers), which no method can save.

    .venv/bin/python benchmarks/memory_efficiency.py [--backbone minilm] [--methods lora,adapter,bitfit,prompt,finetune]
        [--batch-sizes 0,1,8,32] [--input-length 128] [--target-length 32] [--device auto] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from deltaspace.efficiency import efficiency, parse_batch_sizes

MIB = 2**20


def table(frame: pd.DataFrame, column: str, methods: list[str]) -> str:
    """Markdown: one row per method, MiB per batch size, then the ratio to fine-tuning."""
    wide = frame.pivot(index="method", columns="batch_size", values=column).reindex(methods)
    sizes = list(wide.columns)
    head = "| method | |θ| | " + " | ".join(f"b={b} MiB" for b in sizes) + " | " + \
           " | ".join(f"b={b} /FT" for b in sizes) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(sizes))]
    trainable = frame.groupby("method").trainable.first()
    ft = wide.loc["finetune"] if "finetune" in wide.index else None
    for method, row in wide.iterrows():
        mib = [f"{v / MIB:,.1f}" if pd.notna(v) else "oom" for v in row]
        ratios = [f"{v / ft[b]:.2f}" if ft is not None and pd.notna(v) and pd.notna(ft[b]) else "-"
                  for b, v in row.items()]
        lines.append(f"| {method} | {trainable[method]:,} | " + " | ".join(mib) + " | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--methods", default="lora,adapter,bitfit,prompt,finetune")
    parser.add_argument("--batch-sizes", default="0,1,8,32")
    parser.add_argument("--input-length", type=int, default=128)
    parser.add_argument("--target-length", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None, help="keep each method's result.parquet here")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="memory-efficiency-"))
    frames = [efficiency(args.backbone, m, {}, parse_batch_sizes(args.batch_sizes), out / m,
                         input_length=args.input_length, target_length=args.target_length, device=args.device,
                         experiment="benchmark") for m in methods]
    frame = pd.concat(frames, ignore_index=True)
    measure = frame.measure.iloc[0]
    print(f"\n{args.backbone}, input {args.input_length}, target {args.target_length}, {measure}, "
          f"{frame.device.iloc[0]}; results in {out}\n")
    print(table(frame, "peak_bytes", methods))
    if measure.startswith("cpu"):
        frame["above_baseline"] = frame.peak_bytes - frame.baseline_bytes
        print(f"\nless the child's footprint after its imports "
              f"(baseline {frame.baseline_bytes.median() / MIB:,.0f} MiB, median):\n")
        print(table(frame, "above_baseline", methods))


if __name__ == "__main__":
    main()
