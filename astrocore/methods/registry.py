"""The one table of methods: name -> :class:`~astrocore.methods.spec.MethodSpec`.

Runs, jobs, the CLI and the explorer read it; nothing outside ``astrocore.methods`` imports a
method package directly. Method packages are imported on first use (they pull in torch models,
which the CLI's ``--help`` does not need).
"""
from __future__ import annotations

import importlib
from pathlib import Path

from ..runs import RunRecord
from .spec import MethodSpec

#: Method packages, in the order the app and the CLI list them. A new method adds one line here.
METHOD_PACKAGES = (
    "astrocore.methods.disentangle",
    "astrocore.methods.dann",
    "astrocore.methods.ssl",
    "astrocore.methods.batmm",
)

_registered: dict[str, MethodSpec] = {}
_loaded = False


def register(spec: MethodSpec) -> MethodSpec:
    """Add ``spec`` to the table (method packages are registered on first use; tests add fakes)."""
    if not isinstance(spec, MethodSpec):
        raise TypeError(f"register() expects a MethodSpec; got {type(spec).__name__}.")
    _registered[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a method from the table (for tests)."""
    _registered.pop(name, None)


def _load_packages() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for package in METHOD_PACKAGES:
        module = importlib.import_module(package)
        spec = getattr(module, "SPEC", None)
        if not isinstance(spec, MethodSpec):
            raise TypeError(f"{package} has no SPEC = MethodSpec(...) at its end.")
        _registered.setdefault(spec.name, spec)


def methods() -> dict[str, MethodSpec]:
    """Every registered method, by name."""
    _load_packages()
    return dict(_registered)


def get(name: str) -> MethodSpec:
    """The spec of method ``name``; a clear error names the known methods."""
    table = methods()
    if name not in table:
        raise ValueError(f"Unknown method {name!r}; known methods: {', '.join(sorted(table)) or 'none'}.")
    return table[name]


def load_run(path):
    """Load a run folder as its method's Run class (found by ``run.json``'s ``method`` field)."""
    record = RunRecord.read(Path(path))
    return get(record.method).run_class.load(path)
