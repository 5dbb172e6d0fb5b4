"""Parameterizations that produce a delta method's flat θ from a low-dimensional vector.

Every stage of the subspace pipeline is the same training loop with a different module producing
θ (docs/subspace.md has the formulas and every paper-vs-code choice):

- stage 1, joint decomposition (unified-dt §2.1): `JointDecomposition`;
- stage 1, simplified pipeline (unified-dt §2.5): `SharedVectorSubspace`;
- stage 2, subspace optimization (unified-dt §2.2, IPT IST): `IntrinsicVector`;
- IPT multi-task subspace finding (ipt.md §1.2): `PromptAutoEncoder`, and its random-subspace
  baseline `RandomPromptSubspace` (ipt.md §1.6).

Naming: the paper's α, β mean three different things (unified-dt §6 item 5). Here the
interpolation weights are "mix" weights; the loss ratio (10, or IPT's 200) belongs to the caller;
landscape coordinates live in `landscape.py`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

INIT_STD = 0.02
"""Std of every unified-dt projection weight and intrinsic vector at init: the public code's
N(0, 0.02) (unified-dt §7); the paper states no initialization (§6 item 7)."""


def _normal(*shape: int, generator: torch.Generator | None) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape).normal_(0.0, INIT_STD, generator=generator))


class DownProjection(nn.Module):
    """Proj↓: θ (size) -> y, as Linear(size→y) → tanh → Linear(y→y), no biases (unified-dt A.2).

    The paper says "no bias term in any linear layer"; the public code gives both layers biases
    (unified-dt §6 item 6, §7). We follow the paper. Weights are created once and initialized in
    place, so the (y, size) matrix exists exactly once.
    """

    def __init__(self, size: int, y: int, generator: torch.Generator | None = None):
        super().__init__()
        self.size, self.y = size, y
        self.first = _normal(y, size, generator=generator)
        self.second = _normal(y, y, generator=generator)

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return F.linear(torch.tanh(F.linear(theta, self.first)), self.second)


class UpProjection(nn.Module):
    """Proj↑: y -> θ (size), one bias-free linear map θ̄ = W I with W of shape (size, y).

    At paper scale W is 110M floats (y=100), so it is stored once as a single parameter and applied
    with `F.linear`, which reads it in place: no transposed or expanded copy is made.
    """

    def __init__(self, size: int, y: int, generator: torch.Generator | None = None):
        super().__init__()
        self.size, self.y = size, y
        self.weight = _normal(size, y, generator=generator)

    def forward(self, intrinsic: torch.Tensor) -> torch.Tensor:
        """Differentiable decode of I with shape (y,) or (..., y) to (size,) or (..., size)."""
        return F.linear(intrinsic, self.weight)

    @torch.no_grad()
    def decode(self, intrinsic: torch.Tensor) -> Iterator[torch.Tensor]:
        """Decode a batch (n, y) one row at a time, without autograd, for evaluation.

        Transfer and the landscape evaluate many intrinsic vectors with a frozen Proj↑ (441 grid
        points per panel); yielding one θ at a time keeps one |θ| vector alive instead of n.
        """
        for row in intrinsic.reshape(-1, self.y):
            yield F.linear(row, self.weight)


def up_projections(sizes: Mapping[str, int], y: int, seed: int = 0) -> dict[str, UpProjection]:
    """One Proj↑ per method (in the order of `sizes`), initialized from one seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    return {method: UpProjection(size, y, generator) for method, size in sizes.items()}


def interpolation_weights(
    generator: torch.Generator | None = None, batch: int | None = None, k: int = 3
) -> torch.Tensor:
    """Random convex "mix" weights (a, b, 1-a-b) with a ~ U[0,1], b ~ U[0, 1-a] (unified-dt §2.1).

    The paper gives the ranges only; uniform draws, re-sampled every call (every step, and per
    example when `batch` is given), are unified-dt §6 item 4's recommendation. This is stick
    breaking: each weight takes a uniform fraction of what is left, so for k=3 the expected
    weights are (1/2, 1/4, 1/4): the first method (Adapter in the paper) gets twice the weight.
    Returns shape (k,) or (batch, k); every row lies on the probability simplex.
    """
    shape = (k - 1,) if batch is None else (batch, k - 1)
    fractions = torch.rand(shape, generator=generator)
    weights, left = [], torch.ones(shape[:-1])
    for i in range(k - 1):
        weights.append(fractions[..., i] * left)
        left = left - weights[-1]
    return torch.stack([*weights, left], dim=-1)


