"""Prompt tuning (Lester et al. 2021): n soft tokens in front of the encoder input.

The prompt replaces nothing: its vectors are prepended to the token embeddings and the model
adds its own position embeddings (BART, BERT), as IPT's code does (ipt notes §1.1, A18); the
attention mask gets n visible columns. 100 tokens on BART-base give 76,800 parameters, the same
count peft's prompt tuning gives with ``num_transformer_submodules=1``; a test checks the two.
The table starts N(0, 0.02) (IPT's code; random vocabulary rows were worse there).
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbones import Backbone
from .base import DeltaMethod, normal_


class PromptTable(nn.Module):
    def __init__(self, n: int, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n, d), requires_grad=False)


class Prompt(DeltaMethod):
    name = "prompt"
    defaults = {"n": 100}
    families = DeltaMethod.families + ("gpt2",)

    def install(self, backbone: Backbone) -> list[nn.Parameter]:
        device = next(backbone.model.parameters()).device
        with torch.device(device):
            table = PromptTable(self.options["n"], backbone.hidden_size)
        backbone.model.add_module("deltaspace_prompt", table)
        return [table.weight]

    def init_tensor(self, name, param, generator):
        return normal_(param.shape, 0.02, generator)

    def prepare_inputs(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        inputs = dict(inputs)
        input_ids = inputs.pop("input_ids")
        embeds = model.get_input_embeddings()(input_ids)
        prompt = model.deltaspace_prompt.weight.to(embeds.dtype)
        batch = input_ids.shape[0]
        inputs["inputs_embeds"] = torch.cat([prompt.expand(batch, -1, -1), embeds], dim=1)
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(input_ids)
        inputs["attention_mask"] = torch.cat(
            [torch.ones(batch, prompt.shape[0], dtype=mask.dtype, device=mask.device), mask], dim=1)
        return inputs
