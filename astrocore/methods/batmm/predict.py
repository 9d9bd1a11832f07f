"""Classifying one star from its files: an SDSS spectrum and a ugriz cutout (either may be missing)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...data.dataset import DataError
from ...data.readers.cutouts import read_cutout, read_cutouts
from ...data.readers.sdss import read_sdss_spectrum
from ..registry import load_run
from .run import BatmmRun

BANDS = ("u", "g", "r", "i", "z")


def read_star(spectrum=None, image=None, spectrum_name=None, image_names=None):
    """(flux (3522,) or None, cutout (5, h, w) or None, notes) from paths, bytes or uploads.
    ``image`` is one file (multi-extension FITS / cube) or a list of five per-band files."""
    if spectrum is None and not image:
        raise DataError("Give a spectrum, a ugriz cutout or both.")
    flux, cube, notes = None, None, {}
    if spectrum is not None:
        read = read_sdss_spectrum(spectrum, spectrum_name)
        flux = read["flux"]
        notes["spectrum_reader"] = read["reader"]
        notes["masked_pixels"] = int((read["ivar"] <= 0).sum())
    if image:
        files = list(image) if isinstance(image, (list, tuple)) else [image]
        names = list(image_names) if image_names is not None else [None] * len(files)
        if len(files) == 1:
            cube, _ = read_cutout(files[0], names[0], expected_bands=BANDS)
        else:
            cube, _ = read_cutouts(files, names, expected_bands=BANDS)
    return flux, cube, notes


def explain(run: BatmmRun, flux=None, cube=None) -> dict:
    """The run's verdict on one star: calibrated probability, unimodal probabilities, segment
    weights over wavelength, band weights and the cross-attention maps (layers, heads, image
    tokens, spectral tokens)."""
    result = run.infer(None if flux is None else flux[None], None if cube is None else cube[None])
    edges = run.segment_edges_aa()
    out = {"run": run.id, "probability": float(result["probability"][0]), "logit": float(result["logit"][0]),
           "spectrum_given": flux is not None, "image_given": cube is not None}
    if "spectrum_probability" in result:
        out["spectrum_only_probability"] = float(result["spectrum_probability"][0])
    if "image_probability" in result:
        out["image_only_probability"] = float(result["image_probability"][0])
    if result.get("segment_weights") is not None and flux is not None:
        out["segment_weights"] = [{"from_aa": float(edges[k]), "to_aa": float(edges[k + 1]), "weight": float(w)}
                                  for k, w in enumerate(result["segment_weights"][0])]
    if "band_weights" in result and cube is not None:
        out["band_weights"] = dict(zip(BANDS, map(float, result["band_weights"][0])))
    if "cross_attention" in result:
        out["cross_attention"] = np.asarray(result["cross_attention"][0]).tolist()
    return out


def classify_files(run_path, spectrum=None, image=None) -> dict:
    """``astrocore classify star``: load the run, read the files, explain the star."""
    run = load_run(Path(run_path), method="batmm")  # a tampered or foreign folder: one clear error
    flux, cube, notes = read_star(spectrum, image)
    return {**explain(run, flux, cube), **notes}