def interpolate(codes: Mapping[str, torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """Σ_m weights[..., m] · codes[m], with weights aligned to the insertion order of `codes`.

    codes: method -> (y,) or (batch, y); weights: (k,) or (batch, k), k = len(codes). Weights
    drawn on the CPU (where a seeded generator gives the same draws on every machine) are moved
    to the codes' device and dtype.
    """
    if weights.shape[-1] != len(codes):
        raise ValueError(f"{weights.shape[-1]} weights for {len(codes)} codes")
    weights = weights.to(next(iter(codes.values())))
    return sum(weights[..., i, None] * code for i, code in enumerate(codes.values()))


class JointDecomposition(nn.Module):
    """Stage 1, subspace approximation (unified-dt §2.1): per-method Proj↓ and Proj↑.

    forward(thetas) encodes each method's solution, mixes the codes with fresh interpolation
    weights and decodes the mix with every method's Proj↑; the decoded θ̄ feed the task loss.
    The reconstruction loss compares θ̄ with the solutions. Options (unified-dt §6 item 3, §7):

    - target="interpolated" (paper, default): ||Proj↑_m(I_mix) − θ_m||; target="own" (public
      code): ||Proj↑_m(Proj↓_m(θ_m)) − θ_m||, while the task loss still uses the mix;
    - squared=True (paper, default): squared L2 summed over entries; squared=False (code): the
      plain L2 norm (torch.dist).

    The loss is summed over methods and averaged over a batch of tasks, so it stays on the scale
    of a batch-mean task loss; the caller applies the ratio (10 in the paper, A.2).
    Method order matters: the mix weights follow the order of `sizes`, and passing
    (adapter, prefix, lora) puts a on Adapter and b on Prefix as in the paper.
    """

    def __init__(
        self,
        sizes: Mapping[str, int],
        y: int,
        seed: int = 0,
        squared: bool = True,
        target: Literal["interpolated", "own"] = "interpolated",
    ):
        super().__init__()
        if target not in ("interpolated", "own"):
            raise ValueError(f"target must be 'interpolated' or 'own', got {target!r}")
        generator = torch.Generator().manual_seed(seed)
        self.y, self.squared, self.target = y, squared, target
        self.down = nn.ModuleDict({m: DownProjection(s, y, generator) for m, s in sizes.items()})
        self.up = nn.ModuleDict({m: UpProjection(s, y, generator) for m, s in sizes.items()})

    def forward(
        self, thetas: Mapping[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """thetas: method -> (size,) for one task or (batch, size), one task per row."""
        if list(thetas) != list(self.down):
            raise ValueError(f"expected methods {list(self.down)} in order, got {list(thetas)}")
        codes = {m: self.down[m](theta) for m, theta in thetas.items()}
        batch = next(iter(thetas.values())).shape[:-1]
        weights = interpolation_weights(generator, batch[0] if batch else None, len(codes))
        mixed = interpolate(codes, weights)
        decoded = {m: self.up[m](mixed) for m in thetas}
        recon = 0.0
        for m, theta in thetas.items():
            rebuilt = decoded[m] if self.target == "interpolated" else self.up[m](codes[m])
            diff = rebuilt - theta
            recon = recon + (diff.square().sum(-1) if self.squared else diff.norm(dim=-1))
        return decoded, recon.mean()


class SharedVectorSubspace(nn.Module):
    """Simplified pipeline (unified-dt §2.5, A.3): one trainable y-vector per training task,
    decoded by every method's trainable up-projection; no Proj↓, no stage-0 solutions needed.

    `projections` maps method -> module taking (..., y) to that method's flat θ, usually from
    `up_projections`; the fine-tuning extension adds a `FastfoodProjection` whose G then trains
    with the projections (unified-dt §2.6, §6 item 18).
    """

    def __init__(
        self, n_tasks: int, y: int, projections: Mapping[str, nn.Module], seed: int = 0
    ):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        table = torch.empty(n_tasks, y).normal_(0.0, INIT_STD, generator=generator)
        self.vectors = nn.Embedding.from_pretrained(table, freeze=False)
        self.projections = nn.ModuleDict(projections)

    def forward(self, task_index: torch.Tensor | int) -> dict[str, torch.Tensor]:
        """task_index: an int, or a LongTensor of any shape; returns method -> θ̄ per index."""
        intrinsic = self.vectors(torch.as_tensor(task_index, device=self.vectors.weight.device))
        return {m: projection(intrinsic) for m, projection in self.projections.items()}

    def param_groups(self, lr_vector: float, lr_projection: float) -> list[dict]:
        """Optimizer groups: the paper trains vectors and projections at different learning rates
        (A.4: 5e-5 for the shared vectors, 1e-4 for the up-projections)."""
        return [
            {"name": "vectors", "params": list(self.vectors.parameters()), "lr": lr_vector},
            {"name": "projections", "params": list(self.projections.parameters()), "lr": lr_projection},
        ]


class IntrinsicVector(nn.Module):
    """Stage 2, subspace optimization: θ = projection(I) with only the y numbers of I trained.

    I starts at N(0, 0.02²) from its own seed (unified-dt §6 item 7; IPT's IST does the same).
    The projection (a Proj↑, a Fastfood projection or IPT's Proj_b) is frozen in place here,
    because stage 2 never updates it. Transfer (stage 3) decodes the trained `vector` with another
    method's projection.
    """

    def __init__(self, y: int, seed: int, projection: nn.Module):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.vector = _normal(y, generator=generator)
        self.projection = projection.requires_grad_(False)

    def forward(self) -> torch.Tensor:
        return self.projection(self.vector)


class PromptDecoder(nn.Module):
    """IPT's Proj_b: d_I -> flat prompt (n·d) as W2 tanh(W1 v + b1) + b2 (ipt.md §1.2).

    The output is the prompt method's flat θ (the n×d prompt flattened row-major), so IST and the
    random baseline plug into the same θ interface as every other method. Neither the paper nor
    the notes give an initialization: layers use PyTorch's default Linear init, drawn under a
    forked RNG seeded with `seed` so the global RNG is left alone.
    """

    def __init__(self, n: int, d: int, d_intrinsic: int, hidden: int = 768, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.hidden = nn.Linear(d_intrinsic, hidden)
            self.output = nn.Linear(hidden, n * d)

    def forward(self, intrinsic: torch.Tensor) -> torch.Tensor:
        return self.output(torch.tanh(self.hidden(intrinsic)))


class PromptAutoEncoder(nn.Module):
    """IPT multi-task subspace finding (MSF): P* = Proj_b(Proj(P)) on flat prompts (ipt.md §1.2).

    Proj is one Linear(n·d → d_I) with no activation, the public code's AE_type=1 (ipt.md A3).
    Neither the paper's "one-layer feed-forward network" nor the notes settle its bias; we keep
    the Linear default (with bias), like Proj_b's b1, b2. forward returns the reconstruction for
    the task loss and the reconstruction loss L_AE. ``recon="sum"`` (default) is the paper's
    L_AE = ||P* − P||²₂, the sum of squares over a prompt's n·d elements (averaged over the prompts
    of a batch), which α = 200 weighs; ``recon="mean"`` is the released code's element mean
    (ipt.md A4), 1/(n·d) of it: 1/76,800 for n = 100 on BART-base. The encoder is drawn from
    `seed`, the decoder from `seed + 1`.
    """

    RECON_FORMS = ("sum", "mean")

    def __init__(self, n: int, d: int, d_intrinsic: int, hidden: int = 768, seed: int = 0, recon: str = "sum"):
        super().__init__()
        if recon not in self.RECON_FORMS:
            raise ValueError(f"unknown reconstruction loss {recon!r}; valid: {', '.join(self.RECON_FORMS)}")
        self.recon = recon
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.encoder = nn.Linear(n * d, d_intrinsic)
        self.decoder = PromptDecoder(n, d, d_intrinsic, hidden, seed + 1)

    def forward(self, prompts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """prompts: (n·d,) or (batch, n·d) -> (reconstructed prompts, L_AE)."""
        rebuilt = self.decoder(self.encoder(prompts))
        if self.recon == "mean":
            return rebuilt, F.mse_loss(rebuilt, prompts)
        return rebuilt, (rebuilt - prompts).pow(2).sum(-1).mean()


class RandomPromptSubspace(PromptDecoder):
    """IPT's Random_prompt baseline (ipt.md §1.6): the MSF decoder architecture left at its random
    initialization and frozen, so IST searches a random rather than a learned prompt subspace."""

    def __init__(self, n: int, d: int, d_intrinsic: int, hidden: int = 768, seed: int = 0):
        super().__init__(n, d, d_intrinsic, hidden, seed)
        self.requires_grad_(False)
