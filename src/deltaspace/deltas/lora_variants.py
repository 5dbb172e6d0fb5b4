"""The decomposition paper's extension-based methods: LoRA + MPC, TriLoRA, FLoRA, AdaLoRA, the
parallel adapter (= LoRA + MPCn) and DoRA (combination-based). Notes §1.3-§1.4, §2.3, §4, §6.

Every method adds s·∆W to frozen Linear maps (``targets``: ``"all"`` = Q, K, V, attention output,
FFN up and down, the paper's placement; ``"qv"`` = Q and V). In the paper's notation, output =
x W with A ∈ R^{n×r}, B ∈ R^{r×m}; PyTorch keeps the factors transposed, ``lora_A`` r×in and
``lora_B`` out×r, as peft does, so the MPC penalties of :mod:`.mpc` apply to every method here.

* ``lora-mpco`` / ``lora-mpcd``: A B (peft's LoRA) + λ·L_MPC; A kaiming-uniform, B = 0, s = α/r;
* ``trilora``: A diag(d) B; A, B kaiming-uniform, d = 0, s = α/r;
* ``flora``: A M B with M ∈ R^{r×r}; A, B ~ N(0, 0.02), M = 0, s = α/r;
* ``adalora`` (peft): P diag(λ) Q + orthogonality; P, Q ~ N(0, 0.02), λ = 0, s = α/r;
* ``parallel-adapter`` = ``lora-mpcn``: x ↦ h(x A) B with h = ReLU; A kaiming-uniform, B = 0, no scale;
* ``dora``: m ⊙ (W + s A B) / ‖W + s A B‖_c; as LoRA, and m = the column norms of W.

The initializations are the paper's code's (notes §4). Each starts at ∆W = 0 (DoRA at
m/‖W‖_c = 1), so a fresh θ leaves the backbone unchanged.

AdaLoRA's adaptive rank allocation (importance scores, a budget schedule, masking λ) needs hooks
into the training loop that the flat-θ loop does not have: ``adalora`` is its SVD form with the
orthogonality regularizer and no pruning, at initial rank = target rank = r, so its size matches
the paper's ‰ column (r(n + m) + r per matrix). Setting ``orth_weight=0`` gives the paper's
"AdaLoRA − MPCo" row.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..backbones import Backbone
from .adapter import ACTIVATIONS
from .base import DeltaMethod, DeltaOptionError, kaiming_uniform, normal_
from .lora import LoRA
from .mpc import check_options, factor_pairs, mpc_penalty
from .targets import matching_modules, target_set


class MPCMixin:
    """The MPC regularizer over every (lora_A, lora_B) pair, weighted by ``mpc_weight``."""

    def mpc_kind(self) -> str:
        return self.options["mpc"]

    def penalty(self, views: dict[str, torch.Tensor]) -> torch.Tensor | None:
        kind, weight = self.mpc_kind(), self.options["mpc_weight"]
        if kind == "none" or weight == 0:
            return None
        return weight * mpc_penalty(factor_pairs(views), kind, self.options["mpc_form"])


class LoRAMPCo(MPCMixin, LoRA):
    """LoRA + MPCo: peft's LoRA (θ laid out exactly as ``lora``'s) plus λ·L_MPCo (Eq. 25)."""

    name = "lora-mpco"
    kind = "o"
    families = LoRA.families
    defaults = {"r": 8, "alpha": 16.0, "targets": "all", "mpc_weight": 0.1, "mpc_form": "paper"}

    def mpc_kind(self) -> str:
        return self.kind

    def install(self, backbone: Backbone) -> list[nn.Parameter]:
        check_options(self.name, self.kind, self.options["mpc_form"])
        return super().install(backbone)


class LoRAMPCd(LoRAMPCo):
    """LoRA + MPCd: peft's LoRA plus λ·L_MPCd (Eq. 26)."""

    name = "lora-mpcd"
    kind = "d"


# --- our own low-rank layers: a module on the frozen Linear plus a forward hook -------------------------


