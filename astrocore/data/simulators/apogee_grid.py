"""The APOGEE combined-spectrum grid (7214 pixels over three chips) and continuum normalisation
of spectra on it, as The Payne's real-spectrum files need."""
from __future__ import annotations

import contextlib
import hashlib

import numpy as np

from ..dataset import DataError

# ---------------------------------------------------------------------------- APOGEE grid
#: log10(lambda / Angstrom) of pixel 0 of the full APOGEE apStar / aspcapStar grid, and its step.
APOGEE_LOG_START = 4.179
APOGEE_LOG_STEP = 6e-6
#: Number of pixels of the full (gap-including) log-lambda grid of apStar / aspcapStar files.
APOGEE_FULL_N_PIXELS = 8575
#: The three detector chips as half-open ranges of full-grid pixel indices (blue, green, red).
APOGEE_CHIPS = ((322, 3242), (3648, 6048), (6412, 8306))
#: Number of pixels of the combined-spectrum grid used by The Payne / The Cannon (chips only).
APOGEE_N_PIXELS = sum(hi - lo for lo, hi in APOGEE_CHIPS)  # 7214

#: Label names assumed when an emulator file does not name them, by number of labels.
DEFAULT_LABEL_NAMES = {
    4: ("teff", "logg", "feh", "afe"),
    5: ("teff", "logg", "feh", "afe", "vmacro"),
}
#: Units of labels not in :data:`astrocore.data.dataset.LABEL_UNITS`.
EXTRA_LABEL_UNITS = {"vmacro": "km / s", "vmicro": "km / s", "vturb": "km / s"}

# Alternative spellings accepted for the standard labels when labels come as a dict / Table.
LABEL_ALIASES = {
    "teff": ("teff", "t_eff", "temperature", "tef"),
    "logg": ("logg", "log_g", "log g", "grav"),
    "feh": ("feh", "fe_h", "[fe/h]", "m_h", "[m/h]", "mh", "metals", "metallicity"),
    "afe": ("afe", "alpha_fe", "[alpha/fe]", "alpha_m", "[alpha/m]", "[a/fe]", "a_fe", "alpha"),
    "vmacro": ("vmacro", "v_macro", "vmac"),
}


def apogee_pixel_indices() -> np.ndarray:
    """Indices of the 7214 combined-grid pixels within the full 8575-pixel APOGEE log grid."""
    return np.concatenate([np.arange(lo, hi) for lo, hi in APOGEE_CHIPS])


def apogee_wavelength(full: bool = False) -> np.ndarray:
    """APOGEE vacuum wavelengths in Angstrom: the 7214-pixel chip grid, or the full 8575 grid."""
    index = np.arange(APOGEE_FULL_N_PIXELS) if full else apogee_pixel_indices()
    return 10.0 ** (APOGEE_LOG_START + APOGEE_LOG_STEP * index)


