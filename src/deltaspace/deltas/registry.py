"""The registry of delta methods: a name → class table, and the two entry points.

A method name is one registered method (``lora``) or several joined by ``+``
(``prompt+bitfit+adapter``): a composite, see :mod:`.combined`.
"""

from __future__ import annotations

import difflib
from typing import Any

from ..backbones import Backbone, load_backbone
from .adapter import Adapter
from .base import Delta, DeltaMethod, DeltaOptionError
from .bitfit import BitFit
from .classifier import Classifier
from .combined import Combined, is_composite, split_name
from .finetune import FineTune
from .lora import LoRA
from .lora_variants import DoRA, FLoRA, AdaLoRA, LoRAMPCd, LoRAMPCn, LoRAMPCo, ParallelAdapter, TriLoRA
from .prefix import Prefix
from .prompt import Prompt
from .scaling import IA3, SSB, SSL, SAMParser
from .partial import LastLayer, Selective

METHODS: dict[str, type[DeltaMethod]] = {cls.name: cls for cls in (
    Adapter, Prefix, LoRA, Prompt, BitFit, FineTune,
    # the decomposition paper's methods (docs/methods.md)
    LoRAMPCo, LoRAMPCd, LoRAMPCn, ParallelAdapter, TriLoRA, FLoRA, AdaLoRA, DoRA, SSL, SSB, IA3, SAMParser,
    # the survey's scale-study methods (§5.3, Table 9)
    LastLayer, Selective,
    # the trainable encoder head (`deltaspace train --head classifier` appends it as METHOD+classifier)
    Classifier)}


def install_rank(method: DeltaMethod) -> int:
    """Where a component goes in a composite's install order (see :mod:`.combined`): methods that
    claim existing backbone tensors first (they must not see delta modules), peft-injected ones
    last (they hide the Linear they wrap from every other method's pattern), the rest between."""
    if isinstance(method, (FineTune, BitFit, LastLayer, Selective)):
        return 0
    if isinstance(method, (LoRA, AdaLoRA)):
        return 2
    return 1


class UnknownMethodError(ValueError):
    pass


def method_class(name: str) -> type[DeltaMethod]:
    if name not in METHODS:
        close = difflib.get_close_matches(name, METHODS, n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownMethodError(f"unknown delta method {name!r}.{hint} Valid methods: {', '.join(METHODS)}")
    return METHODS[name]


def component_classes(name: str) -> list[type[DeltaMethod]]:
    """The classes a method name stands for (one, or a composite's components); checks the name."""
    parts = split_name(name)
    if len(parts) == 1:
        return [method_class(parts[0])]
    seen = set()
    for part in parts:
        if not part:
            raise UnknownMethodError(f"method {name!r} has an empty component; write components joined by '+', "
                                     f"e.g. prompt+bitfit+adapter. Valid components: {', '.join(METHODS)}")
        if part in seen:
            raise UnknownMethodError(f"method {name!r} names component {part!r} twice; each component appears "
                                     f"once. Valid components: {', '.join(METHODS)}")
        seen.add(part)
    try:
        return [method_class(part) for part in parts]
    except UnknownMethodError as err:
        raise UnknownMethodError(f"in composite method {name!r}: {err}") from None


def check_method_name(name: str) -> str:
    """``name`` if it is a registered method or a valid composite, else UnknownMethodError."""
    component_classes(name)
    return name


def build_delta(name: str, backbone: Backbone, **options: Any) -> Delta:
    """Install method ``name`` (or the composite ``a+b+...``) on ``backbone`` (frozen) and return
    its flat-vector view."""
    classes = component_classes(name)
    for cls in classes:
        if backbone.family not in cls.families:
            raise DeltaOptionError(f"method {cls.name!r} does not support backbone family {backbone.family!r}; "
                                   f"supported: {', '.join(cls.families)}")
    if is_composite(name):
        method = Combined(name, classes, options, install_rank)
    else:
        method = classes[0](**options)
    return Delta(method, backbone)


def delta_size(name: str, backbone: str, **options: Any) -> int:
    """|θ| of a method on a backbone, from the architecture alone (no weights, no download)."""
    return build_delta(name, load_backbone(backbone, config_only=True), **options).size
