"""The observation model: how catalogued nebulae differ from the photoionisation / shock models.

:func:`simulate_nebulae` returns one labels-only :class:`~astrocore.data.dataset.Dataset` with a
``domain`` column: ``source`` rows are the models of :mod:`.nebulae` (labelled; balanced classes;
no noise), ``target`` rows are the same physics passed through an observation model in which each
effect has a knob (a multiplier of its reference strength; ``gap`` multiplies all of them, so
``gap=0`` makes the target a draw from the source distribution):

* ``dig``: diffuse ionised gas (DIG) in the aperture: 10^2.7 x 1e-20 erg/s/cm^2 of Halpha per
  PSF area (0.3 dex scatter) times the aperture area (HII regions: 6 sqrt(F(Halpha) / 1e4) PSF
  areas, 1-20; SNR 2 sqrt(F / 10^3.4), 1-5; PN: point sources, 1), so faint, extended nebulae are
  the most contaminated. DIG line ratios after Haffner et al. (2009, RvMP 81, 969) and Belfiore et al.
  (2022, A&A 659, A26): [SII]/Halpha ~ 0.45, [NII]/Halpha ~ 0.45, [OIII]/Hbeta ~ 0.35, [OI]/Halpha
  ~ 0.06, low density ([SII]6716/6731 ~ 1.45). It raises [SII]/Halpha and [NII]/Halpha of HII
  regions and lowers [OIII]/Hbeta.
* ``dust``: screen extinction with the Fitzpatrick (1999) R_V = 3.1 curve of ``dust_extinction``;
  A_V from a gamma distribution of mean 1 mag (Halpha/Hbeta rises above 2.86; ratios of close
  lines barely change; Hbeta and its S/N drop).
* ``noise``: Gaussian flux errors of 40 x 1e-20 erg/s/cm^2 per line and PSF area, times the square
  root of the aperture area (per galaxy depth scatter
  0.2 dex); a line below 3 sigma is a non-detection and enters the ratios as its 3-sigma upper
  limit (:func:`features_from_fluxes`).
* ``calibration``: per galaxy a flux-calibration tilt of N(0, 0.04) dex per 1000 Angstrom
  (pivot Halpha), as between MUSE pointings.
* ``gradient``: HII-region abundances follow radial gradients (12 + log O/H = 8.55-8.80 at the
  centre, -0.3 dex per R25; Kreckel et al. 2019, ApJ 887, 80) instead of the models' flat prior.
* ``balance``: the observed class balance (86 % HII, 9 % SNR, 5 % PN; Belfiore et al. 2025)
  instead of the models' equal thirds.

Every target row keeps its true class for evaluation only. Fluxes are in 1e-20 erg s^-1 cm^-2.
"""
from __future__ import annotations

import numpy as np
from astropy.table import Table

from ..dataset import Dataset
from .nebulae import CLASSES, LINE_NAMES, LINES, draw_class, line_ratios

VERSION = "1"
SOURCE_FRACTIONS = (1 / 3, 1 / 3, 1 / 3)
OBSERVED_FRACTIONS = (0.86, 0.05, 0.09)  # HII, PN, SNR
# Halpha flux of the nebulae: log10 median and scatter [1e-20 erg s^-1 cm^-2] (PN are faint).
HALPHA_FLUX = {"HII": (4.0, 0.5), "PN": (3.0, 0.3), "SNR": (3.4, 0.35)}
# DIG Halpha flux in one PSF-sized aperture (~0.4 arcsec^2 at ~1e-17 erg/s/cm^2/arcsec^2), and
# the aperture area of each class in PSF areas: HII regions are resolved (50-150 pc at 10-20 Mpc,
# area growing with luminosity), SNR barely, PN are point sources.
DIG_HALPHA_FLUX = 10 ** 2.7
APERTURE_AREA = {"HII": (6.0, 4.0, 1.0, 20.0), "PN": (1.0, 3.0, 1.0, 1.0), "SNR": (2.0, 3.4, 1.0, 5.0)}
DIG_LOG_RATIOS = {  # log10 relative to Halpha (Hbeta: case B 2.86)
    "OIII5006": np.log10(0.35 / 2.86), "NI5200": -1.8, "NII5754": -2.6, "OI6300": -1.22,
    "NII6583": -0.35, "SII6716": np.log10(0.45 * 1.45 / 2.45), "SII6730": np.log10(0.45 / 2.45),
    "SIII9068": -1.1,
}
NOISE_FLUX = 40.0
DETECTION_SIGMA = 3.0
MEAN_AV = 1.0
CALIBRATION_TILT = 0.04  # dex per 1000 Angstrom
KNOBS = ("dig", "dust", "noise", "calibration", "gradient", "balance")
FEATURES = ("log_oiii_hb", "log_nii_ha", "log_sii_ha", "log_oi_ha", "log_sii_ratio")


