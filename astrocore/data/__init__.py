"""Data: simulators and readers, each returning a :class:`Dataset`.

``load_source`` is the one entry point the CLI and the app use: a built-in simulator name
(``rvs``, ``apogee``), ``payne:<emulator.npz>``, or a path to a file or folder of spectra.
The returned ``source`` dict is stored with a run so the same data can be rebuilt later.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from astropy.table import Table

from .dataset import LABEL_TITLES, LABEL_UNITS, DataError, Dataset, write_store
from .readers import read_spectra
from .store import is_store
from .simulators.apogee import render_apogee, simulate_apogee
from .simulators.payne import PayneEmulator, payne_grid
from .simulators.rvs import render_rvs, simulate_rvs

__all__ = ["Dataset", "DataError", "LABEL_UNITS", "LABEL_TITLES", "load_source", "dataset_from_source",
           "renderer_for", "source_for", "SIMULATORS", "make_store"]

SIMULATORS = ("rvs", "apogee")


def source_for(name: str, n_stars: int | None = None, seed: int = 0, snr: float | None = None,
               **params) -> dict:
    """The description (``source`` dict) of a dataset, without building it.

    name: ``rvs`` (n_stars random stars, default 2000), ``apogee`` (n_stars chemical fingerprints,
    default 60, each on the Teff x logg grid), ``payne:PATH`` (n_stars chemistries of a Payne
    emulator, default 60, each on the giant Teff x logg grid), or a path to a file or folder.
    """
    if name == "rvs":
        return {"kind": "simulator", "generator": "rvs",
                "params": {"n_stars": int(n_stars or 2000), "seed": int(seed), "snr": snr, **params}}
    if name == "apogee":
        return {"kind": "simulator", "generator": "apogee",
                "params": {"n_fingerprints": int(n_stars or 60), "seed": int(seed), "snr": snr, **params}}
    if name.startswith("payne:"):
        path = str(Path(name[len("payne:"):]).resolve())
        return {"kind": "simulator", "generator": "payne",
                "params": {"path": path, "seed": int(seed), "n_fingerprints": int(n_stars or 60), **params}}
    path = Path(name)
    if not path.exists():
        raise DataError(
            f"{name!r} is neither a built-in simulator ({', '.join(SIMULATORS)}, payne:PATH) nor an existing file or folder."
        )
    return {"kind": "file", "path": str(path.resolve())}


def load_source(name: str, n_stars: int | None = None, seed: int = 0, snr: float | None = None,
                **params) -> tuple[Dataset, dict]:
    """Build or read a dataset (see :func:`source_for`). Returns (dataset, source), where
    ``source`` rebuilds it with :func:`dataset_from_source`."""
    source = source_for(name, n_stars, seed, snr, **params)
    return dataset_from_source(source), source


def dataset_from_source(source: dict) -> Dataset:
    """Rebuild the dataset described by ``source`` (as stored in a run's run.json)."""
    if source.get("kind") == "simulator":
        generator, params = source["generator"], dict(source.get("params", {}))
        if generator == "rvs":
            return simulate_rvs(**params)
        if generator == "apogee":
            return simulate_apogee(**params)
        if generator == "payne":
            return payne_grid(**params)
        raise DataError(f"Unknown simulator {generator!r}.")
    if source.get("kind") == "file":
        if is_store(source["path"]):  # an on-disk store: spectra stay on disk, read per batch
            return Dataset.load(source["path"])
        return read_spectra(source["path"])
    raise DataError(f"Cannot rebuild data from {source!r}.")


def renderer_for(dataset_or_source) -> Callable[[Table], np.ndarray] | None:
    """The noiseless spectrum synthesiser behind a simulated dataset, or None for real data.

    The function takes a Table (or dict) of labels and returns spectra on the dataset's wavelength
    axis; it is how "the true spectrum at other Teff/logg" is computed.
    """
    provenance = getattr(dataset_or_source, "provenance", None)
    if provenance is not None:
        generator, params = provenance.get("generator"), provenance.get("params", {})
    else:
        generator, params = dataset_or_source.get("generator"), dataset_or_source.get("params", {})
    if generator == "rvs":
        return render_rvs
    if generator == "apogee":
        return render_apogee
    if generator == "payne":
        path = params.get("path") or (provenance or {}).get("path")
        if path and Path(path).exists():
            emulator = PayneEmulator.load(path)
            return emulator.render_normalised if hasattr(emulator, "render_normalised") else emulator.render
    return None


def make_store(name: str, out, n_stars: int | None = None, seed: int = 0, snr: float | None = None,
               rows_per_part: int = 8192) -> Path:
    """Simulate ``name`` (``rvs``, ``apogee`` or ``payne:PATH``) into the on-disk store ``out`` part by
    part, holding about ``rows_per_part`` spectra in memory at a time. Part k is drawn with its own
    seed (part 0 with ``seed``), so the set equals the in-memory one only when it fits in one part;
    ids and fingerprints run on across parts."""
    per_unit = 1 if name == "rvs" else 210  # a chemistry is rendered at every grid point
    n_units = int(n_stars or (2000 if name == "rvs" else 60))
    units_per_part = max(1, rows_per_part // per_unit)

    def parts():
        rows = 0
        for k, start in enumerate(range(0, n_units, units_per_part)):
            count = min(units_per_part, n_units - start)
            part, _ = load_source(name, n_stars=count, seed=seed if k == 0 else seed * 100_003 + k, snr=snr)
            part.labels["id"] = np.arange(rows, rows + len(part))
            if "fingerprint" in part.labels.colnames:
                part.labels["fingerprint"] = np.asarray(part.labels["fingerprint"]) + start
            part.provenance = {**part.provenance, "store": {"generator": name, "n_stars": n_units, "seed": seed,
                                                            "snr": snr, "rows_per_part": rows_per_part}}
            rows += len(part)
            yield part

    return write_store(out, parts())
