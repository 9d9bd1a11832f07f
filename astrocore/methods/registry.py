"""The one table of methods: name -> :class:`~astrocore.methods.spec.MethodSpec`.

Runs, jobs, the CLI and the explorer read it; nothing outside ``astrocore.methods`` imports a
method package directly. Method packages are imported on first use (they pull in torch models,
which the CLI's ``--help`` does not need).
"""
from __future__ import annotations

import contextlib
import importlib
import warnings
from pathlib import Path

import torch

from ..runs import RunError, RunRecord
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


def load_run(path, method: str | None = None):
    """Load a finished run folder as its method's Run class (found by ``run.json``'s ``method``;
    with ``method``, a run of another method is refused with a clear error).

    A folder that is not a loadable run gives one clear :class:`~astrocore.runs.RunError` naming the
    problem (bad or incomplete run.json, unknown method, unfinished run, invalid configuration,
    missing or damaged weights, tensors of the wrong shape) instead of a library's error. The model
    the configuration describes is first built on PyTorch's "meta" device (no memory) and checked
    against the weights file, so a tampered configuration (``latent_dim: 10**9``) is refused before
    anything is allocated.
    """
    path = Path(path)
    record = RunRecord.read(path)
    try:
        spec = get(record.method)
    except ValueError as error:
        raise RunError(f"{path}: {error}") from None
    if method is not None and record.method != method:
        raise RunError(f"Run {record.id} in {path} is a {record.method} run; this needs a {method} run.")
    if record.status != "done":
        hint = f"; continue it with: astrocore train --resume {path}" if record.shown_status in (
            "interrupted", "cancelled") else ""
        raise RunError(f"Run {record.id} is {record.shown_status}; only finished runs can be loaded{hint}.")
    try:
        if hasattr(spec.config_class, "from_json"):
            spec.config_class.from_json(record.config)
    except Exception as error:  # the config classes validate in __post_init__
        raise RunError(f"{path / 'run.json'} has an invalid configuration: {type(error).__name__}: "
                       f"{str(error)[:300]}") from None
    for phase, device in (("check", torch.device("meta")), ("load", None)):
        try:
            with warnings.catch_warnings(), (device or contextlib.nullcontext()):
                warnings.simplefilter("ignore")  # "copying into a meta parameter is a no-op"
                run = spec.run_class.load(path)
        except RunError:
            raise
        except Exception as error:
            if phase == "check" and isinstance(error, NotImplementedError):
                continue  # a model that cannot be built on the meta device: checked by the real load
            raise RunError(f"Run {record.id} in {path} cannot be loaded ({_explain(error)}).") from None
    return run


def _explain(error: Exception) -> str:
    text = str(error).strip().replace("\n", " ")
    if isinstance(error, FileNotFoundError):
        return f"a file is missing: {getattr(error, 'filename', None) or text}"
    if "size mismatch" in text or "Missing key" in text or "Unexpected key" in text:
        return f"its weights do not match its configuration: {text[:400]}"
    return f"{type(error).__name__}: {text[:400]}"
