"""Simulators: pure functions of (parameters, seed) that return a :class:`~astrocore.data.Dataset`."""
