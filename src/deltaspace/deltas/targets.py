"""Where each backbone family keeps the modules delta methods attach to.

Patterns are full-match regular expressions over qualified module names, so one table serves
every method: LoRA's Q/V, the adapters' sub-layer outputs, prefix tuning's self-attention.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class FamilyTargets:
    query_value: str  # LoRA: Q and V of every attention module (cross-attention included)
    sublayer_out: str  # adapters: the output projection of every attention and FFN sub-layer
    self_attention: str  # prefix tuning: self-attention modules (no cross-attention)
    key: str  # key/value projections inside a self-attention module
    value: str
    linear: str  # BitFit: every Linear of the Transformer blocks


_BERT_LIKE = FamilyTargets(
    query_value=r".*\.attention\.self\.(query|value)",
    sublayer_out=r".*\.layer\.\d+\.(attention\.output\.dense|output\.dense)",
    self_attention=r".*\.attention\.self",
    key="key", value="value",
    linear=r".*\.layer\.\d+\..*",
)

TARGETS: dict[str, FamilyTargets] = {
    "t5": FamilyTargets(
        query_value=r".*\.(SelfAttention|EncDecAttention)\.(q|v)",
        sublayer_out=r".*\.((SelfAttention|EncDecAttention)\.o|DenseReluDense\.wo)",
        self_attention=r".*\.SelfAttention",
        key="k", value="v",
        linear=r".*\.block\.\d+\..*",
    ),
    "bart": FamilyTargets(
        query_value=r".*\.(self_attn|encoder_attn)\.(q_proj|v_proj)",
        sublayer_out=r".*\.((self_attn|encoder_attn)\.out_proj|fc2)",
        self_attention=r".*\.self_attn",
        key="k_proj", value="v_proj",
        linear=r".*\.layers\.\d+\..*",
    ),
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
    "deberta-v2": FamilyTargets(
        query_value=r".*\.attention\.self\.(query_proj|value_proj)",
        sublayer_out=_BERT_LIKE.sublayer_out,
        self_attention=r".*\.attention\.self",
        key="key_proj", value="value_proj",
        linear=_BERT_LIKE.linear,
    ),
}


def matching_modules(model: nn.Module, pattern: str, kind: type = nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) pairs whose qualified name fully matches ``pattern``, in model order."""
    regex = re.compile(pattern)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, kind) and regex.fullmatch(n)]
