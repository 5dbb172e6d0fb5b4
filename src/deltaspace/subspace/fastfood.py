"""Fastfood up-projection: the fine-tuning "method" as a flat θ (unified-dt §2.6, §6 item 18).

An MLP up-projection for all 220M T5-base weights would need y·220M parameters. Fastfood replaces
the dense random matrix by M = H G Π H B (H Hadamard, G Gaussian diagonal, Π permutation, B random
signs), which costs O(L) memory and O(L log L) time per tensor of padded length L. Following
Aghajanyan et al., every parameter tensor gets its own transform of the same intrinsic vector:

    offset_t = (H G_t Π_t H B_t · pad_L(I))[:D_t] / (sqrt(L · Σ G_t,0²) · sqrt(D_t / L))

and the flat offset is the concatenation over tensors, so fine-tuning plugs into the same flat-θ
interface as the delta methods: θ = θ0 + offset. Unlike Aghajanyan et al., the unified-dt paper
trains G during subspace approximation; afterwards G is frozen and only I is tuned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

Shape = int | Sequence[int]


def _butterflies_(y: torch.Tensor) -> torch.Tensor:
    """In-place Walsh-Hadamard transform of the rows of a contiguous (rows, n) tensor.

    Pass h pairs entries at distance h (a, b) and sets a <- a + b, then b <- (a + b) - 2b = a - b,
    so no pass allocates: the batch is viewed as (rows, n / 2h, 2, h) and updated through the
    two halves of the third axis. log2(n) passes give H_n in Sylvester (natural) order.
    """
    rows, n = y.shape
    h = 1
    while h < n:
        pairs = y.view(rows, n // (2 * h), 2, h)
        a, b = pairs[:, :, 0], pairs[:, :, 1]
        a.add_(b)
        torch.add(a, b, alpha=-2, out=b)
        h *= 2
    return y


class _Hadamard(torch.autograd.Function):
    """H x with a hand-written backward: H is symmetric, so the gradient is H applied to the
    output gradient, and autograd needs to save nothing from the forward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1]
        return _butterflies_(x.reshape(-1, n).clone(memory_format=torch.contiguous_format)).view(x.shape)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _Hadamard.apply(grad)


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Unnormalized Walsh-Hadamard transform along the last dimension, in O(n log n).

    Returns H_n x for the Sylvester-ordered Hadamard matrix (H_1 = [1],
    H_2n = [[H_n, H_n], [H_n, -H_n]]), batched over leading dimensions; n must be a power of two.
    No dense matrix is ever formed and the only allocation is one copy of x: the butterflies run
    in place on it (an out-of-place version that allocated every pass was several times slower
    at n >= 2^20 on CPU, mostly page faults).
    """
    n = x.shape[-1]
    if n < 1 or n & (n - 1):
        raise ValueError(f"fwht needs a power-of-two length, got {n}")
    return _Hadamard.apply(x)


def padded_length(size: int, d: int) -> int:
    """Power-of-two working length L of one tensor's transform.

    L covers the tensor (truncated back to `size` afterwards) and also the intrinsic vector, so a
    tiny tensor (a bias, a layer norm) still sees all d coordinates of I instead of a truncated I.
    """
    if size < 1 or d < 1:
        raise ValueError(f"size and d must be positive, got size={size}, d={d}")
    return 1 << (max(size, d) - 1).bit_length()


class FastfoodBlock(nn.Module):
    """The Fastfood transform of one parameter tensor: d-dim I -> `size` offsets.

    B (int8 signs) and Π (int32 indices) are fixed random buffers, G (float32) is the one trainable
    piece. B, Π and the normalizer are non-persistent: they are regenerated from the seed when the
    module is rebuilt, so a checkpoint stores only G (O(L) floats) rather than 9 more bytes per entry.
    """

    def __init__(self, size: int, d: int, generator: torch.Generator):
        super().__init__()
        self.size, self.d = size, d
        self.length = padded_length(size, d)
        bits = torch.randint(0, 2, (self.length,), generator=generator, dtype=torch.int8)
        self.register_buffer("sign", bits * 2 - 1, persistent=False)
        perm = torch.randperm(self.length, generator=generator).to(torch.int32)
        self.register_buffer("perm", perm, persistent=False)
        gauss = torch.randn(self.length, generator=generator, dtype=torch.float64)
        # The normalizer uses G at initialization and stays fixed while G trains (the public
        # code's choice, unified-dt §7): the learned scale of G then really changes the output.
        divisor = math.sqrt(self.length * float(gauss.square().sum())) * math.sqrt(size / self.length)
        self.register_buffer("scale", torch.tensor(1.0 / divisor), persistent=False)
        self.G = nn.Parameter(gauss.to(torch.float32))

    def forward(self, intrinsic: torch.Tensor) -> torch.Tensor:
        # B · pad(I): only the first d entries are non-zero, so sign them before padding
        x = F.pad(intrinsic * self.sign[: self.d], (0, self.length - self.d))
        x = fwht(x).index_select(-1, self.perm) * self.G
        return fwht(x)[..., : self.size] * self.scale


class FastfoodProjection(nn.Module):
    """Maps a d-dim intrinsic vector I (or a batch (..., d)) to a flat vector of D_total entries.

    `blocks` is one int (a single global transform of that size) or a sequence of tensor shapes
    (ints or tuples) in the order of the flat θ; the output concatenates the per-tensor offsets in
    that order. With `theta0` (the flattened pre-trained weights) the output is θ0 + offset; without
    it, the output is the offset alone, for a fine-tuning delta that adds θ0 itself. θ0 is a
    non-persistent buffer: it is the backbone's own weights and must not bloat checkpoints.
    All random draws come from one generator seeded with `seed`, block by block, so the same seed
    and shapes give the same projection.
    """

    def __init__(
        self,
        d: int,
        blocks: Shape | Sequence[Shape],
        seed: int = 0,
        trainable_G: bool = True,
        theta0: torch.Tensor | None = None,
    ):
        super().__init__()
        shapes = [blocks] if isinstance(blocks, int) else list(blocks)
        sizes = [s if isinstance(s, int) else math.prod(s) for s in shapes]
        generator = torch.Generator().manual_seed(seed)
        self.d, self.seed, self.sizes = d, seed, sizes  # enough to rebuild it (with G from a checkpoint)
        self.blocks = nn.ModuleList(FastfoodBlock(size, d, generator) for size in sizes)
        self.size = sum(sizes)
        if theta0 is not None and theta0.shape != (self.size,):
            raise ValueError(f"theta0 must have shape ({self.size},), got {tuple(theta0.shape)}")
        self.register_buffer("theta0", theta0, persistent=False)
        if not trainable_G:
            self.freeze_G()

    def freeze_G(self) -> None:
        """Stop training G: after subspace approximation only the intrinsic vector moves."""
        for block in self.blocks:
            block.G.requires_grad_(False)

    def forward(self, intrinsic: torch.Tensor) -> torch.Tensor:
        if intrinsic.shape[-1] != self.d:
            raise ValueError(f"expected intrinsic dimension {self.d}, got {intrinsic.shape[-1]}")
        offset = torch.cat([block(intrinsic) for block in self.blocks], dim=-1)
        return offset if self.theta0 is None else self.theta0 + offset
