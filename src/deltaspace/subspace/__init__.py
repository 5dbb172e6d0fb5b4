"""Low-dimensional parameterizations of a delta method's flat θ, and the math around them.

Backbone-free: every module here maps vectors to flat θ vectors (or back), so the training loop
drives each stage by swapping the module that produces θ. See docs/subspace.md; the memory
estimates live in `deltaspace.subspace.memory` (a runnable module, so not imported here).
"""

from deltaspace.subspace.fastfood import FastfoodProjection, fwht, padded_length
from deltaspace.subspace.landscape import (
    grid,
    grid_points,
    landscape_axes,
    plot_landscape,
    relative_landscape,
)
from deltaspace.subspace.projectors import (
    DownProjection,
    IntrinsicVector,
    JointDecomposition,
    PromptAutoEncoder,
    PromptDecoder,
    RandomPromptSubspace,
    SharedVectorSubspace,
    UpProjection,
    interpolate,
    interpolation_weights,
    up_projections,
)

__all__ = [
    "DownProjection",
    "FastfoodProjection",
    "IntrinsicVector",
    "JointDecomposition",
    "PromptAutoEncoder",
    "PromptDecoder",
    "RandomPromptSubspace",
    "SharedVectorSubspace",
    "UpProjection",
    "fwht",
    "grid",
    "grid_points",
    "interpolate",
    "interpolation_weights",
    "landscape_axes",
    "padded_length",
    "plot_landscape",
    "relative_landscape",
    "up_projections",
]
