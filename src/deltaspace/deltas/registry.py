"""The registry of delta methods: a name → class table, and the two entry points."""

from __future__ import annotations

import difflib
from typing import Any

from ..backbones import Backbone, load_backbone
from .adapter import Adapter
from .base import Delta, DeltaMethod, DeltaOptionError
from .bitfit import BitFit
from .finetune import FineTune
from .lora import LoRA
from .lora_variants import DoRA, FLoRA, AdaLoRA, LoRAMPCd, LoRAMPCn, LoRAMPCo, ParallelAdapter, TriLoRA
from .prefix import Prefix
from .prompt import Prompt
from .scaling import IA3, SSB, SSL, SAMParser

METHODS: dict[str, type[DeltaMethod]] = {cls.name: cls for cls in (
    Adapter, Prefix, LoRA, Prompt, BitFit, FineTune,
    # the decomposition paper's methods (docs/methods.md)
    LoRAMPCo, LoRAMPCd, LoRAMPCn, ParallelAdapter, TriLoRA, FLoRA, AdaLoRA, DoRA, SSL, SSB, IA3, SAMParser)}


class UnknownMethodError(ValueError):
    pass


def method_class(name: str) -> type[DeltaMethod]:
    if name not in METHODS:
        close = difflib.get_close_matches(name, METHODS, n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownMethodError(f"unknown delta method {name!r}.{hint} Valid methods: {', '.join(METHODS)}")
    return METHODS[name]


def build_delta(name: str, backbone: Backbone, **options: Any) -> Delta:
    """Install method ``name`` on ``backbone`` (frozen) and return its flat-vector view."""
    cls = method_class(name)
    method = cls(**options)
    if backbone.family not in cls.families:
        raise DeltaOptionError(f"method {name!r} does not support backbone family {backbone.family!r}; "
                               f"supported: {', '.join(cls.families)}")
    return Delta(method, backbone)


def delta_size(name: str, backbone: str, **options: Any) -> int:
    """|θ| of a method on a backbone, from the architecture alone (no weights, no download)."""
    return build_delta(name, load_backbone(backbone, config_only=True), **options).size
