"""BitFit (Ben Zaken et al. 2021): tune only the bias terms of the Transformer blocks.

T5 has no biases at all, so on T5 (and any Linear without one) BitFit adds a zero-initialized
bias to every Linear of the blocks, as OpenDelta's BitFit does; θ then starts as the identity.
Existing biases start from their pre-trained values.

"All the bias components in PLMs" (the survey's §5.2) include the pretrained masked-LM head's
biases when the backbone carries that head (``load_backbone(..., mlm_head=True)``, the survey's
RoBERTa runs through ``--head mlm``/``mlm-template``): its dense, layer-norm and vocabulary biases
(52,313 on RoBERTa-large) join θ, which gives Table 5's printed 0.09% (the blocks alone: 0.076%).
``mlm_head=False`` leaves the head frozen, as every other method does. Without a masked-LM head
(the decomposition paper's classifier head, whose weights are θ of their own) nothing changes:
RoBERTa-base's 0.82‰ of Tables II-IV.
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbones import Backbone
from .base import DeltaMethod
from .targets import TARGETS, matching_modules


class BitFit(DeltaMethod):
    name = "bitfit"
    defaults = {"mlm_head": True}
    families = DeltaMethod.families + ("gpt2",)

    def install(self, backbone: Backbone) -> list[nn.Parameter]:
        params = []
        head = backbone.mlm_head if self.options["mlm_head"] else None
        if head is not None:
            # θ's tensors must live in the model: the head joins it as a submodule (the same object
            # the masked-LM head scores with, so a bound θ reaches it).
            backbone.model.add_module("deltaspace_mlm_head", head)
            params += [p for n, p in head.named_parameters() if n.rsplit(".", 1)[-1] == "bias"]
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
