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
    linear: str  # BitFit: every module of the Transformer blocks, and the embedding LayerNorm
    # The decomposition paper's placements (its notes §3.8, §6 #1):
    all_linear: str  # LoRA targets="all", PA, DoRA, SAM-PARSER...: Q, K, V, attention output, FFN up and down
    ffn_out: str  # PAdapter (Pfeiffer): the output projection of every FFN sub-layer only
    key_value_ffn_up: str  # (IA)³, SSL, SSB: key, value and the FFN up-projection
    cross_attention: str = r"(?!)"  # prefix tuning's cross=True: the decoder's cross-attention (none on encoders)


_BERT_LIKE = FamilyTargets(
    query_value=r".*\.attention\.self\.(query|value)",
    sublayer_out=r".*\.layer\.\d+\.(attention\.output\.dense|output\.dense)",
    self_attention=r".*\.attention\.self",
    key="key", value="value",
    linear=r".*\.layer\.\d+\..*|(.*\.)?embeddings\.LayerNorm",
    all_linear=r".*\.layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense|intermediate\.dense"
               r"|output\.dense)",
    ffn_out=r".*\.layer\.\d+\.output\.dense",
    key_value_ffn_up=r".*\.layer\.\d+\.(attention\.self\.(key|value)|intermediate\.dense)",
)

# Decoder-only Llama-style blocks (Llama, Qwen2, Mistral, SmolLM2): model.layers.N.{self_attn,mlp}.
# The gated FFN has two up-projections; as on T5 v1.1, the linear branch up_proj is the one to scale.
_LLAMA_LIKE = FamilyTargets(
    query_value=r".*\.layers\.\d+\.self_attn\.(q_proj|v_proj)",
    sublayer_out=r".*\.layers\.\d+\.(self_attn\.o_proj|mlp\.down_proj)",
    self_attention=r".*\.layers\.\d+\.self_attn",
    key="k_proj", value="v_proj",
    linear=r".*\.layers\.\d+\..*",
    all_linear=r".*\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))",
    ffn_out=r".*\.layers\.\d+\.mlp\.down_proj",
    key_value_ffn_up=r".*\.layers\.\d+\.(self_attn\.(k_proj|v_proj)|mlp\.up_proj)",
)

TARGETS: dict[str, FamilyTargets] = {
    "t5": FamilyTargets(
        query_value=r".*\.(SelfAttention|EncDecAttention)\.(q|v)",
        sublayer_out=r".*\.((SelfAttention|EncDecAttention)\.o|DenseReluDense\.wo)",
        self_attention=r".*\.SelfAttention",
        key="k", value="v",
        linear=r".*\.block\.\d+\..*",
        all_linear=r".*\.((SelfAttention|EncDecAttention)\.(q|k|v|o)|DenseReluDense\.(wi|wi_0|wi_1|wo))",
        ffn_out=r".*\.DenseReluDense\.wo",
        # the gated FFN (T5 v1.1) has two up-projections; the linear branch wi_1 is the one to scale
        key_value_ffn_up=r".*\.((SelfAttention|EncDecAttention)\.(k|v)|DenseReluDense\.(wi|wi_1))",
        cross_attention=r".*\.EncDecAttention",
    ),
    "bart": FamilyTargets(
        query_value=r".*\.(self_attn|encoder_attn)\.(q_proj|v_proj)",
        sublayer_out=r".*\.((self_attn|encoder_attn)\.out_proj|fc2)",
        self_attention=r".*\.self_attn",
        key="k_proj", value="v_proj",
        linear=r".*\.layers\.\d+\..*|.*\.layernorm_embedding",
        all_linear=r".*\.((self_attn|encoder_attn)\.(q_proj|k_proj|v_proj|out_proj)|layers\.\d+\.(fc1|fc2))",
        ffn_out=r".*\.layers\.\d+\.fc2",
        key_value_ffn_up=r".*\.((self_attn|encoder_attn)\.(k_proj|v_proj)|layers\.\d+\.fc1)",
        cross_attention=r".*\.encoder_attn",
    ),
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
    "deberta-v2": FamilyTargets(
        query_value=r".*\.attention\.self\.(query_proj|value_proj)",
        sublayer_out=_BERT_LIKE.sublayer_out,
        self_attention=r".*\.attention\.self",
        key="key_proj", value="value_proj",
        linear=_BERT_LIKE.linear,
        all_linear=r".*\.layer\.\d+\.(attention\.self\.(query_proj|key_proj|value_proj)|attention\.output\.dense"
                   r"|intermediate\.dense|output\.dense)",
        ffn_out=_BERT_LIKE.ffn_out,
        key_value_ffn_up=r".*\.layer\.\d+\.(attention\.self\.(key_proj|value_proj)|intermediate\.dense)",
    ),
    "llama": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    # GPT-2 keeps Q, K and V in one fused Conv1D (c_attn), so "qv" adapts all three (as peft's default
    # for GPT-2 does); its Conv1D layers are not nn.Linear, so only the methods whose families list
    # gpt2 (LoRA, prefix, prompt, BitFit, fine-tuning) run on it.
    "gpt2": FamilyTargets(
        query_value=r".*\.h\.\d+\.attn\.c_attn",
        sublayer_out=r".*\.h\.\d+\.(attn\.c_proj|mlp\.c_proj)",
        self_attention=r".*\.h\.\d+\.attn",
        key="c_attn", value="c_attn",
        linear=r".*\.h\.\d+\..*",
        all_linear=r".*\.h\.\d+\.(attn\.(c_attn|c_proj)|mlp\.(c_fc|c_proj))",
        ffn_out=r".*\.h\.\d+\.mlp\.c_proj",
        key_value_ffn_up=r"(?!)",
    ),
}

#: Families of the decoder-only backbones that every Linear-based method supports (GPT-2's Conv1D
#: layers only take the methods that list "gpt2" in their families).
LLAMA_FAMILIES = ("llama", "qwen2")


def matching_modules(model: nn.Module, pattern: str, kind: type = nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) pairs whose qualified name fully matches ``pattern``, in model order."""
    regex = re.compile(pattern)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, kind) and regex.fullmatch(n)]


#: The ``targets`` option of the LoRA family → the FamilyTargets field holding its pattern.
TARGET_SETS = {"qv": "query_value", "all": "all_linear"}


def target_set(method: str, family: str, targets: str) -> str:
    """The module pattern of a named target set (``"qv"`` or ``"all"``) on a backbone family."""
    if targets not in TARGET_SETS:
        from .base import DeltaOptionError

        raise DeltaOptionError(f"{method}: targets {targets!r} is not one of {', '.join(TARGET_SETS)}")
    return getattr(TARGETS[family], TARGET_SETS[targets])
