"""The survey's two partial fine-tuning methods for the scale study (§5.3, Table 9).

Both tune a subset of the backbone's *own* weights, so θ is those weights flattened and starts
at their pre-trained values (as in :mod:`.finetune`; θ0 = the pre-trained backbone):

* ``last-layer``: every weight of the final **encoder** block (notes A25: "the last layer of the
  encoder in T5"; the LM head and the encoder's final layer norm, which sit outside the block,
  stay frozen).
* ``selective``: a seeded random choice of whole modules (FFN blocks, single Q/K/V projections,
  the blocks' layer norms) across every layer of encoder and decoder, drawn until the chosen
  modules hold ``ratio`` of the backbone's parameters. The paper says the modules are chosen
  "randomly" (§5.3) and "manually" (A.3); a seed makes the random reading reproducible (A25).
  Modules are taken in a seeded random order, each that still fits under the target (one that
  would overshoot is skipped and the draw goes on); the gap left is closed by the smallest
  module that reaches the target. So the ratio is always reached and overshot by less than one
  module, and never by a whole FFN block when a Q/K/V matrix would do (one FFN block is 2.0% of
  T5 v1.1 small). Ending the draw at the first module that would overshoot put T5 v1.1 small at
  3.07% for Table 9's 2.1%. The chosen
  modules are logged and returned by ``touched_modules``; theta.json records every tensor
  through the manifest.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import torch
from torch import nn

from ..backbones import Backbone
from .base import DeltaOptionError
from .finetune import BackboneWeights

log = logging.getLogger(__name__)

# An encoder block of any supported family: T5 `encoder.block.N`, BART `model.encoder.layers.N`,
# BERT/RoBERTa/DeBERTa `encoder.layer.N` (a decoder's blocks never match: no `.encoder.` part).
_ENCODER_BLOCK = re.compile(r"(?P<stack>(?:.*\.)?encoder\.(?:block|layers|layer))\.(?P<index>\d+)")


def last_encoder_block(model: nn.Module) -> str:
    """Qualified name of the final encoder block, e.g. ``encoder.block.11``."""
    blocks = [(int(m["index"]), name) for name in dict(model.named_modules())
              if (m := _ENCODER_BLOCK.fullmatch(name))]
    if not blocks:
        raise DeltaOptionError("last-layer: found no encoder block (names like encoder.block.N, "
                               "encoder.layers.N or encoder.layer.N) in this backbone")
    return max(blocks)[1]


class LastLayer(BackboneWeights):
    """Tune every weight of the final encoder block; everything else stays frozen."""

    name = "last-layer"
    defaults = {}

    def select(self, backbone: Backbone) -> list[nn.Parameter]:
        block = last_encoder_block(backbone.model)
        self.block = block
        return list(backbone.model.get_submodule(block).parameters())

    def touched_modules(self, backbone: Backbone, names: list[str]) -> list[str]:
        return [self.block]


@dataclass(frozen=True)
class UnitPattern:
    """Modules that form one selectable unit: the regex's ``unit`` group + ``suffix`` names it.

    An FFN in BERT or BART is two sibling Linears (``intermediate.dense`` + ``output.dense``,
    ``fc1`` + ``fc2``), so both map to one unit; in T5 it is one module (``DenseReluDense``).
    """

    kind: str  # "ffn" | "qkv" | "norm"
    pattern: str
    suffix: str = ""


_BERT_UNITS = (
    UnitPattern("qkv", r"(?P<unit>.*\.attention\.self\.(query|key|value))"),
    UnitPattern("ffn", r"(?P<unit>.*\.layer\.\d+)\.(intermediate|output)\.dense", ".{intermediate,output}.dense"),
    UnitPattern("norm", r"(?P<unit>.*\.layer\.\d+\.(attention\.output|output)\.LayerNorm)"),
)

UNITS: dict[str, tuple[UnitPattern, ...]] = {
    "t5": (
        UnitPattern("qkv", r"(?P<unit>.*\.(SelfAttention|EncDecAttention)\.(q|k|v))"),
        UnitPattern("ffn", r"(?P<unit>.*\.DenseReluDense)"),
        UnitPattern("norm", r"(?P<unit>.*\.block\.\d+\.layer\.\d+\.layer_norm)"),
    ),
    "bart": (
        UnitPattern("qkv", r"(?P<unit>.*\.(self_attn|encoder_attn)\.(q_proj|k_proj|v_proj))"),
        UnitPattern("ffn", r"(?P<unit>.*\.layers\.\d+)\.(fc1|fc2)", ".{fc1,fc2}"),
        UnitPattern("norm", r"(?P<unit>.*\.layers\.\d+\.(self_attn_layer_norm|encoder_attn_layer_norm"
                            r"|final_layer_norm))"),
    ),
    "bert": _BERT_UNITS,
    "roberta": _BERT_UNITS,
    "deberta-v2": (
        UnitPattern("qkv", r"(?P<unit>.*\.attention\.self\.(query_proj|key_proj|value_proj))"),
        *_BERT_UNITS[1:],
    ),
}


def selectable_units(model: nn.Module, family: str) -> dict[str, list[nn.Parameter]]:
    """Every unit the selective method may draw, in model order, with its parameters."""
    compiled = [(re.compile(u.pattern), u.suffix) for u in UNITS[family]]
    units: dict[str, list[nn.Parameter]] = {}
    seen: set[int] = set()
    for name, module in model.named_modules():
        for regex, suffix in compiled:
            m = regex.fullmatch(name)
            if m:
                params = [p for p in module.parameters() if id(p) not in seen]
                seen.update(id(p) for p in params)
                units.setdefault(m["unit"] + suffix, []).extend(params)
                break
    return {k: v for k, v in units.items() if v}


class Selective(BackboneWeights):
    """Tune a seeded random set of whole modules holding ``ratio`` of the backbone's parameters.

    ``ratio`` is a fraction of all backbone parameters (Table 9's T5-base 4.2% is 0.042).
    """

    name = "selective"
    defaults = {"ratio": 0.042, "seed": 0}
    families = tuple(UNITS)

    def __init__(self, **options) -> None:
        super().__init__(**options)
        ratio = self.options["ratio"]
        if not 0 < ratio <= 1:
            raise DeltaOptionError(f"selective: option ratio={ratio!r} must be a fraction in (0, 1] of the "
                                   f"backbone's parameters, e.g. 0.042 for Table 9's 4.2%")

    def select(self, backbone: Backbone) -> list[nn.Parameter]:
        model = backbone.model
        total = sum(p.numel() for p in model.parameters())
        units = selectable_units(model, backbone.family)
        target = self.options["ratio"] * total
        available = sum(p.numel() for ps in units.values() for p in ps)
        if available < target:
            raise DeltaOptionError(
                f"selective: ratio={self.options['ratio']} asks for {target:,.0f} parameters but the "
                f"{len(units)} selectable modules of {backbone.name!r} hold {available:,} "
                f"(at most ratio={available / total:.4f})")
        names = list(units)
        sizes = {n: sum(p.numel() for p in ps) for n, ps in units.items()}
        generator = torch.Generator().manual_seed(self.options["seed"])
        drawn = [names[i] for i in torch.randperm(len(names), generator=generator).tolist()]
        chosen, count = [], 0
        for name in drawn:  # take modules in the seeded order that fit under the target, skip the others
            if count + sizes[name] > target:
                continue
            chosen.append(name)
            count += sizes[name]
            if count >= target:
                break
        if count < target:
            # Every module left would overshoot (it did not fit), so each reaches the target; the
            # smallest overshoots least (ties: the first drawn).
            taken = set(chosen)
            last = min((n for n in drawn if n not in taken and count + sizes[n] >= target), key=sizes.__getitem__)
            chosen.append(last)
            count += sizes[last]
        order = {n: i for i, n in enumerate(names)}
        self.taken = chosen  # in the order taken: only the last one may push the count past the target
        self.chosen = sorted(chosen, key=order.__getitem__)  # model order reads better than draw order
        log.info("selective (seed %d): %d modules, %d parameters = %.3f%% of %s: %s", self.options["seed"],
                 len(chosen), count, 100 * count / total, backbone.name, ", ".join(self.chosen))
        return [p for n in self.chosen for p in units[n]]

    def touched_modules(self, backbone: Backbone, names: list[str]) -> list[str]:
        return list(self.chosen)
