"""Composite methods ``a+b+c``: several delta methods on one backbone, seen as one flat θ.

The survey's simultaneous combination (§5.2: prompt + BitFit + adapter trained together) needs no
new machinery under the one abstraction: every component installs into the same backbone, the
:class:`~deltaspace.deltas.base.Delta` built over the union of their parameters lays θ out sorted
by name as for any method, and everything downstream (stages, subspaces, checkpoints) is unchanged.

What the composite adds:

* options are ``component.key`` (``prompt.n=10``): an unprefixed or unknown key is an error that
  lists every valid ``component.key``, so a typo never silently falls back to a default;
* each θ tensor is initialized by the component that owns it, with a generator of its own seeded
  like the standalone method's, so a component's slices of ``init(seed)`` equal that method's own
  ``init(seed)`` (a composite stage can start exactly where single-method runs start);
* ``prepare_inputs`` chains, ``penalty`` sums, ``supports_kv_cache`` is the AND;
* a fixed install order. Components find their targets by walking the backbone's modules, so a
  component must not see modules another one added: BitFit (which gives every Linear of the blocks
  a bias) goes first, or it would add biases to an adapter's own Linears; peft-injected methods go
  last, because they replace a Linear by a wrapper that the other methods' patterns no longer
  match. The order changes nothing else (θ is sorted by name). A check after each install refuses
  a parameter claimed twice or one living inside another component's modules.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..backbones import Backbone
from .base import DeltaMethod, DeltaOptionError

SEPARATOR = "+"


def split_name(name: str) -> list[str]:
    """``"prompt+bitfit"`` → ``["prompt", "bitfit"]`` (surrounding blanks ignored)."""
    return [part.strip() for part in name.split(SEPARATOR)]


def is_composite(name: str) -> bool:
    return SEPARATOR in name


def split_options(name: str, components: list[type[DeltaMethod]], options: dict[str, Any]) -> dict[str, dict]:
    """``{"prompt.n": 10}`` → ``{"prompt": {"n": 10}, ...}``; bad keys name every valid one."""
    valid = [f"{cls.name}.{key}" for cls in components for key in cls.defaults]
    listing = ", ".join(valid) or "none (no component takes options)"
    per: dict[str, dict] = {cls.name: {} for cls in components}
    for key, value in options.items():
        component, dot, option = key.partition(".")
        if not dot:
            raise DeltaOptionError(f"method {name!r} is a composite: option {key!r} must be written "
                                   f"component.key; valid options: {listing}")
        if component not in per or option not in dict(_defaults(components, component)):
            raise DeltaOptionError(f"method {name!r} takes no option {key!r}; valid options: {listing}")
        per[component][option] = value
    return per


def _defaults(components: list[type[DeltaMethod]], component: str) -> dict[str, Any]:
    return next(cls.defaults for cls in components if cls.name == component)


class Combined(DeltaMethod):
    """Several methods installed together; θ is the union of their tensors."""

    def __init__(self, name: str, components: list[type[DeltaMethod]], options: dict[str, Any],
                 install_rank) -> None:
        per = split_options(name, components, options)
        self.name = name
        self.components = [cls(**per[cls.name]) for cls in components]
        self._rank = install_rank
        self.supports_kv_cache = all(c.supports_kv_cache for c in self.components)
        self.options = {f"{c.name}.{k}": v for c in self.components for k, v in c.options.items()}
        self._owner: dict[int, DeltaMethod] = {}  # id(parameter) → component
        self._by_name: dict[str, DeltaMethod] = {}
        self._generators: tuple[torch.Generator, dict[str, torch.Generator]] | None = None

    def install(self, backbone: Backbone) -> list[nn.Parameter]:
        model = backbone.model
        added_modules: dict[int, str] = {}  # id(module) → the component that created it
        params: list[nn.Parameter] = []
        for component in sorted(self.components, key=self._rank):
            before = {id(m) for m in model.modules()}
            mine = component.install(backbone)
            if not mine:
                raise DeltaOptionError(f"{self.name}: component {component.name!r} found nothing to tune in "
                                       f"backbone {backbone.name!r}")
            self._check_ownership(model, component, mine, added_modules)
            for p in mine:
                self._owner[id(p)] = component
            added_modules.update({id(m): component.name for m in model.modules() if id(m) not in before})
            params += mine
        names = {id(p): n for n, p in model.named_parameters()}
        self._by_name = {names[id(p)]: self._owner[id(p)] for p in params if id(p) in names}
        return params

    def _check_ownership(self, model: nn.Module, component: DeltaMethod, mine: list[nn.Parameter],
                         added_modules: dict[int, str]) -> None:
        names = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
        modules = dict(model.named_modules(remove_duplicate=False))
        for p in mine:
            if id(p) in self._owner:
                raise DeltaOptionError(f"{self.name}: components {self._owner[id(p)].name!r} and {component.name!r} "
                                       f"both tune {names.get(id(p), 'a parameter')!r}; they cannot be combined")
            parts = names.get(id(p), "").split(".")[:-1]
            for depth in range(1, len(parts) + 1):
                owner = added_modules.get(id(modules.get(".".join(parts[:depth]))))
                if owner is not None:
                    raise DeltaOptionError(f"{self.name}: component {component.name!r} would tune "
                                           f"{names[id(p)]!r}, inside the modules of component {owner!r}; "
                                           "they cannot be combined")

    def component_of(self, name: str) -> DeltaMethod:
        """The component that owns the θ tensor called ``name`` (a manifest name)."""
        return self._by_name[name]

    def init_tensor(self, name: str, param: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # Delta.init visits tensors in manifest (name) order with one generator; each component
        # draws from its own generator seeded like that one, so its slices do not depend on which
        # other components are present.
        if self._generators is None or self._generators[0] is not generator:
            seed = generator.initial_seed()
            self._generators = (generator, {c.name: torch.Generator().manual_seed(seed) for c in self.components})
        component = self._owner[id(param)]
        return component.init_tensor(name, param, self._generators[1][component.name])

    def prepare_inputs(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        for component in self.components:
            inputs = component.prepare_inputs(model, inputs)
        return inputs

    def penalty(self, views: dict[str, torch.Tensor]) -> torch.Tensor | None:
        total = None
        for component in self.components:
            own = {n: v for n, v in views.items() if self._by_name.get(n) is component}
            term = component.penalty(own)
            if term is not None:
                total = term if total is None else total + term
        return total

    def touched_modules(self, backbone: Backbone, names: list[str]) -> list[str]:
        touched = set()
        for component in self.components:
            touched.update(component.touched_modules(backbone, [n for n in names if self._by_name.get(n) is component]))
        return sorted(touched)

    def component_sizes(self, manifest) -> dict[str, int]:
        """|θ| of each component, in the order the name lists them."""
        sizes = {c.name: 0 for c in self.components}
        for slot in manifest:
            sizes[self.component_of(slot.name).name] += slot.numel
        return sizes
