"""Classifying cutout files with a run: read, check, predict; one row per cutout (CLI and app)."""
from __future__ import annotations

import numpy as np
from astropy.table import Table

from ...data.dataset import DataError
from ...data.readers.images import read_image_file

MAX_FILES = 50


def classify_images(run, images: np.ndarray, names: list[str], k_neighbours: int = 5) -> Table:
    """Class probabilities (downstream runs), predicted magnitudes (runs with a pretext network) and
    the nearest neighbours' indices in the run's own data, one row per cutout (n, bands, h, w)."""
    images = run.check_images(images)
    features = run.features(images)
    table = Table({"name": list(names)})
    if run.stage == "downstream":
        proba = run.proba_from_features(features)
        table["predicted_class"] = np.array(run.classes)[proba.argmax(axis=1)]
        for index, name in enumerate(run.classes):
            table[f"p_{name}"] = proba[:, index].round(4)
    if run.stage == "pretext" or run.pretext_net is not None:
        magnitudes = run.predict_magnitudes(images)
        for index, band in enumerate(run.bands):
            table[f"mag_{band}"] = magnitudes[:, index].round(3)
            table[f"mag_{band}"].unit = "mag"
    neighbours, distance = run.neighbours(features, k_neighbours)
    table["neighbours"] = [",".join(map(str, row)) for row in neighbours]
    table["neighbour_distance"] = distance[:, 0].round(3)
    return table


def classify_files(run, files, hdu: int | None = None) -> tuple[Table | None, list[str]]:
    """Classify every cutout of ``files`` (paths, or (name, bytes) pairs); returns (the table of
    :func:`classify_images`, with each cutout's file and index in it; or None) and the error
    message of each file that could not be used."""
    files = list(files)
    if len(files) > MAX_FILES:
        raise DataError(f"At most {MAX_FILES} files at once; got {len(files)}.")
    images, names, errors = [], [], []
    for item in files:
        name, payload = (item if isinstance(item, tuple) else (str(item), item))
        try:
            dataset = read_image_file(payload, name=name, hdu=hdu)
            checked = run.check_images(dataset.images)
        except DataError as error:
            errors.append(f"{name}: {error}" if not str(error).startswith(str(name)) else str(error))
            continue
        images.append(checked)
        names += [name if len(checked) == 1 else f"{name}[{i}]" for i in range(len(checked))]
    if not images:
        return None, errors
    return classify_images(run, np.concatenate(images), names), errors
