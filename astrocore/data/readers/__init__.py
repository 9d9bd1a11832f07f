"""Readers of real spectra into :class:`~astrocore.data.dataset.Dataset`.

Entry point: :func:`read_spectra` looks at a path's *content* and dispatches to

* :meth:`Dataset.load` - an astrocore Dataset (``.fits`` with WAVELENGTH + LABELS extensions, or a
  folder with ``spectra.npz``);
* :func:`read_gandalf_folder` - a folder with ``X.npy`` (GANDALF layout);
* :func:`read_apogee` - an APOGEE ``aspcapStar`` / ``apStar`` FITS file;
* :func:`read_npz` - a ``.npz`` of spectra (The Payne's real-spectrum files: ``spectrum`` /
  ``spec_err`` or ``spectra`` / ``spec_errs``);
* :func:`read_table` - any other FITS or CSV table of spectra.

:func:`check_compatible` checks a dataset against a model's wavelength axis; :func:`resample_to`
and :func:`to_apogee_grid` bring data onto it. Every malformed input raises
:class:`~astrocore.data.dataset.DataError` with a message naming the file and the problem.
"""
from __future__ import annotations

from .apogee import read_apogee, to_apogee_grid
from .common import BAD_PIXEL_ERROR, standard_label_name
from .dispatch import check_compatible, read_spectra, resample_to
from .gandalf import read_gandalf_folder, read_npz, write_gandalf_folder
from .tables import read_table, write_table

__all__ = [
    "BAD_PIXEL_ERROR", "read_spectra", "read_apogee", "read_gandalf_folder",
    "write_gandalf_folder", "read_table", "write_table", "read_npz", "check_compatible",
    "resample_to", "to_apogee_grid", "standard_label_name",
]
