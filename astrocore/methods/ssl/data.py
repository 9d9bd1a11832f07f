"""Where an SSL run's cutouts come from: a ``source`` dict (stored in run.json) and its rebuild.

``{"kind": "simulator", "generator": "cutouts", "params": {...}}`` - unlabelled simulated cutouts
(:func:`~astrocore.data.simulators.cutouts.simulate_cutouts`);
``{"kind": "simulator", "generator": "cutouts_label_set", "params": {"name": ..., ...}}`` - a
labelled downstream set (:func:`~astrocore.data.simulators.cutouts.label_set`);
``{"kind": "file", "path": ...}`` - an astrocore Dataset file or folder with images.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...data.dataset import DataError, Dataset
from ...data.simulators.cutouts import LABEL_SETS, label_set, simulate_cutouts

#: Pretext sets span the labelled sets' r range (14-19.5; see LABEL_SETS): a network that never saw
#: the faint half of a downstream set describes it badly (frozen features 0.81 -> 0.83 at 100 labels).
PRETEXT_R_RANGE = (14.0, 19.5)


def pretext_source(n_objects: int = 4000, survey: str = "splus", size: int = 32, seed: int = 0,
                   r_range=PRETEXT_R_RANGE) -> dict:
    return {"kind": "simulator", "generator": "cutouts",
            "params": {"n_objects": int(n_objects), "survey": survey, "size": int(size), "seed": int(seed),
                       "r_range": [float(r) for r in r_range]}}


def label_set_source(name: str, n_objects: int = 3000, survey: str = "splus", size: int = 32, seed: int = 0) -> dict:
    if name not in LABEL_SETS:
        raise DataError(f"Unknown label set {name!r}; choose from {', '.join(LABEL_SETS)}.")
    return {"kind": "simulator", "generator": "cutouts_label_set",
            "params": {"name": name, "n_objects": int(n_objects), "survey": survey, "size": int(size),
                       "seed": int(seed)}}


def file_source(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise DataError(f"No dataset at {path}.")
    return {"kind": "file", "path": str(path.resolve())}


def dataset_from_source(source: dict) -> Dataset:
    """Rebuild the cutouts a run was trained on (simulated sets come from the on-disk cache);
    ``"first": N`` in the source keeps the first N cutouts."""
    dataset = _full_dataset(source)
    if source.get("first"):
        return dataset.subset(np.arange(min(int(source["first"]), len(dataset))))
    return dataset


def _full_dataset(source: dict) -> Dataset:
    kind, params = source.get("kind"), dict(source.get("params", {}))
    if kind == "simulator" and source.get("generator") == "cutouts":
        if "r_range" in params:
            params["r_range"] = tuple(params["r_range"])
        return simulate_cutouts(**params)
    if kind == "simulator" and source.get("generator") == "cutouts_label_set":
        return label_set(**params)
    if kind == "file":
        dataset = Dataset.load(source["path"])
        if dataset.images is None:
            raise DataError(f"{source['path']} has no cutouts (images); an SSL run needs them.")
        return dataset
    raise DataError(f"An SSL run cannot rebuild its data from {source!r}.")
