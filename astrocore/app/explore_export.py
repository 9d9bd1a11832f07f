"""The explorer's tags (named selections kept in the run folder) and exports (CSV, FITS, VOTable)."""
from __future__ import annotations

import io
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.votable import from_table, writeto
from astropy.table import Table

from ..data.dataset import LABEL_TITLES, LABEL_UNITS
from .explore import EXPORT_FORMATS, ExploreData, ExploreError


# ============================================================================ tags
def tags_path(run_folder) -> Path:
    return Path(run_folder) / "tags.json"


def load_tags(run_folder) -> dict[str, dict]:
    path = tags_path(run_folder)
    if not path.exists():
        return {}
    try:
        tags = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return tags if isinstance(tags, dict) else {}


def _write_tags(run_folder, tags: dict) -> None:
    path = tags_path(run_folder)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tags-", suffix=".json")
    with os.fdopen(handle, "w") as stream:
        json.dump(tags, stream, indent=1)
    os.replace(temporary, path)


def save_tag(run_folder, name: str, data: ExploreData, index) -> dict:
    """Keep a named selection in ``runs/ID/tags.json`` (ids and row numbers); replaces a same-named tag."""
    name = str(name).strip()
    if not name:
        raise ExploreError("Give the selection a name.")
    if len(name) > 80:
        raise ExploreError("Tag names are limited to 80 characters.")
    index = np.unique(np.asarray(index, int))
    if not len(index):
        raise ExploreError("The selection is empty: lasso some objects first.")
    tags = load_tags(run_folder)
    tags[name] = {"rows": index.tolist(), "ids": data.ids[index].tolist(),
                  "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _write_tags(run_folder, tags)
    return tags[name]


def delete_tag(run_folder, name: str) -> None:
    tags = load_tags(run_folder)
    if tags.pop(name, None) is not None:
        _write_tags(run_folder, tags)


def tag_rows(data: ExploreData, tag: dict) -> np.ndarray:
    """Rows of a tag, found by id (robust to reordering), falling back to stored rows."""
    position = {value: i for i, value in enumerate(data.ids)}
    rows = [position[i] for i in tag.get("ids", []) if i in position]
    if not rows:
        rows = [r for r in tag.get("rows", []) if 0 <= int(r) < len(data)]
    return np.unique(np.asarray(rows, int))


# ============================================================================ export
def selection_table(data: ExploreData, index, coordinates=None, method: str = "", representation: str = "") -> Table:
    """An astropy Table of the selection: id, labels (with units), projection coordinates, latent z."""
    index = np.asarray(index, int)
    table = Table()
    table["row"] = index
    for name in data.table.columns:
        column = data.table[name].to_numpy()[index]
        if column.dtype.kind == "O":
            column = column.astype(str)
        table[name] = column
        if name in LABEL_UNITS:
            table[name].unit = "K" if LABEL_UNITS[name] == "K" else None
            table[name].description = LABEL_TITLES.get(name, name)
    if coordinates is not None:
        coordinates = np.asarray(coordinates, float)
        table[f"{method or 'proj'}_1"] = coordinates[index, 0]
        table[f"{method or 'proj'}_2"] = coordinates[index, 1]
    for i in range(data.latent.shape[1]):
        table[f"z_{i}"] = data.latent[index, i].astype(float)
    table.meta["run"] = data.run_id
    if representation:
        table.meta["repr"] = representation
    return table


def export_bytes(table: Table, fmt: str) -> bytes:
    """The table as CSV, a FITS binary table or a VOTable (all through astropy)."""
    buffer = io.BytesIO()
    if fmt == "csv":
        text = io.StringIO()
        table.write(text, format="ascii.csv")
        return text.getvalue().encode()
    if fmt == "fits":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hdu = fits.table_to_hdu(table)
            fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buffer)
        return buffer.getvalue()
    if fmt == "votable":
        writeto(from_table(table), buffer)
        return buffer.getvalue()
    raise ExploreError(f"format must be one of {list(EXPORT_FORMATS)}; got {fmt!r}.")


def read_export(payload: bytes, fmt: str) -> Table:
    """Read back what :func:`export_bytes` wrote (used by the tests and handy in a notebook)."""
    if fmt == "csv":
        return Table.read(payload.decode(), format="ascii.csv")
    if fmt == "fits":
        return Table.read(io.BytesIO(payload), format="fits")
    if fmt == "votable":
        return Table.read(io.BytesIO(payload), format="votable")
    raise ExploreError(f"format must be one of {list(EXPORT_FORMATS)}; got {fmt!r}.")


