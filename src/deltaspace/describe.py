"""`deltaspace describe`: what a delta method adds to a backbone, from the config alone if asked.

Prints |θ|, the share of backbone parameters and the modules the method touches (an
OpenDelta-style structure view); ``--json`` for machines. A composite (``prompt+bitfit+adapter``)
also lists each component's share of θ; ``--head classifier --labels N`` shows the trainable
encoder head that ``deltaspace train --head classifier`` adds to θ.
"""

from __future__ import annotations

import json
from collections import Counter

from .backbones import load_backbone
from .deltas import METHODS, build_delta
from .deltas.combined import Combined
from .options import parse_sets
from .train.commands import method_name


def describe(backbone_name: str, method: str, options: dict, config_only: bool) -> dict:
    backbone = load_backbone(backbone_name, config_only=config_only)
    total = sum(p.numel() for p in backbone.model.parameters())
    delta = build_delta(method, backbone, **options)
    groups = Counter()
    for slot in delta.manifest:
        groups[_module_pattern(slot.name)] += slot.numel
    report = {"backbone": backbone_name, "method": method, "options": delta.options, "size": delta.size,
              "backbone_parameters": total, "share_permille": 1000 * delta.size / total,
              "modules": [{"pattern": k, "parameters": v} for k, v in sorted(groups.items())]}
    if isinstance(delta.method, Combined):
        report["components"] = delta.method.component_sizes(delta.manifest)
    return report


def _module_pattern(name: str) -> str:
    """Collapse layer indices so 60 adapters read as a handful of lines."""
    return ".".join("*" if part.isdigit() else part for part in name.split("."))


def _run(args) -> int:
    from .train.stage0 import classifier_method  # what `train --head classifier` builds

    options = parse_sets(args.set)
    reports = []
    for m in args.method:
        opts = options if len(args.method) == 1 else {}
        if args.head == "classifier":
            m, opts = classifier_method(m, opts, args.labels)
        reports.append(describe(args.backbone, m, opts, args.config_only))
    if args.json:
        print(json.dumps(reports, indent=2))
        return 0
    for r in reports:
        opts = ", ".join(f"{k}={v}" for k, v in r["options"].items()) or "no options"
        print(f"{r['method']} on {r['backbone']} ({opts})")
        print(f"  |θ| = {r['size']}  ({r['share_permille']:.3f}‰ of {r['backbone_parameters']:,} backbone parameters)")
        for name, size in r.get("components", {}).items():
            print(f"  {name:>12}: {size:,}")
        for m in r["modules"]:
            print(f"    {m['parameters']:>12,}  {m['pattern']}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("describe", help="parameter count and structure of delta methods on a backbone")
    p.add_argument("--backbone", required=True, help="registered backbone name or local model folder")
    p.add_argument("--method", required=True, action="append", type=method_name, metavar="METHOD",
                   help="delta method or composite a+b+c (repeat for several; --set applies only with one); "
                        f"methods: {', '.join(METHODS)}")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="method option, e.g. r=8; for a composite component.key, e.g. prompt.n=10")
    p.add_argument("--head", choices=["label", "classifier"], default="label",
                   help="classifier: include the trainable encoder head that `train --head classifier` adds")
    p.add_argument("--labels", type=int, default=2, help="outputs of the classifier head (1 = regression)")
    p.add_argument("--config-only", action="store_true", help="build shapes only: no weights, no download")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run)
