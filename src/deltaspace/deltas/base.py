"""The one abstraction: a delta method is a flat vector θ over a frozen backbone.

A method installs its modules into the backbone (or names backbone weights it tunes); this
module turns those parameters into a flat vector with a manifest of (name, shape, offset)
sorted by name, so a saved θ means the same thing in every later stage. ``Delta.bound(θ)``
makes the backbone read its delta weights from views into any θ tensor, one that carries
gradient included, which is what lets a projector upstream of θ train through the backbone.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator

import torch
from torch import nn

from ..backbones import Backbone


class DeltaOptionError(ValueError):
    pass


@dataclass(frozen=True)
class Slot:
    """Where one delta tensor lives inside θ."""

    name: str
    shape: tuple[int, ...]
    offset: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "offset": self.offset}


class DeltaMethod:
    """A delta-tuning method: what it installs, which tensors θ holds, how they start.

    Subclasses set ``name``, ``defaults`` (every option the method takes, with its default:
    the unified-dt paper's settings unless noted) and implement :meth:`install` and
    :meth:`init_tensor`.
    """

    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    families: ClassVar[tuple[str, ...]] = ("t5", "bart", "bert", "roberta", "deberta-v2", "llama", "qwen2")
    #: False when the method changes keys/values per call, so decoding cannot reuse a KV cache.
    supports_kv_cache: ClassVar[bool] = True
    #: True when the method rewrites keys or masks inside attention (prefix tuning), which only the eager
    #: attention implementation exposes; every other method runs on PyTorch's SDPA.
    needs_eager_attention: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        self.options = resolve_options(self.name, self.defaults, options)

    def install(self, backbone: Backbone) -> list[nn.Parameter]:
        """Add the method's modules to ``backbone.model``; return the parameters θ holds."""
        raise NotImplementedError

    def init_tensor(self, name: str, param: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The initial value of one θ tensor (``name`` is its full parameter name)."""
        raise NotImplementedError

    def prepare_inputs(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rewrite model inputs before the forward pass (prompt tuning prepends soft tokens)."""
        return inputs

    def penalty(self, views: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """A regularizer added to the task loss (MPC, AdaLoRA's orthogonality), or None.

        ``views`` maps each θ tensor's manifest name to its view into θ, so gradients reach θ.
        """
        return None

    def touched_modules(self, backbone: Backbone, names: list[str]) -> list[str]:
        """Short descriptions of the backbone modules the method changes, for ``describe``."""
        return sorted({n.rsplit(".", 1)[0] for n in names})


def resolve_options(method: str, defaults: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """Defaults overridden by ``options``; strings (from the CLI) are coerced to the default's type."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        valid = ", ".join(f"{k}={v!r}" for k, v in defaults.items()) or "none"
        raise DeltaOptionError(f"method {method!r} takes no option {', '.join(map(repr, unknown))}; "
                               f"valid options: {valid}")
    resolved = dict(defaults)
    for key, value in options.items():
        resolved[key] = _coerce(method, key, value, defaults[key])
    return resolved


def _coerce(method: str, key: str, value: Any, default: Any) -> Any:
    if not isinstance(value, str) or isinstance(default, str):
        return value
    try:
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, (list, tuple)):
            return [v.strip() for v in value.split(",") if v.strip()]
    except ValueError:
        raise DeltaOptionError(f"method {method!r}: option {key}={value!r} is not a valid "
                               f"{type(default).__name__}") from None
    return value


class Delta:
    """A method installed on a backbone, seen as one flat vector θ."""

    def __init__(self, method: DeltaMethod, backbone: Backbone) -> None:
        self.method = method
        self.backbone = backbone
        params = method.install(backbone)
        if not params:
            raise DeltaOptionError(f"method {method.name!r} found nothing to tune in backbone {backbone.name!r}")
        chosen = {id(p) for p in params}
        model = backbone.model
        names = {id(p): n for n, p in model.named_parameters() if id(p) in chosen}
        missing = chosen - set(names)
        if missing:
            raise RuntimeError(f"{method.name}: {len(missing)} delta parameters are not registered in the model")
        ordered = sorted(params, key=lambda p: names[id(p)])
        slots, offset = [], 0
        for p in ordered:
            slots.append(Slot(names[id(p)], tuple(p.shape), offset))
            offset += p.numel()
        self.manifest: list[Slot] = slots
        self.size: int = offset
        self._params = ordered
        # Every (module, attribute) that holds each tensor: tied weights (T5's shared embedding)
        # must all read the same θ view, or fine-tuning would silently half-apply.
        owners: dict[int, list[tuple[nn.Module, str]]] = {id(p): [] for p in ordered}
        for module in model.modules():
            for attr, p in module._parameters.items():
                if p is not None and id(p) in owners:
                    owners[id(p)].append((module, attr))
        self._owners = [owners[id(p)] for p in ordered]
        for p in ordered:
            p.requires_grad_(False)

    @property
    def name(self) -> str:
        return self.method.name

    @property
    def options(self) -> dict[str, Any]:
        return self.method.options

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "options": self.options, "size": self.size,
                "manifest": [s.as_dict() for s in self.manifest]}

    def init(self, seed: int) -> torch.Tensor:
        """A fresh θ, deterministic in ``seed``, built tensor by tensor in manifest order."""
        generator = torch.Generator().manual_seed(seed)
        parts = [self.method.init_tensor(slot.name, p, generator).reshape(-1).float()
                 for slot, p in zip(self.manifest, self._params)]
        return torch.cat(parts) if parts else torch.zeros(0)

    def extract(self) -> torch.Tensor:
        """θ as the installed parameters hold it now."""
        return torch.cat([p.detach().reshape(-1).float().cpu() for p in self._params])

    def load(self, theta: torch.Tensor) -> None:
        """Copy θ into the installed parameters (for plain, unbound forward passes)."""
        self._check(theta)
        with torch.no_grad():
            for slot, p in zip(self.manifest, self._params):
                p.copy_(theta[slot.offset:slot.offset + slot.numel].view(slot.shape).to(p.device, p.dtype))

    def views(self, theta: torch.Tensor) -> Iterator[tuple[Slot, torch.Tensor]]:
        # One split rather than a slice per tensor (the slots tile θ in order): the backward of a
        # split concatenates the tensors' gradients once, where every slice's backward builds a
        # zero gradient as large as θ, which made a fine-tuning step ~10x slower than its forward.
        parts = torch.split(theta, [slot.numel for slot in self.manifest])
        for slot, part in zip(self.manifest, parts):
            yield slot, part.view(slot.shape)

    @contextmanager
    def bound(self, theta: torch.Tensor):
        """Within the block the backbone computes with θ's values; gradients flow back into θ."""
        self._check(theta)
        dtype = self._params[0].dtype
        swapped = []
        try:
            for (slot, view), owners in zip(self.views(theta), self._owners):
                view = view.to(dtype)
                for module, attr in owners:
                    original = module._parameters.pop(attr)
                    swapped.append((module, attr, original))
                    setattr(module, attr, view)
            yield
        finally:
            for module, attr, original in reversed(swapped):
                delattr(module, attr)
                module._parameters[attr] = original

    def prepare_inputs(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.method.prepare_inputs(self.backbone.model, inputs)

    def penalty(self, theta: torch.Tensor) -> torch.Tensor | None:
        """The method's regularizer at θ (differentiable in θ), or None when it has none."""
        self._check(theta)
        return self.method.penalty({slot.name: view for slot, view in self.views(theta)})

    def _check(self, theta: torch.Tensor) -> None:
        if theta.dim() != 1 or theta.numel() != self.size:
            raise ValueError(f"{self.name}: θ must be a vector of {self.size} values, got shape {tuple(theta.shape)}")


def linear_modules(model: nn.Module, suffixes: tuple[str, ...]) -> list[tuple[str, nn.Linear]]:
    """Every nn.Linear whose qualified name ends with one of ``suffixes`` (as ``.suffix``)."""
    found = [(n, m) for n, m in model.named_modules()
             if isinstance(m, nn.Linear) and any(n == s or n.endswith("." + s) for s in suffixes)]
    return found


def normal_(shape: torch.Size | tuple[int, ...], std: float, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=generator) * std


def kaiming_uniform(shape: torch.Size | tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """PyTorch's default nn.Linear weight init (kaiming uniform, a=sqrt(5)), seeded."""
    fan_in = shape[1] if len(shape) > 1 else shape[0]
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(tuple(shape), generator=generator) * 2 - 1) * bound
