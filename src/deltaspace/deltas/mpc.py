"""Matrix Pattern Constraints (MPC): the decomposition paper's regularizers on ∆W = A·G·B.

In the paper's notation (output = x W, A ∈ R^{n×r} down, B ∈ R^{r×m} up; notes §2.3):

* MPCo (Eq. 25): ‖AᵀA − I_r‖²_F + ‖BBᵀ − I_r‖²_F: both factors semi-orthogonal;
* MPCd (Eq. 26): ‖AᵀA − I_r‖²_F + ‖BBᵀ − diag(BBᵀ)‖²_F: A semi-orthogonal, B's rows orthogonal
  with free norms (the r×r ``BBᵀ`` form of Eq. 26; the text's "BᵀB" is the m×m matrix and would
  contradict the derivation, notes §6 #5);
* MPCn is not a penalty: it is a nonlinearity between the factors, i.e. the parallel adapter
  (:mod:`.lora_variants`).

PyTorch stores the factors transposed: ``lora_A`` is r×in (= Aᵀ) and ``lora_B`` is out×r (= Bᵀ),
so AᵀA = lora_A·lora_Aᵀ and BBᵀ = lora_Bᵀ·lora_B; both Gram matrices are r×r.

Two aggregations over the adapted matrices (notes §6 #4):

* ``form="paper"``: the squared Frobenius terms of Eqs. 25/26, summed per matrix pair and
  averaged over the adapted matrices;
* ``form="adalora"``: AdaLoRA's code: non-squared Frobenius norms ‖·‖_F, averaged over the
  factor matrices (the A's and the B's), which is AdaLoRA's native orthogonality regularizer.

The regularizer is zero exactly at the constraint and adds no parameter.
"""

from __future__ import annotations

import re

import torch

KINDS = ("o", "d")
FORMS = ("paper", "adalora")

_A_SEGMENT = re.compile(r"(^|\.)lora_A(\.|$)")


def gram_deviations(lora_A: torch.Tensor, lora_B: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The two r×r matrices MPC drives to zero: (AᵀA − I, BBᵀ − I) or (AᵀA − I, off-diag(BBᵀ))."""
    r = lora_A.shape[0]
    eye = torch.eye(r, dtype=lora_A.dtype, device=lora_A.device)
    a = lora_A @ lora_A.T - eye
    gram_b = lora_B.T @ lora_B
    if kind == "o":
        b = gram_b - eye
    elif kind == "d":
        b = gram_b - torch.diag_embed(torch.diagonal(gram_b))
    else:
        raise ValueError(f"MPC kind {kind!r} is not one of {', '.join(KINDS)}")
    return a, b


def mpc_penalty(pairs: list[tuple[torch.Tensor, torch.Tensor]], kind: str, form: str = "paper") -> torch.Tensor:
    """The unweighted MPC regularizer over (lora_A, lora_B) pairs, aggregated as ``form`` says."""
    if not pairs:
        raise ValueError("MPC needs at least one (lora_A, lora_B) pair")
    if form == "paper":
        terms = [(a.square().sum() + b.square().sum()) for a, b in (gram_deviations(A, B, kind) for A, B in pairs)]
        return torch.stack(terms).mean()
    if form == "adalora":
        norms = [torch.linalg.matrix_norm(m) for A, B in pairs for m in gram_deviations(A, B, kind)]
        return torch.stack(norms).mean()
    raise ValueError(f"MPC form {form!r} is not one of {', '.join(FORMS)}")


def factor_pairs(views: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(lora_A, lora_B) tensors of each adapted matrix, paired by name, in manifest order."""
    pairs = []
    for name, tensor in views.items():
        if _A_SEGMENT.search(name):
            partner = _A_SEGMENT.sub(lambda m: f"{m.group(1)}lora_B{m.group(2)}", name, count=1)
            if partner not in views:
                raise KeyError(f"MPC: {name} has no partner {partner}")
            pairs.append((tensor, views[partner]))
    return pairs


def check_options(method: str, kind: str, form: str) -> None:
    from .base import DeltaOptionError

    if kind not in ("none",) + KINDS:
        raise DeltaOptionError(f"{method}: mpc {kind!r} is not one of none, {', '.join(KINDS)}")
    if form not in FORMS:
        raise DeltaOptionError(f"{method}: mpc_form {form!r} is not one of {', '.join(FORMS)}")
