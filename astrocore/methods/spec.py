"""What a method declares to the rest of astrocore: :class:`MethodSpec`.

Every method package (``astrocore/methods/<name>/``) ends its ``__init__.py`` with
``SPEC = MethodSpec(...)``; :mod:`astrocore.methods.registry` collects them. The run registry, the
background jobs, the CLI and the embedding explorer find a method only through its spec, by the
``method`` field of a run's ``run.json``.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Mapping, Protocol

import numpy as np

from ..data.dataset import Dataset
from ..runs import RunRecord


class MethodRun(Protocol):
    """What every method's Run class offers (besides its own inference: encode, predict_proba, ...)."""

    record: RunRecord

    @property
    def id(self) -> str: ...

    @property
    def path(self) -> Path: ...

    @classmethod
    def load(cls, path) -> "MethodRun":
        """Rebuild the run from its folder (safetensors + JSON, no pickle)."""

    def representation(self, name: str, dataset: Dataset | None = None) -> np.ndarray:
        """Per-object features ``(n_objects, n_features)`` named in the spec's ``representations``,
        for ``dataset`` (default: the run's own data, rows in the order of :meth:`dataset`)."""

    def dataset(self) -> Dataset:
        """The data the run was trained and evaluated on (rebuilt from ``record.data``)."""


#: ``add_commands(groups)`` receives the CLI's sub-command groups by name: ``"train"``,
#: ``"data_make"``, ``"classify"``, ``"bench"``; it adds its own sub-parsers to them, each with
#: ``set_defaults(handler=function(args) -> exit code)``.
CommandHook = Callable[[Mapping[str, "argparse._SubParsersAction"]], None]


@dataclass(frozen=True)
class MethodSpec:
    """A method's entry in the registry.

    name: the ``method`` field of ``run.json`` and the ``astrocore train <name>`` command.
    title: what the app and the CLI's help call it.
    config_class: a frozen dataclass with ``preset(name, **overrides)``, ``to_json()``, ``from_json()``.
    fit: ``fit(dataset, config, progress=None, runs_root=None, run_id=None, ...) -> Run``.
    run_class: the Run class (see :class:`MethodRun`).
    representations: name -> description of what the explorer can project (e.g. ``{"z": "latent"}``).
    add_commands: registers the method's CLI sub-commands (see :data:`CommandHook`).
    page: the Streamlit page of the method, relative to the project folder (``pages/spectra.py``).
    default_representation: what the explorer and ``astrocore embed`` project unless told otherwise.
    evaluate: ``evaluate(run, max_objects=4000) -> dict``, the metrics ``astrocore evaluate`` prints.
    """

    name: str
    title: str
    config_class: type
    fit: Callable
    run_class: type
    representations: Mapping[str, str] = field(default_factory=dict)
    add_commands: CommandHook | None = None
    page: str | None = None
    default_representation: str | None = None
    evaluate: Callable | None = None  # evaluate(run, max_objects=...) -> dict of metrics (``astrocore evaluate``)

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"A method name must be a Python identifier; got {self.name!r}.")
        if self.default_representation is not None and self.default_representation not in self.representations:
            raise ValueError(f"default_representation {self.default_representation!r} is not one of "
                             f"{sorted(self.representations)}.")


class PresetConfig:
    """Mixin of every method's Config dataclass: JSON round trip and named presets with checked fields.

    A subclass defines ``PRESETS = {"fast": {...}, "paper": {...}}`` (field values per preset) and
    inherits :meth:`preset`, :meth:`to_json` and :meth:`from_json`.
    """

    PRESETS: dict = {}

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, values: dict):
        """Rebuild from :meth:`to_json` output; fields a newer version dropped are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def preset(cls, name: str = "fast", **overrides):
        """The named preset with ``overrides``; unknown preset or field names are refused with the valid ones."""
        if name not in cls.PRESETS:
            raise ValueError(f"Unknown preset {name!r}; choose from {sorted(cls.PRESETS)}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"Unknown configuration field(s) {', '.join(unknown)}; valid fields: "
                             f"{', '.join(sorted(known))}.")
        return cls(**{**cls.PRESETS[name], **overrides})
