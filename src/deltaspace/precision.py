"""The precision forwards compute in, chosen once per process by ``DELTASPACE_PRECISION``.

Torch is imported only to ask the hardware, so the workflow's planning (torch-free) can reject a
bad value before any job starts (:class:`deltaspace.plan.Plan`) with the same check the jobs run.
"""

from __future__ import annotations

import os
from functools import cache

VARIABLE = "DELTASPACE_PRECISION"
PRECISIONS = ("auto", "bf16", "fp32")


def precision_choice() -> str:
    """What ``DELTASPACE_PRECISION`` asks for (unset or empty: ``auto``); a ValueError names the
    valid values."""
    choice = os.environ.get(VARIABLE, "") or "auto"
    if choice not in PRECISIONS:
        raise ValueError(f"{VARIABLE}={choice!r}: expected one of {', '.join(PRECISIONS)}")
    return choice


def precision() -> str:
    """The precision every forward of this process computes in: ``"bf16"`` or ``"fp32"``.

    ``bf16`` is autocast: matrix products in bfloat16; θ, its gradient, optimizer state and losses
    in fp32. ``auto`` (the default) is bf16 where the device multiplies bf16 natively, a CUDA GPU
    with bf16 or a CPU with AVX512-BF16 or AMX, else fp32: natively, bf16 halves the cost of a
    MiniLM forward+backward on one CPU core (docs/training.md); emulated, it is slower than fp32,
    which is why ``auto`` asks the hardware. Every result row records the precision it ran in
    (:func:`deltaspace.provenance.provenance`).
    """
    choice = precision_choice()
    if choice == "auto":
        return "bf16" if native_bf16() else "fp32"
    return choice


@cache
def native_bf16() -> bool:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported(including_emulation=False)
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's CPUID probes
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)
