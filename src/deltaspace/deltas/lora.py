"""LoRA (Hu et al. 2021) through peft: ``X + s · X W_A W_B`` on Q and V of every attention.

peft matches the paper exactly here: r = 10 and lora_alpha = 16 give s = 1.6, and Q, V of all
36 attention modules of T5-base (cross-attention included) give 72 · 2 · 768 · 10 = 1,105,920
(unified-dt notes §1.3, §6.24). The modules are injected without wrapping the model, so the
backbone keeps its own forward and generate.

``targets`` picks the adapted matrices: ``"qv"`` (the default; unified-dt and the survey) or
``"all"``, the six linear maps of every block (Q, K, V, attention output, FFN up and down) as the
decomposition paper's code adapts (its notes §3.8: 18·h·r per block on BERT-like encoders).
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbones import Backbone
from .base import DeltaMethod, kaiming_uniform
from .targets import target_set


class LoRA(DeltaMethod):
    name = "lora"
    defaults = {"r": 10, "alpha": 16.0, "targets": "qv"}
    families = DeltaMethod.families + ("gpt2",)  # peft wraps GPT-2's fused Conv1D c_attn too

    def install(self, backbone: Backbone) -> list[nn.Parameter]:
        from peft import LoraConfig, inject_adapter_in_model

        config = LoraConfig(r=self.options["r"], lora_alpha=self.options["alpha"], lora_dropout=0.0, bias="none",
                            target_modules=target_set(self.name, backbone.family, self.options["targets"]))
        inject_adapter_in_model(config, backbone.model)
        return [p for n, p in backbone.model.named_parameters() if ".lora_A." in n or ".lora_B." in n]

    def init_tensor(self, name, param, generator):
        # peft's defaults: A kaiming-uniform, B zero, so a fresh LoRA leaves the backbone unchanged.
        if ".lora_B." in name:
            return torch.zeros(param.shape)
        return kaiming_uniform(param.shape, generator)
