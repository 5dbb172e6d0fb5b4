"""BitFit (Ben Zaken et al. 2021): tune only the bias terms of the Transformer blocks.

T5 has no biases at all, so on T5 (and any Linear without one) BitFit adds a zero-initialized
bias to every Linear of the blocks, as OpenDelta's BitFit does; θ then starts as the identity.
Existing biases start from their pre-trained values.
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbones import Backbone
from .base import DeltaMethod
from .targets import TARGETS, matching_modules


class BitFit(DeltaMethod):
    name = "bitfit"
    defaults = {}

    def install(self, backbone: Backbone) -> list[nn.Parameter]:
        params = []
        for _, module in matching_modules(backbone.model, TARGETS[backbone.family].linear):
            bias = module._parameters.get("bias", "absent")
            if isinstance(module, nn.Linear) and bias is None:
                w = module.weight
                module.bias = nn.Parameter(torch.zeros(module.out_features, device=w.device, dtype=w.dtype),
                                           requires_grad=False)
                bias = module.bias
            if isinstance(bias, nn.Parameter):
                params.append(bias)
        self._pretrained = {id(p): p.detach().clone() for p in params}
        return params

    def init_tensor(self, name, param, generator):
        return self._pretrained[id(param)].cpu().float() if param.device.type != "meta" else torch.zeros(param.shape)
