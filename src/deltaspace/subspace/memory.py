"""Memory of each subspace stage at paper scale, computed from parameter shapes.

`python -m deltaspace.subspace.memory` prints the Markdown tables that docs/subspace.md embeds
(a test checks the doc is up to date). Counted per stage: fp32 weights and gradients of what is
trained, the optimizer state (Adafactor, the unified-dt optimizer, keeps O(rows + cols) floats per
matrix and n per vector; Adam/AdamW, IPT's optimizer, keeps 2 floats per weight), tensors held
frozen besides the backbone, and the activations of one decode of θ. The frozen backbone and its
own activations are left out: they are the same in every stage.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from deltaspace.subspace.fastfood import padded_length

FLOAT = 4  # bytes per fp32 value
PERM_SIGN = 5  # bytes per Fastfood entry for the int32 permutation and the int8 signs
GB = 1e9

DET_SIZE = 1_105_920  # |θ| of Adapter, Prefix and LoRA on T5-base (unified-dt §1.4)
METHODS = 3
TRAIN_TASKS = 60  # unified-dt multi-task training tasks
IPT_TRAIN_TASKS = 100  # IPT random split
PROMPT_N, BART_BASE_D, IPT_D_I, IPT_HIDDEN = 100, 768, 250, 768

Shape = tuple[int, ...]


def projector_parameter_count(size: int, y: int, down: bool = True) -> int:
    """Parameters of one method's Proj↑ (size·y), plus its Proj↓ (size·y + y·y) if `down`."""
    return size * y + (size * y + y * y if down else 0)


def optimizer_state_floats(shapes: Iterable[Shape], optimizer: Literal["adafactor", "adam"]) -> int:
    """Floats of optimizer state for parameters of these shapes (step counters not counted).

    Adafactor (as in torch.optim.Adafactor and the HF version without momentum) factors the second
    moment of every ≥2-D parameter into row and column statistics and keeps it whole for vectors;
    Adam keeps first and second moments of every entry.
    """
    total = 0
    for shape in shapes:
        if optimizer == "adam":
            total += 2 * math.prod(shape)
        elif len(shape) >= 2:
            total += math.prod(shape[:-2]) * (shape[-2] + shape[-1])
        else:
            total += math.prod(shape)
    return total


def t5_base_tensor_shapes() -> list[Shape]:
    """Shapes of every T5-base parameter tensor (tied embedding counted once): 222,903,552 in all.

    The Fastfood set of the fine-tuning extension: every pre-trained weight (unified-dt §1.5).
    """
    d, d_ff, vocab, heads, buckets, layers = 768, 3072, 32128, 12, 32, 12
    attention = [(d, d)] * 4
    ffn = [(d_ff, d), (d, d_ff)]
    encoder = [*attention, (d,), *ffn, (d,)]
    decoder = [*attention, (d,), *attention, (d,), *ffn, (d,)]
    return [
        (vocab, d),
        *encoder * layers, (buckets, heads), (d,),
        *decoder * layers, (buckets, heads), (d,),
    ]


def _joint_shapes(size: int, y: int) -> list[Shape]:
    return [(y, size), (y, y), (size, y)]


def _autoencoder_shapes(size: int, d_intrinsic: int, hidden: int) -> list[Shape]:
    return [(d_intrinsic, size), (d_intrinsic,), (hidden, d_intrinsic), (hidden,), (size, hidden), (size,)]


def _count(shapes: Iterable[Shape]) -> int:
    return sum(math.prod(shape) for shape in shapes)


def _fastfood_g_shapes(shapes: Iterable[Shape], d: int) -> list[Shape]:
    """Shapes of the trainable G vectors of a Fastfood projection over tensors of these shapes."""
    return [(padded_length(math.prod(shape), d),) for shape in shapes]


@dataclass(frozen=True)
class StageMemory:
    """One row of the table: a parameter count and byte counts (trained values are fp32)."""

    stage: str
    setting: str
    trainable: int
    frozen_bytes: int
    activation_bytes: int
    adafactor_bytes: int
    adam_bytes: int

    @property
    def weights_grads_bytes(self) -> int:
        return 2 * FLOAT * self.trainable

    def total_bytes(self, optimizer: Literal["adafactor", "adam"]) -> int:
        state = self.adafactor_bytes if optimizer == "adafactor" else self.adam_bytes
        return self.weights_grads_bytes + state + self.frozen_bytes + self.activation_bytes