def file_sha256(path) -> str:
    """Hex sha256 of a file's bytes (provenance of emulators and survey files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------- continuum
def _segments(wavelength: np.ndarray, gap_factor: float = 5.0) -> list[np.ndarray]:
    """Pixel-index arrays of the contiguous segments (detector chips) of a wavelength axis.

    A new segment starts wherever the log-wavelength step exceeds ``gap_factor`` times the median
    step. A gap-free axis covering APOGEE's H band (e.g. the full 8575-pixel apStar grid, whose chip
    gaps are zero-filled rather than absent) is split at APOGEE's chip boundaries.
    """
    n = wavelength.size
    if n < 2:
        return [np.arange(n)]
    step = np.diff(np.log(wavelength))
    cuts = np.flatnonzero(step > gap_factor * np.median(step)) + 1
    if cuts.size == 0 and wavelength[0] < 15300 and wavelength[-1] > 16800:
        full = apogee_wavelength(full=True)
        edges = [0.5 * (full[APOGEE_CHIPS[0][1] - 1] + full[APOGEE_CHIPS[1][0]]),
                 0.5 * (full[APOGEE_CHIPS[1][1] - 1] + full[APOGEE_CHIPS[2][0]])]
        cuts = np.searchsorted(wavelength, edges)
    bounds = np.concatenate([[0], cuts, [n]])
    return [np.arange(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]


def _single_threaded_blas():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _fit_continuum(wavelength, flux2, valid, pixel_ok, continuum, *, order, low, high_reject,
                   n_iter, tolerance, chunk_size):
    """Fill ``continuum`` in place; see :func:`continuum_normalise` for the method."""
    for segment in _segments(wavelength):
        x = wavelength[segment]
        x = 2.0 * (x - x[0]) / max(x[-1] - x[0], 1e-12) - 1.0
        degree = min(order, max(segment.size - 1, 0))
        design = np.polynomial.legendre.legvander(x, degree)  # (m, d)
        n_coef = design.shape[1]
        outer = (design[:, :, None] * design[:, None, :]).reshape(segment.size, -1)  # (m, d*d)
        for start in range(0, len(flux2), chunk_size):
            stop = min(start + chunk_size, len(flux2))
            seg_valid = valid[start:stop][:, segment]
            f_all = np.where(seg_valid, flux2[start:stop][:, segment], 0.0)
            base_all = seg_valid & pixel_ok[segment]
            keep_all = base_all.copy()
            fit_all = np.zeros_like(f_all)
            active = np.arange(stop - start)  # rows whose kept set is still changing
            for _ in range(max(n_iter, 1)):
                f, base, keep = f_all[active], base_all[active], keep_all[active]
                w = keep.astype(np.float64)
                normal = (w @ outer).reshape(len(w), n_coef, n_coef)
                rhs = (w * f) @ design
                enough = keep.sum(axis=1) > n_coef
                normal[~enough] = np.eye(n_coef)
                rhs[~enough] = 0.0
                coeffs = np.linalg.solve(normal, rhs[..., None])[..., 0]
                fit = coeffs @ design.T
                # Too few usable pixels: fall back to the median of the valid flux (or 1).
                for i in np.flatnonzero(~enough):
                    good = f[i][seg_valid[active[i]]]
                    fit[i] = np.median(good) if good.size else 1.0
                shift = np.max(np.abs(fit - fit_all[active]), axis=1)
                fit_all[active] = fit
                resid = f - fit
                n_keep = np.maximum(keep.sum(axis=1), 1)
                sigma = np.sqrt((w * resid**2).sum(axis=1) / n_keep)[:, None]
                new_keep = base & (resid > -low * sigma) & (resid < high_reject * sigma)
                # never clip below the polynomial's degrees of freedom
                short = new_keep.sum(axis=1) <= n_coef
                new_keep[short] = keep[short]
                scale = np.maximum(np.median(np.abs(fit), axis=1), 1e-30)
                changed = np.any(new_keep != keep, axis=1) & (shift > tolerance * scale)
                keep_all[active] = new_keep
                active = active[changed]
                if active.size == 0:
                    break
            fit_all = np.where(np.abs(fit_all) > 0, fit_all, 1.0)
            continuum[start:stop, segment[0]:segment[-1] + 1] = fit_all


def continuum_normalise(wavelength, flux, errors=None, *, order: int = 2,
                        low_reject: float = 1.75, high_reject: float = 3.0, n_iter: int = 50,
                        tolerance: float = 1e-3, continuum_pixels=None,
                        return_continuum: bool = False,
                        chunk_size: int = 256):
    """Divide spectra by a pseudo-continuum: a polynomial per chip through the upper envelope.

    Method (deterministic, no random numbers): the wavelength axis is split into contiguous
    segments (detector chips; see :func:`_segments`). In each segment a Legendre polynomial of
    degree ``order`` in wavelength is fitted by least squares to the valid pixels (finite,
    non-zero flux, and finite positive error when ``errors`` is given), then iteratively refitted
    after rejecting pixels more than ``low_reject`` sigma *below* or ``high_reject`` sigma *above*
    the fit (sigma = rms of the residuals of the kept pixels), for at most ``n_iter`` iterations or
    until the kept set stops changing or the fit moves by less than ``tolerance`` (relative).
    The asymmetric clipping discards absorption lines so the fit settles on the upper envelope,
    i.e. the continuum. If ``continuum_pixels`` (boolean mask or
    indices of known continuum pixels, such as The Cannon's) is given, only those pixels are fitted
    and the clipping is symmetric (``high_reject`` both sides).

    Parameters
    ----------
    wavelength : array (n_pix,)
        Angstrom, strictly increasing.
    flux : array (n_pix,) or (n, n_pix)
    errors : array like ``flux``, optional
        Divided by the same continuum.
    return_continuum : bool
        Also return the fitted continuum.

    Returns
    -------
    normalised flux (float32, same shape as ``flux``) [, normalised errors] [, continuum]
        Errors are returned only when given. Invalid pixels keep their (non-finite or zero) value
        divided by the continuum; callers replace them as they see fit.
    """
    wavelength = np.asarray(wavelength, dtype=np.float64).ravel()
    flux_in = np.asarray(flux, dtype=np.float64)
    one_d = flux_in.ndim == 1
    flux2 = np.atleast_2d(flux_in)
    if flux2.ndim != 2 or flux2.shape[1] != wavelength.size:
        raise DataError(
            f"continuum_normalise: flux has shape {flux_in.shape} but the wavelength axis has "
            f"{wavelength.size} pixels."
        )
    if order < 0:
        raise DataError("continuum_normalise: order must be >= 0.")
    err2 = None
    if errors is not None:
        err2 = np.atleast_2d(np.asarray(errors, dtype=np.float64))
        if err2.shape != flux2.shape:
            raise DataError(
                f"continuum_normalise: errors have shape {err2.shape}, flux {flux2.shape}."
            )
    valid = np.isfinite(flux2) & (flux2 != 0)
    if err2 is not None:
        valid &= np.isfinite(err2) & (err2 > 0)
    pixel_ok = np.ones(wavelength.size, dtype=bool)
    if continuum_pixels is not None:
        pixels = np.asarray(continuum_pixels)
        if pixels.dtype == bool:
            if pixels.size != wavelength.size:
                raise DataError(
                    f"continuum_pixels mask has {pixels.size} entries for {wavelength.size} pixels."
                )
            pixel_ok = pixels
        else:
            pixel_ok = np.zeros(wavelength.size, dtype=bool)
            pixel_ok[pixels.astype(int)] = True
    low = high_reject if continuum_pixels is not None else low_reject

    continuum = np.ones_like(flux2)
    # The products here are small (pixels x polynomial terms): BLAS threads only add overhead,
    # several times over on a loaded machine, so they run single-threaded.
    with _single_threaded_blas():
        _fit_continuum(wavelength, flux2, valid, pixel_ok, continuum, order=order, low=low,
                       high_reject=high_reject, n_iter=n_iter, tolerance=tolerance,
                       chunk_size=chunk_size)
    normalised = (flux2 / continuum).astype(np.float32)
    outputs = [normalised[0] if one_d else normalised]
    if err2 is not None:
        norm_err = (err2 / np.abs(continuum)).astype(np.float32)
        outputs.append(norm_err[0] if one_d else norm_err)
    if return_continuum:
        outputs.append(continuum[0] if one_d else continuum)
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


CONTINUUM_METHOD = {
    "method": "legendre polynomial per chip, iterative asymmetric sigma clipping (upper envelope)",
    "order": 2, "low_reject": 1.75, "high_reject": 3.0, "n_iter": 50, "tolerance": 1e-3,
}