def features_from_fluxes(fluxes: dict, errors: dict | None = None,
                         detection_sigma: float = DETECTION_SIGMA) -> tuple[dict, dict]:
    """Line ratios of measured fluxes, with non-detections at their upper limit.

    A line with flux < ``detection_sigma`` x error is replaced by that limit before the ratio is
    taken. Returns (ratios as in :func:`.nebulae.line_ratios`, {line: detected bool array}).
    """
    used, detected = {}, {}
    for line in LINE_NAMES:
        flux = np.asarray(fluxes[line], float)
        if errors is None:
            detected[line] = np.isfinite(flux) & (flux > 0)
            used[line] = flux
            continue
        error = np.asarray(errors[line], float)
        limit = detection_sigma * error
        detected[line] = np.isfinite(flux) & (flux > limit)
        used[line] = np.where(detected[line], flux, np.where(error > 0, limit, np.nan))
    return line_ratios(used), detected


def _effective(gap: float, knob: float) -> float:
    if gap < 0 or knob < 0:
        raise ValueError(f"gap and knobs must be >= 0; got gap={gap}, knob={knob}.")
    return float(gap) * float(knob)


def class_counts(n: int, fractions) -> np.ndarray:
    counts = np.floor(np.asarray(fractions) * n).astype(int)
    counts[0] += n - counts.sum()
    return counts


def expected_class_balance(gap: float = 1.0, balance: float = 1.0) -> tuple[float, float, float]:
    """The class shares (HII, PN, SNR) of the target rows the observation model draws."""
    weight = min(1.0, _effective(gap, balance))
    return tuple(float(v) for v in (1 - weight) * np.asarray(SOURCE_FRACTIONS) + weight * np.asarray(OBSERVED_FRACTIONS))


def _gradient_sampler(strength: float):
    """12 + log O/H of HII regions: with probability ``strength`` from a galaxy population with
    radial gradients, else the models' flat prior."""
    def sample(rng, m):
        flat = rng.uniform(8.0, 9.1, m)
        centre = rng.uniform(8.55, 8.80, m)
        radius = np.sqrt(rng.uniform(0.0, 1.0, m))  # uniform in disc area out to R25
        graded = np.clip(centre - 0.3 * radius + rng.normal(0.0, 0.04, m), 8.0, 9.1)
        return np.where(rng.uniform(size=m) < min(1.0, strength), graded, flat)
    return sample


def _draw_domain(rng, counts, oh_sampler=None) -> tuple[dict, dict, np.ndarray]:
    fluxes, params, classes = {k: [] for k in LINE_NAMES}, {}, []
    for index, (name, count) in enumerate(zip(CLASSES, counts)):
        if count == 0:
            continue
        ratio, values = draw_class(name, rng, int(count), oh_sampler if name == "HII" else None)
        median, scatter = HALPHA_FLUX[name]
        halpha = 10 ** rng.normal(median, scatter, int(count))
        for line in LINE_NAMES:  # relative to Hbeta -> absolute
            fluxes[line].append(ratio[line] * halpha / ratio["HA6562"])
        for key in ("log_u", "log_pk", "oh", "te", "ne"):
            params.setdefault(key, []).append(values.get(key, np.full(int(count), np.nan)))
        classes.append(np.full(int(count), index))
    return ({k: np.concatenate(v) for k, v in fluxes.items()},
            {k: np.concatenate(v) for k, v in params.items()}, np.concatenate(classes))