class LowRankUpdate(nn.Module):
    """s·∆W of one frozen Linear in one decomposed form; its tensors are θ's views under ``bound``."""

    def __init__(self, linear: nn.Linear, r: int, form: str, scale: float, activation: str | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.form, self.scale, self.dropout = form, scale, dropout
        self.activation = ACTIVATIONS[activation] if activation else None
        self.lora_A = nn.Parameter(torch.zeros(r, linear.in_features), requires_grad=False)
        self.lora_B = nn.Parameter(torch.zeros(linear.out_features, r), requires_grad=False)
        if form == "adb":
            self.lora_D = nn.Parameter(torch.zeros(r), requires_grad=False)
        elif form == "amb":
            self.lora_M = nn.Parameter(torch.zeros(r, r), requires_grad=False)
        elif form == "dora":
            self.magnitude = nn.Parameter(torch.zeros(linear.out_features), requires_grad=False)

    def update(self, x: torch.Tensor) -> torch.Tensor:
        """x ↦ s · x ∆W (or s · h(x A) B for the nonlinear form)."""
        h = nn.functional.linear(x.to(self.lora_A.dtype), self.lora_A)  # x A
        if self.form == "adb":
            h = h * self.lora_D
        elif self.form == "amb":
            h = h @ self.lora_M
        elif self.form == "nonlinear":
            h = nn.functional.dropout(self.activation(h), self.dropout, self.training)
        return nn.functional.linear(h, self.lora_B) * self.scale

    def dora(self, linear: nn.Linear, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """m ⊙ (W + s·∆W)x / ‖W + s·∆W‖_c + b, with the norm detached as DoRA's paper (§4.3) does."""
        weight = linear.weight
        merged = weight + self.scale * (self.lora_B @ self.lora_A).to(weight.dtype)
        norm = torch.linalg.vector_norm(merged, dim=1).detach()
        bias = linear.bias
        base = output if bias is None else output - bias
        out = (self.magnitude / norm).to(output.dtype) * (base + self.update(x).to(output.dtype))
        return out if bias is None else out + bias


def _apply_update(linear: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    update = linear.deltaspace_lowrank
    if update.form == "dora":
        return update.dora(linear, inputs[0], output)
    return output + update.update(inputs[0]).to(output.dtype)


class LowRankMethod(DeltaMethod):
    """A decomposed ∆W on every targeted Linear (``targets``: "all" or "qv")."""

    form: str = "ab"
    families = ("t5", "bart", "bert", "roberta", "deberta-v2", "llama", "qwen2")

    def scale(self) -> float:
        return self.options["alpha"] / self.options["r"]

    def install(self, backbone: Backbone) -> list[nn.Parameter]:
        if self.options["r"] < 1:
            raise DeltaOptionError(f"{self.name}: r must be at least 1, got {self.options['r']}")
        activation = self.options.get("activation")
        if activation is not None and activation not in ACTIVATIONS:
            raise DeltaOptionError(f"{self.name}: activation {activation!r} is not one of {', '.join(ACTIVATIONS)}")
        if "mpc" in self.options:
            check_options(self.name, self.options["mpc"], self.options["mpc_form"])
        pattern = target_set(self.name, backbone.family, self.options["targets"])
        self._linears = {}
        params = []
        for _, linear in matching_modules(backbone.model, pattern, nn.Linear):
            w = linear.weight
            with torch.device(w.device):
                update = LowRankUpdate(linear, self.options["r"], self.form, self.scale(), activation,
                                       self.options.get("dropout", 0.0)).to(w.dtype)
            linear.add_module("deltaspace_lowrank", update)
            linear.register_forward_hook(_apply_update)
            for p in update.parameters():
                self._linears[id(p)] = linear
                params.append(p)
        return params


class TriLoRA(MPCMixin, LowRankMethod):
    """TriLoRA: ∆W = A diag(d) B. ``mpc="o"`` is the paper's TriLoRA + MPCo (d stays free)."""

    name = "trilora"
    form = "adb"
    # The paper's TriLoRA code applies no α/r; alpha = r (here 8) gives s = 1.
    defaults = {"r": 8, "alpha": 8.0, "targets": "all", "mpc": "none", "mpc_weight": 0.1, "mpc_form": "paper"}

    def init_tensor(self, name, param, generator):
        if name.endswith("lora_D"):
            return torch.zeros(param.shape)
        return kaiming_uniform(param.shape, generator)


class FLoRA(MPCMixin, LowRankMethod):
    """FLoRA: ∆W = A M B with a free r×r core M (the paper runs it without MPC)."""

    name = "flora"
    form = "amb"
    defaults = {"r": 8, "alpha": 16.0, "targets": "all", "mpc": "none", "mpc_weight": 0.1, "mpc_form": "paper"}

    def init_tensor(self, name, param, generator):
        if name.endswith("lora_M"):
            return torch.zeros(param.shape)
        return normal_(param.shape, 0.02, generator)


class ParallelAdapter(LowRankMethod):
    """The parallel adapter on every targeted Linear: x W + h(x A) B, no scaling (notes §1.3)."""

    name = "parallel-adapter"
    form = "nonlinear"
    defaults = {"r": 8, "targets": "all", "activation": "relu", "dropout": 0.0}

    def scale(self) -> float:
        return 1.0

    def init_tensor(self, name, param, generator):
        if name.endswith("lora_B"):
            return torch.zeros(param.shape)
        return kaiming_uniform(param.shape, generator)


class LoRAMPCn(ParallelAdapter):
    """LoRA + MPCn: a nonlinearity between LoRA's factors, which is the parallel adapter exactly
    (the paper's "LoRA + MPCn" and "PA" rows are the same runs, notes §3.6)."""

    name = "lora-mpcn"


class DoRA(LowRankMethod):
    """DoRA: W' = m ⊙ (W + s·A B)/‖W + s·A B‖_c; θ = LoRA's factors + the magnitude m."""

    name = "dora"
    form = "dora"
    defaults = {"r": 8, "alpha": 16.0, "targets": "all"}

    def init_tensor(self, name, param, generator):
        if name.endswith("lora_B"):
            return torch.zeros(param.shape)
        if name.endswith("magnitude"):
            weight = self._linears[id(param)].weight
            if weight.device.type == "meta":
                return torch.zeros(param.shape)
            return torch.linalg.vector_norm(weight.detach().float(), dim=1).cpu()
        return kaiming_uniform(param.shape, generator)


class AdaLoRA(DeltaMethod):
    """AdaLoRA's SVD-form layers from peft (∆W = P Λ Q) with its orthogonality regularizer.

    ``orth_weight`` is AdaLoRA's γ (``reg_orth_coef``, 0.1 in its GLUE scripts); the regularizer
    is AdaLoRA's own form: non-squared Frobenius norms averaged over the P and Q factors. No rank
    pruning (see the module docstring).
    """

    name = "adalora"
    defaults = {"r": 8, "alpha": 16.0, "targets": "all", "orth_weight": 0.1}

    def install(self, backbone: Backbone) -> list[nn.Parameter]:
        from peft import AdaLoraConfig, inject_adapter_in_model

        r = self.options["r"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = AdaLoraConfig(init_r=r, target_r=r, lora_alpha=self.options["alpha"], lora_dropout=0.0,
                                   target_modules=target_set(self.name, backbone.family, self.options["targets"]),
                                   total_step=1)
            inject_adapter_in_model(config, backbone.model)
        return [p for n, p in backbone.model.named_parameters()
                if any(f".{k}." in n for k in ("lora_A", "lora_B", "lora_E"))]

    def init_tensor(self, name, param, generator):
        if ".lora_E." in name:
            return torch.zeros(param.shape)
        return normal_(param.shape, 0.02, generator)

    def penalty(self, views: dict[str, torch.Tensor]) -> torch.Tensor | None:
        weight = self.options["orth_weight"]
        if weight == 0:
            return None
        return weight * mpc_penalty(factor_pairs(views), "o", "adalora")
