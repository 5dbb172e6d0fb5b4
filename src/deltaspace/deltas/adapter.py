"""Bottleneck adapter (Houlsby et al. 2019), as unified-dt uses it.

``X <- X + f(X W_down) W_up`` with SiLU, no biases, after every attention sub-layer (decoder
cross-attention included) and every FFN sub-layer: on T5-base that is 60 adapters of
2·768·r_A weights, 1,105,920 at r_A = 12 (unified-dt notes §1.1). peft has no such adapter.

The adapter reads the output of each sub-layer's output projection, before the residual add.
W_down starts N(0, 0.02) (the reference code's init); W_up starts at zero so a fresh adapter
leaves the backbone unchanged (a choice: the reference code draws both from N(0, 0.02)).

Options cover the other papers' adapters without new methods (docs/methods.md):

* ``placement="sublayers"`` (default) after every attention and FFN sub-layer, as above and as
  Houlsby's adapter (the decomposition paper's HAdapter); ``placement="ffn"`` after the FFN
  sub-layers only, Pfeiffer's placement (its PAdapter).
* ``bias=True`` gives both projections a bias (zero at init): the survey's and the
  decomposition paper's adapters have them (2·h·r + r + h per adapter; notes §3.8).
* ``activation``: SiLU (unified-dt, the survey, HAdapter's swish) or ReLU (PAdapter).
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbones import Backbone
from .base import DeltaMethod, normal_
from .targets import TARGETS, matching_modules

ACTIVATIONS = {"silu": nn.functional.silu, "relu": nn.functional.relu, "gelu": nn.functional.gelu,
               "tanh": torch.tanh}


class Bottleneck(nn.Module):
    def __init__(self, d: int, r: int, activation: str, bias: bool = False) -> None:
        super().__init__()
        self.down = nn.Linear(d, r, bias=bias)
        self.up = nn.Linear(r, d, bias=bias)
        self.activation = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.activation(self.down(x)))


#: ``placement`` option → the FamilyTargets field naming the Linear layers an adapter follows.
PLACEMENTS = {"sublayers": "sublayer_out", "ffn": "ffn_out"}


def _apply_adapter(module: nn.Module, _inputs, output: torch.Tensor) -> torch.Tensor:
    return module.deltaspace_adapter(output)


class Adapter(DeltaMethod):
    name = "adapter"
    defaults = {"r": 12, "activation": "silu", "placement": "sublayers", "bias": False}

    def install(self, backbone: Backbone) -> list[nn.Parameter]:
        from .base import DeltaOptionError

        if self.options["activation"] not in ACTIVATIONS:
            raise DeltaOptionError(f"{self.name}: activation {self.options['activation']!r} is not one of "
                                   f"{', '.join(ACTIVATIONS)}")
        if self.options["placement"] not in PLACEMENTS:
            raise DeltaOptionError(f"{self.name}: placement {self.options['placement']!r} is not one of "
                                   f"{', '.join(PLACEMENTS)}")
        pattern = getattr(TARGETS[backbone.family], PLACEMENTS[self.options["placement"]])
        params = []
        for _, linear in matching_modules(backbone.model, pattern, nn.Linear):
            w = linear.weight
            with torch.device(w.device):
                bottleneck = Bottleneck(linear.out_features, self.options["r"], self.options["activation"],
                                        self.options["bias"]).to(w.dtype)
            bottleneck.requires_grad_(False)
            linear.add_module("deltaspace_adapter", bottleneck)
            linear.register_forward_hook(_apply_adapter)
            params += [p for p in bottleneck.parameters()]
        return params

    def init_tensor(self, name, param, generator):
        if name.endswith("up.weight") or name.endswith(".bias"):
            return torch.zeros(param.shape)
        return normal_(param.shape, 0.02, generator)
