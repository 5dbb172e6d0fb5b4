"""Training: one loop that trains any parameterization of θ (see :mod:`.loop`)."""