def _row(
    stage: str, setting: str, trainable: Sequence[Shape], frozen_bytes: int, activations: int
) -> StageMemory:
    """A row from the trained shapes, the frozen bytes and the fp32 activation count."""
    return StageMemory(
        stage=stage,
        setting=setting,
        trainable=_count(trainable),
        frozen_bytes=frozen_bytes,
        activation_bytes=FLOAT * activations,
        adafactor_bytes=FLOAT * optimizer_state_floats(trainable, "adafactor"),
        adam_bytes=FLOAT * optimizer_state_floats(trainable, "adam"),
    )


def stage_memory_estimates() -> list[StageMemory]:
    """The paper configurations of every subspace stage, one row each."""
    theta, ups = DET_SIZE, METHODS * DET_SIZE
    t5 = t5_base_tensor_shapes()
    padded = _fastfood_g_shapes(t5, 4)
    sum_l, t5_size = _count(padded), _count(t5)
    prompt = PROMPT_N * BART_BASE_D
    ae = _autoencoder_shapes(prompt, IPT_D_I, IPT_HIDDEN)
    return [
        _row("1 joint decomposition", "single-task, y=4, A+P+L",
             _joint_shapes(theta, 4) * METHODS, FLOAT * ups, ups),
        _row("1 joint decomposition", f"multi-task, y=100, {TRAIN_TASKS} tasks",
             _joint_shapes(theta, 100) * METHODS, FLOAT * ups * TRAIN_TASKS, ups),
        _row("2 subspace optimization", "y=100, frozen Proj↑ of A+P+L",
             [(100,)], FLOAT * ups * 100, theta),
        _row("1 simplified pipeline", "single-task, y=4, A+P+L",
             [(1, 4)] + [(theta, 4)] * METHODS, 0, ups),
        _row("1 simplified pipeline", f"multi-task, y=100, {TRAIN_TASKS} tasks",
             [(TRAIN_TASKS, 100)] + [(theta, 100)] * METHODS, 0, ups),
        _row("1 simplified + Fastfood", "SST-2, y=4, A+P+L + FT over T5-base",
             [(1, 4)] + [(theta, 4)] * METHODS + padded, PERM_SIGN * sum_l, ups + sum_l + t5_size),
        _row("2 subspace optimization", "FT, y=4, frozen Fastfood over T5-base",
             [(4,)], (FLOAT + PERM_SIGN) * sum_l, t5_size),
        _row("IPT MSF", f"BART-base, n=100, d_I={IPT_D_I}, {IPT_TRAIN_TASKS} tasks",
             ae, FLOAT * prompt * IPT_TRAIN_TASKS, IPT_D_I + IPT_HIDDEN + prompt),
        _row("IPT IST", f"d_I={IPT_D_I}, frozen Proj_b",
             [(IPT_D_I,)], FLOAT * _count(ae[2:]), IPT_HIDDEN + prompt),
    ]


def _gb(num_bytes: int) -> str:
    return f"{num_bytes / GB:.2f}"


def memory_markdown() -> str:
    """The two Markdown tables of docs/subspace.md "Memory at paper scale"."""
    lines = [
        f"Projector parameters for |θ| = {DET_SIZE:,} (unified-dt §1.6):",
        "",
        "| y | Proj↓ + Proj↑ per method | three methods | Proj↑ only, three methods |",
        "|---|---:|---:|---:|",
    ]
    for y in (4, 100):
        per = projector_parameter_count(DET_SIZE, y)
        up = projector_parameter_count(DET_SIZE, y, down=False)
        lines.append(f"| {y} | {per:,} | {METHODS * per:,} | {METHODS * up:,} |")
    lines += [
        "",
        "Per stage, in GB (10⁹ bytes):",
        "",
        "| stage | setting | trainable params | weights + grads | Adafactor state | Adam state "
        "| frozen tensors | decode activations | total, Adafactor | total, Adam |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in stage_memory_estimates():
        cells = [row.stage, row.setting, f"{row.trainable:,}"] + [
            _gb(b) for b in (row.weights_grads_bytes, row.adafactor_bytes, row.adam_bytes,
                             row.frozen_bytes, row.activation_bytes,
                             row.total_bytes("adafactor"), row.total_bytes("adam"))
        ]
        lines.append("| " + " | ".join(cells) + " |")
    t5 = t5_base_tensor_shapes()
    t5_size, sum_l = _count(t5), _count(_fastfood_g_shapes(t5, 4))
    lines += [
        "",
        f"Fastfood over T5-base: {t5_size:,} weights in {len(t5)} tensors pad to "
        f"ΣL = {sum_l:,} entries ({sum_l / t5_size:.2f}x), each with an fp32 G, an int32 Π entry "
        f"and an int8 sign. Not included anywhere above: the frozen backbone "
        f"(T5-base: {_gb(FLOAT * t5_size)} GB in fp32) and its activations.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(memory_markdown(), end="")
