"""Delta-tuning methods, each a flat vector θ over a frozen backbone (see :mod:`.base`)."""

from .base import Delta, DeltaMethod, DeltaOptionError, Slot
from .registry import (METHODS, UnknownMethodError, build_delta, check_method_name, component_classes, delta_size,
                       method_class)

__all__ = ["Delta", "DeltaMethod", "DeltaOptionError", "Slot", "METHODS", "UnknownMethodError", "build_delta",
           "check_method_name", "component_classes", "delta_size", "method_class"]
