"""The decomposition paper's reconstruction-based methods: they rescale a frozen W's subspaces.

Notation of the paper (notes §1.2, §2): output = x W with W ∈ R^{n×m} (n = in, m = out), i.e. the
transpose of PyTorch's ``weight``; D1 ∈ R^{n×n} and D2 ∈ R^{m×m} are diagonal.

* ``ssl`` (new in the paper): φ(W) = D1 W, which scales the input dimension: θ holds d1 (n per matrix).
* ``ia3``: φ(W) = W D2, (IA)³ as the paper writes it: scales the output dimension (m per matrix).
* ``ssb`` (new in the paper): φ(W) = D1 W D2 (n + m per matrix).
* ``sam-parser``: φ(W) = U Σ' Vᵀ with W = U Σ Vᵀ frozen and the singular values Σ' trainable
  (min(n, m) per matrix), started at Σ.

SSL, SSB and (IA)³ act on key, value and the FFN up-projection (notes §3.8: the counts 3h, 6h, 9h
per block need exactly those); SAM-PARSER on the six linear maps of every block. All vectors start
where the backbone is unchanged (ones; Σ' = Σ). Only W is reconstructed: the bias is added after
the scaling, unchanged (x D1 W D2 + b), which is what φ(W) says; the original (IA)³ scales whole
keys, values and the activated FFN hidden state (docs/methods.md lists the difference).

The scalings are forward hooks on the frozen Linear (input · d1 before, output · d2 after), so no
weight is copied; SAM-PARSER keeps U and V as non-persistent buffers from an SVD at install time
(nothing is computed on the meta device, where only sizes matter) and adds U diag(Σ' − Σ) Vᵀ x.
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbones import Backbone
from .base import DeltaMethod
from .targets import TARGETS, matching_modules


class DiagonalScales(nn.Module):
    """d1 (input side, SSL) and/or d2 (output side, (IA)³) of one frozen Linear."""

    def __init__(self, linear: nn.Linear, scale_in: bool, scale_out: bool) -> None:
        super().__init__()
        if scale_in:
            self.d_in = nn.Parameter(torch.ones(linear.in_features), requires_grad=False)
        if scale_out:
            self.d_out = nn.Parameter(torch.ones(linear.out_features), requires_grad=False)


def _scale_input(linear: nn.Module, args: tuple) -> tuple:
    return (args[0] * linear.deltaspace_scale.d_in.to(args[0].dtype),) + tuple(args[1:])


def _scale_output(linear: nn.Module, _args: tuple, output: torch.Tensor) -> torch.Tensor:
    d = linear.deltaspace_scale.d_out.to(output.dtype)
    bias = linear.bias
    # (x W) D2 + b written as y·d2 + b·(1 − d2): exactly y when d2 = 1.
    return output * d if bias is None else output * d + bias * (1 - d)


class Scaling(DeltaMethod):
    """Diagonal scalings of key, value and FFN-up weights (SSL, (IA)³, SSB)."""

    scale_in: bool = False
    scale_out: bool = False
    defaults = {}

    def install(self, backbone: Backbone) -> list[nn.Parameter]:
        params = []
        for _, linear in matching_modules(backbone.model, TARGETS[backbone.family].key_value_ffn_up, nn.Linear):
            with torch.device(linear.weight.device):
                scales = DiagonalScales(linear, self.scale_in, self.scale_out).to(linear.weight.dtype)
            linear.add_module("deltaspace_scale", scales)
            if self.scale_in:
                linear.register_forward_pre_hook(_scale_input)
            if self.scale_out:
                linear.register_forward_hook(_scale_output)
            params += list(scales.parameters())
        return params

    def init_tensor(self, name, param, generator):
        return torch.ones(param.shape)


class SSL(Scaling):
    name = "ssl"
    scale_in = True


class IA3(Scaling):
    name = "ia3"
    scale_out = True


class SSB(Scaling):
    name = "ssb"
    scale_in = scale_out = True


class SingularValues(nn.Module):
    """Σ' of one frozen Linear, with its frozen singular vectors as buffers."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight
        k = min(weight.shape)
        if weight.device.type == "meta":
            u, s, vh = (torch.empty(weight.shape[0], k, device="meta"), torch.empty(k, device="meta"),
                        torch.empty(k, weight.shape[1], device="meta"))
        else:
            u, s, vh = torch.linalg.svd(weight.detach().float(), full_matrices=False)
        dtype = weight.dtype
        self.register_buffer("u", u.to(dtype), persistent=False)  # out × k
        self.register_buffer("vh", vh.to(dtype), persistent=False)  # k × in
        self.register_buffer("sigma0", s.to(dtype), persistent=False)
        self.sigma = nn.Parameter(s.clone().to(dtype), requires_grad=False)


def _replace_singular_values(linear: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    sv = linear.deltaspace_svd
    # U Σ' Vᵀ x + b = W x + b + U (Σ' − Σ) Vᵀ x: exactly the backbone's output at Σ' = Σ.
    h = nn.functional.linear(inputs[0].to(sv.vh.dtype), sv.vh) * (sv.sigma - sv.sigma0)
    return output + nn.functional.linear(h, sv.u).to(output.dtype)


class SAMParser(DeltaMethod):
    """SAM-PARSER: tune the singular values of every linear map of the blocks (notes §1.2, §6 #10)."""

    name = "sam-parser"
    defaults = {}

    def install(self, backbone: Backbone) -> list[nn.Parameter]:
        self._sigma0 = {}
        params = []
        for _, linear in matching_modules(backbone.model, TARGETS[backbone.family].all_linear, nn.Linear):
            linear.add_module("deltaspace_svd", SingularValues(linear))
            linear.register_forward_hook(_replace_singular_values)
            sv = linear.deltaspace_svd
            self._sigma0[id(sv.sigma)] = sv.sigma0
            params.append(sv.sigma)
        return params

    def init_tensor(self, name, param, generator):
        sigma0 = self._sigma0[id(param)]
        return torch.zeros(param.shape) if sigma0.device.type == "meta" else sigma0.detach().float().cpu()