def aperture_area(class_index: np.ndarray, halpha: np.ndarray) -> np.ndarray:
    """Aperture area [PSF areas] of each nebula from its class and Halpha flux."""
    area = np.ones(len(halpha))
    for k, name in enumerate(CLASSES):
        scale, log_pivot, low, high = APERTURE_AREA[name]
        rows = class_index == k
        area[rows] = np.clip(scale * np.sqrt(halpha[rows] / 10 ** log_pivot), low, high)
    return area


def observe(fluxes: dict, class_index: np.ndarray, rng, gap: float = 1.0, dig: float = 1.0, dust: float = 1.0, noise: float = 1.0,
            calibration: float = 1.0, n_galaxies: int = 19) -> tuple[dict, dict, dict]:
    """Pass true nebular fluxes through the observation model. Returns (measured fluxes, errors,
    per-object quantities: galaxy, a_v, dig_fraction)."""
    n = len(fluxes["HA6562"])
    galaxy = rng.integers(0, n_galaxies, n)
    observed = {k: np.asarray(v, float).copy() for k, v in fluxes.items()}
    # diffuse ionised gas in the aperture
    area = aperture_area(class_index, observed["HA6562"])
    dig_halpha = DIG_HALPHA_FLUX * _effective(gap, dig) * area * 10 ** rng.normal(0.0, 0.3, n)
    dig_fraction = dig_halpha / (dig_halpha + observed["HA6562"])
    for line in LINE_NAMES:
        if line == "HA6562":
            share = 1.0
        elif line == "HB4861":
            share = 1 / 2.86
        elif line == "OIII4958":
            share = 10 ** DIG_LOG_RATIOS["OIII5006"] / 2.98
        elif line == "NII6548":
            share = 10 ** DIG_LOG_RATIOS["NII6583"] / 2.94
        elif line == "OI6363":
            share = 10 ** DIG_LOG_RATIOS["OI6300"] / 3.13
        else:
            share = 10 ** DIG_LOG_RATIOS[line]
        scatter = 1.0 if line in ("HA6562", "HB4861") else 10 ** rng.normal(0.0, 0.08, n)
        observed[line] = observed[line] + dig_halpha * share * scatter
    # dust: Fitzpatrick (1999) curve, A_lambda / A_V at each line
    from dust_extinction.parameter_averages import F99  # lazy: dust_extinction imports slowly
    import astropy.units as u

    mean_av = MEAN_AV * _effective(gap, dust)
    a_v = rng.gamma(2.0, mean_av / 2.0, n) if mean_av > 0 else np.zeros(n)
    curve = F99(Rv=3.1)(np.array([LINES[k] for k in LINE_NAMES]) * u.AA)
    # flux calibration tilt per galaxy, pivot at Halpha
    tilt = rng.normal(0.0, CALIBRATION_TILT * _effective(gap, calibration), n_galaxies)[galaxy]
    for k, line in enumerate(LINE_NAMES):
        observed[line] *= 10 ** (-0.4 * a_v * curve[k]) * 10 ** (tilt * (LINES[line] - LINES["HA6562"]) / 1000.0)
    # noise and non-detections
    depth = 10 ** rng.normal(0.0, 0.2, n_galaxies)[galaxy]
    sigma = NOISE_FLUX * _effective(gap, noise) * depth * np.sqrt(area)
    errors = {line: sigma.copy() for line in LINE_NAMES}
    measured = {line: observed[line] + rng.normal(0.0, 1.0, n) * sigma for line in LINE_NAMES}
    return measured, errors, {"galaxy": galaxy, "a_v": a_v, "dig_fraction": dig_fraction}


