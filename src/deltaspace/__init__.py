"""deltaspace: a reproducible benchmark of delta tuning and the subspace delta methods share."""

__version__ = "0.1.0"
