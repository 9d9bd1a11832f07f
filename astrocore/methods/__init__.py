"""The methods astrocore trains: one sub-package per method, all of the same shape.

``astrocore/methods/<name>/``: ``config.py`` (the Config dataclass and its ``fast`` / ``paper``
presets), ``model.py`` (torch modules), ``fit.py`` (the training task(s) for
:func:`astrocore.training.train` and ``fit``), ``run.py`` (the Run class), ``bench.py``, ``cli.py``
(the method's sub-commands) and ``__init__.py`` ending with ``SPEC = MethodSpec(...)``. See
``docs/architecture.md``.
"""