def simulate_nebulae(n_source: int = 12000, n_target: int = 12000, seed: int = 0, gap: float = 1.0,
                     dig: float = 1.0, dust: float = 1.0, noise: float = 1.0, calibration: float = 1.0,
                     gradient: float = 1.0, balance: float = 1.0, n_galaxies: int = 19) -> Dataset:
    """Source (models) and target ("observed") nebulae in one labels-only Dataset.

    Columns: ``id``, ``domain`` (source | target), ``class`` (HII | PN | SNR), ``class_index``,
    ``<LINE>_FLUX`` and ``<LINE>_FLUX_ERR`` [1e-20 erg s^-1 cm^-2] for every line of
    :data:`.nebulae.LINES` (PHANGS-MUSE names), ``<LINE>_DETECTED``, the log ratios of
    :data:`.nebulae.RATIO_TITLES` (non-detections at their 3-sigma limit), and the physical
    parameters (``log_u``, ``log_pk``, ``oh``, ``te`` [K], ``ne`` [cm^-3], ``a_v`` [mag],
    ``dig_fraction`` of Halpha, ``galaxy``). Pure function of its arguments.
    """
    if n_source < 3 or n_target < 3:
        raise ValueError(f"n_source and n_target must be >= 3; got {n_source}, {n_target}.")
    for name, value in zip(("gap", *KNOBS), (gap, dig, dust, noise, calibration, gradient, balance)):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0; got {value}.")
    rng = np.random.default_rng(seed)
    source_fluxes, source_params, source_class = _draw_domain(rng, class_counts(n_source, SOURCE_FRACTIONS))
    fractions = expected_class_balance(gap, balance)
    target_true, target_params, target_class = _draw_domain(
        rng, class_counts(n_target, fractions), _gradient_sampler(_effective(gap, gradient)))
    measured, errors, extra = observe(target_true, target_class, rng, gap, dig, dust, noise, calibration, n_galaxies)

    columns = {"id": np.arange(n_source + n_target),
               "domain": np.array(["source"] * n_source + ["target"] * n_target),
               "class": np.array(CLASSES)[np.concatenate([source_class, target_class])],
               "class_index": np.concatenate([source_class, target_class]).astype(np.int16)}
    fluxes = {line: np.concatenate([source_fluxes[line], measured[line]]) for line in LINE_NAMES}
    flux_errors = {line: np.concatenate([np.zeros(n_source), errors[line]]) for line in LINE_NAMES}
    ratios, detected = features_from_fluxes(fluxes, flux_errors)
    for line in LINE_NAMES:
        columns[f"{line}_FLUX"] = fluxes[line].astype(np.float32)
        columns[f"{line}_FLUX_ERR"] = flux_errors[line].astype(np.float32)
        columns[f"{line}_DETECTED"] = detected[line]
    columns.update({k: v.astype(np.float32) for k, v in ratios.items()})
    for key in source_params:
        columns[key] = np.concatenate([source_params[key], target_params[key]]).astype(np.float32)
    columns["a_v"] = np.concatenate([np.zeros(n_source), extra["a_v"]]).astype(np.float32)
    columns["dig_fraction"] = np.concatenate([np.zeros(n_source), extra["dig_fraction"]]).astype(np.float32)
    columns["galaxy"] = np.concatenate([np.full(n_source, -1), extra["galaxy"]]).astype(np.int16)
    table = Table(columns)
    for name in table.colnames:
        if name.endswith("_FLUX") or name.endswith("_FLUX_ERR"):
            table[name].unit = "1e-20 erg s-1 cm-2"
    table["te"].unit, table["ne"].unit, table["a_v"].unit = "K", "cm-3", "mag"
    params = {"n_source": int(n_source), "n_target": int(n_target), "seed": int(seed), "gap": float(gap),
              "dig": float(dig), "dust": float(dust), "noise": float(noise), "calibration": float(calibration),
              "gradient": float(gradient), "balance": float(balance), "n_galaxies": int(n_galaxies)}
    return Dataset(None, None, table, provenance={"generator": "nebulae", "version": VERSION, "params": params})


def ratio_shift_summary(dataset: Dataset) -> dict:
    """Median log ratios per (domain, class): how far the observation model moves each class."""
    labels = dataset.labels
    summary = {}
    for domain in ("source", "target"):
        for name in CLASSES:
            rows = (labels["domain"] == domain) & (labels["class"] == name)
            summary[f"{domain}/{name}"] = {k: float(np.nanmedian(np.asarray(labels[k])[rows])) if rows.any() else None
                                           for k in FEATURES + ("log_ha_hb",)}
    return summary
