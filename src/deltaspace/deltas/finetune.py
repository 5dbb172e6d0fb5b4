"""Full fine-tuning as a delta method: θ is every weight of the backbone (θ starts at θ0).

It gives fine-tuning the same flat-vector interface as the delta methods, which is what the
Fastfood extension (unified-dt §2.6) decodes into.
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbones import Backbone
from .base import DeltaMethod


class BackboneWeights(DeltaMethod):
    """A method whose θ is some of the backbone's own weights, starting at their pre-trained values
    (fine-tuning: all of them; the survey's last-layer and selective-module tuning: a subset)."""

    def select(self, backbone: Backbone) -> list[nn.Parameter]:
        raise NotImplementedError

    def install(self, backbone: Backbone) -> list[nn.Parameter]:
        params = self.select(backbone)
        # A copy: evaluation loads θ into these same tensors, and init must still return θ0.
        self._pretrained = {id(p): p.detach().clone() for p in params}
        return params

    def init_tensor(self, name, param, generator):
        if param.device.type == "meta":
            return torch.zeros(param.shape)
        return self._pretrained[id(param)].cpu().float()


class FineTune(BackboneWeights):
    name = "finetune"
    defaults = {}
    families = DeltaMethod.families + ("gpt2",)

    def select(self, backbone: Backbone) -> list[nn.Parameter]:
        return list(backbone.model.parameters())  # de-duplicated: tied weights appear once
