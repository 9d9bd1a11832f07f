"""Multi-band cutouts of stars, quasars and galaxies drawn with GalSim (Martinazzo et al. 2020 setting).

:func:`simulate_cutouts` is a pure function of (parameters, seed): the same call gives the same
bytes, and big sets are cached on disk (:mod:`astrocore.data.cache`) and drawn on all CPU cores.
It returns a :class:`~astrocore.data.dataset.Dataset` with ``images`` (n, n_bands, size, size) in
image units of zero point 30 (mag = 30 - 2.5 log10(flux)), sky-subtracted, with the sky's and the
source's noise, and labels: ``object_class`` (star / quasar / galaxy), ``morphology`` (star,
quasar, elliptical, lenticular, spiral, irregular, merger), ``r_mag``, ``redshift``,
``seeing_fwhm`` [arcsec], ``sersic_n``, ``hlr_arcsec``, ``bulge_to_total`` and the true total AB
magnitude in every band (``mag_true_<band>``).

Physics (docs/physics.md section 4): stars are the PSF with stellar-locus colours; quasars are
point sources with blue power-law colours and broad lines; ellipticals are Sersic n ~ 3-6;
lenticulars a bulge + disc with bulge-to-total ~ 0.5; spirals an exponential disc with a small red
bulge and blue star-forming clumps; irregulars clumpy (RandomKnots); mergers two overlapping
galaxies sheared by tides with a tidal tail. Shapes (Sersic index of generic galaxies, sizes,
ellipticities) follow :data:`COSMOS_PRIOR`, a built-in summary of real COSMOS Sersic fits.

:func:`label_set` draws the paper's labelled downstream sets (star/galaxy, star/galaxy/quasar,
merging vs not, morphology with 2 and 4 classes, with the paper's class imbalance).
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context

import numpy as np
from astropy.table import Table

from ..cache import cached_dataset
from ..dataset import DataError, Dataset
from . import cutouts_render as render
from .cutouts_sed import (SURVEYS, ZERO_POINT, galaxy_component_magnitudes, quasar_magnitudes,
                          star_magnitudes)

VERSION = "1"
MORPHOLOGIES = ("star", "quasar", "elliptical", "lenticular", "spiral", "irregular", "merger")
GALAXY_MORPHOLOGIES = MORPHOLOGIES[2:]

# The shape prior, summarised from the 276 cleaned COSMOS Sersic fits of GalSim's example data
# (../shared/data/galsim/cosmos_sersics_sample_N300_cleaned.asc; HST F814W, I < 23.5):
#   log10 n: mean 0.139, std 0.242 (range -0.30 .. 0.61); log10 half-light radius [arcsec]: mean
#   -0.352, std 0.240; |g| (reduced shear): mean 0.306, std 0.186, a Beta(1.58, 3.58) by the method
#   of moments; the three are nearly uncorrelated (|r| < 0.1). The sample's typical magnitude is
#   about I = 22.5; brighter galaxies are drawn larger, by 0.13 dex per magnitude (angular size
#   ~ flux^0.33, as for galaxies of one physical size at different distances).
# tests/test_ssl_simulator.py compares this prior with the file when ../shared is present.
COSMOS_PRIOR = {
    "log_n_mean": 0.139, "log_n_std": 0.242, "log_n_range": (-0.30, 0.61),
    "log_hlr_mean": -0.352, "log_hlr_std": 0.240,
    "g_beta": (1.58, 3.58),
    "reference_mag": 22.5, "size_slope_dex_per_mag": 0.13,
}

#: Fractions of each morphology in the unlabelled (pretext) mix.
PRETEXT_MIX = {"star": 0.35, "quasar": 0.10, "elliptical": 0.12, "lenticular": 0.10, "spiral": 0.22,
               "irregular": 0.07, "merger": 0.04}
GALAXY_MIX = {"elliptical": 0.22, "lenticular": 0.18, "spiral": 0.42, "irregular": 0.10, "merger": 0.08}
NON_INTERACTING_MIX = {"elliptical": 0.25, "lenticular": 0.20, "spiral": 0.43, "irregular": 0.12}

# The paper's downstream sets: class names, the per-class mixes that define them and the paper's
# class counts (Martinazzo et al. 2020, Table 1), which set the imbalance; r range of each set:
# star / galaxy / quasar labels come from spectroscopy (SDSS: galaxies r < 17.8, quasars i < 19.1
# in the main samples), so those sets stop at r = 19.5; EFIGI morphologies are of bright nearby
# galaxies.
LABEL_SETS = {
    "star_galaxy": {"classes": {"star": {"star": 1.0}, "galaxy": GALAXY_MIX},
                    "paper_counts": (27981, 22109), "r_range": (14.0, 19.5)},
    "star_galaxy_quasar": {"classes": {"star": {"star": 1.0}, "galaxy": GALAXY_MIX, "quasar": {"quasar": 1.0}},
                           "paper_counts": (18000, 18000, 18000), "r_range": (14.0, 19.5)},
    "merger": {"classes": {"non-interacting": NON_INTERACTING_MIX, "merger": {"merger": 1.0}},
               "paper_counts": (9988, 5778), "r_range": (14.0, 19.0)},
    "morphology_2": {"classes": {"elliptical": {"elliptical": 1.0}, "spiral": {"spiral": 1.0}},
                     "paper_counts": (289, 3315), "r_range": (13.0, 17.5)},
    "morphology_4": {"classes": {"elliptical": {"elliptical": 1.0}, "spiral": {"spiral": 1.0},
                                 "lenticular": {"lenticular": 1.0}, "irregular": {"irregular": 1.0}},
                     "paper_counts": (289, 3315, 537, 248), "r_range": (13.0, 17.5)},
}


# ============================================================================ drawing parameters
def _counts(mix: dict, n: int) -> dict:
    fractions = np.array([mix[k] for k in mix], dtype=float)
    fractions = fractions / fractions.sum()
    counts = np.floor(fractions * n).astype(int)
    counts[np.argsort(-(fractions * n - counts))[: n - counts.sum()]] += 1
    return dict(zip(mix, counts))


def _magnitudes_power_law(rng, n: int, r_range: tuple, slope: float) -> np.ndarray:
    """r magnitudes with number counts dN/dm ~ 10^(slope m) in ``r_range`` (faint objects dominate)."""
    low, high = r_range
    if slope == 0:
        return rng.uniform(low, high, n)
    a, b = 10 ** (slope * low), 10 ** (slope * high)
    return np.log10(a + rng.uniform(0, 1, n) * (b - a)) / slope


def draw_shapes(rng, n: int, r_mag: np.ndarray) -> dict:
    """Sersic index, half-light radius [arcsec] and reduced shear g drawn from :data:`COSMOS_PRIOR`
    (sizes scaled to the galaxies' magnitudes)."""
    prior = COSMOS_PRIOR
    log_n = np.clip(rng.normal(prior["log_n_mean"], prior["log_n_std"], n), *prior["log_n_range"])
    shift = prior["size_slope_dex_per_mag"] * (prior["reference_mag"] - r_mag)
    log_hlr = rng.normal(prior["log_hlr_mean"], prior["log_hlr_std"], n) + shift
    g = rng.beta(*prior["g_beta"], n)
    return {"sersic_n": 10 ** log_n, "hlr": np.clip(10 ** log_hlr, 0.15, 6.0), "g": g}


def _polar(g, angle):
    return g * np.cos(2 * angle), g * np.sin(2 * angle)


def _draw_objects(n_objects: int, survey_name: str, mix: dict, r_range: tuple, seed: int) -> tuple[dict, Table]:
    """Every object's components, per-band fluxes and labels (cheap, vectorised, in one process)."""
    survey = SURVEYS[survey_name]
    rng = np.random.default_rng([seed, 31])
    counts = _counts(mix, n_objects)
    morphology = np.concatenate([np.full(c, m) for m, c in counts.items()]).astype("<U10")
    morphology = morphology[rng.permutation(n_objects)]
    n = n_objects
    slope = np.where(np.isin(morphology, ("star",)), 0.18, 0.30)
    r_mag = np.array([_magnitudes_power_law(rng, 1, r_range, s)[0] for s in slope])
    # Redshift grows with faintness (galaxies), quasars 0.3-2.5.
    redshift = np.clip(0.03 * 10 ** (0.2 * (r_mag - 15.0)) * rng.lognormal(0, 0.3, n), 0.005, 0.6)
    shapes = draw_shapes(rng, n, r_mag)
    angle = rng.uniform(0, np.pi, n)
    seeing = survey.seeing_fwhm * 10 ** rng.normal(0, survey.seeing_scatter, n)
    centre = rng.uniform(-0.5, 0.5, (n, 2))  # sub-pixel shifts [pixels]

    shape = (n, render.MAX_COMPONENTS)
    comp = {key: np.zeros(shape) for key in ("sersic_n", "hlr", "g1", "g2", "dx", "dy")}
    comp["kind"] = np.zeros(shape, dtype=np.int64)
    comp["n_knots"] = np.zeros(shape, dtype=np.int64)
    comp["seed"] = rng.integers(0, 2**31 - 1, shape)
    flux = np.zeros((n, render.MAX_COMPONENTS, survey.n_bands))
    true_mag = np.zeros((n, survey.n_bands))
    labels_n = np.full(n, np.nan)
    labels_hlr = np.zeros(n)
    bulge_to_total = np.full(n, np.nan)

    def to_flux(magnitudes):
        return 10 ** (-0.4 * (magnitudes - ZERO_POINT))

    def set_component(index, slot, kind, magnitudes, sersic_n=1.0, hlr=0.0, g=0.0, pa=0.0, dx=0.0, dy=0.0,
                      n_knots=0):
        comp["kind"][index, slot] = kind
        comp["sersic_n"][index, slot], comp["hlr"][index, slot] = sersic_n, hlr
        comp["g1"][index, slot], comp["g2"][index, slot] = _polar(g, pa)
        comp["dx"][index, slot], comp["dy"][index, slot] = dx, dy
        comp["n_knots"][index, slot] = n_knots
        flux[index, slot] = to_flux(magnitudes)

    # --- point sources
    stars = np.flatnonzero(morphology == "star")
    if stars.size:
        colour = rng.normal(0.55, 0.35, stars.size)
        magnitudes = star_magnitudes(survey, r_mag[stars], colour)
        for k, i in enumerate(stars):
            set_component(i, 0, render.POINT, magnitudes[k])
    quasars = np.flatnonzero(morphology == "quasar")
    if quasars.size:
        redshift[quasars] = rng.uniform(0.3, 2.5, quasars.size)
        magnitudes = quasar_magnitudes(survey, r_mag[quasars], redshift[quasars],
                                       rng.normal(-0.5, 0.3, quasars.size), rng)
        for k, i in enumerate(quasars):
            set_component(i, 0, render.POINT, magnitudes[k])
    redshift[stars] = 0.0

    # --- galaxies: component magnitudes per template, split by light fractions
    def component_mags(index, template, fraction):
        part_r = r_mag[index] - 2.5 * np.log10(np.clip(fraction, 1e-3, 1))
        return galaxy_component_magnitudes(survey, template, part_r, redshift[index], rng)

    for morph in GALAXY_MORPHOLOGIES:
        index = np.flatnonzero(morphology == morph)
        if index.size == 0:
            continue
        hlr, g, pa = shapes["hlr"][index], shapes["g"][index], angle[index]
        m = index.size
        if morph == "elliptical":
            n_sersic = rng.uniform(3.0, 6.0, m)
            mags = component_mags(index, "old", np.ones(m))
            for k, i in enumerate(index):
                set_component(i, 0, render.SERSIC, mags[k], n_sersic[k], hlr[k] * 0.8, g[k] * 0.6, pa[k])
            labels_n[index], bulge_to_total[index] = n_sersic, 1.0
        elif morph in ("lenticular", "spiral"):
            bt = np.clip(rng.normal(0.5, 0.1, m), 0.3, 0.7) if morph == "lenticular" else rng.uniform(0.05, 0.3, m)
            knots = np.zeros(m) if morph == "lenticular" else rng.uniform(0.1, 0.25, m)
            disc_fraction = 1 - bt - knots
            bulge = component_mags(index, "old", bt)
            disc = component_mags(index, "intermediate" if morph == "lenticular" else "disc", disc_fraction)
            clumps = component_mags(index, "starburst", np.maximum(knots, 1e-3))
            n_bulge = rng.uniform(2.5, 4.5, m)
            for k, i in enumerate(index):
                set_component(i, 0, render.SERSIC, bulge[k], n_bulge[k], hlr[k] * 0.35, g[k] * 0.3, pa[k])
                set_component(i, 1, render.DISC, disc[k], 1.0, hlr[k], g[k], pa[k])
                if knots[k] > 0:
                    set_component(i, 2, render.KNOTS, clumps[k], 1.0, hlr[k] * 1.1, g[k], pa[k],
                                  n_knots=int(rng.integers(15, 40)))
            labels_n[index], bulge_to_total[index] = 1.0, bt
        elif morph == "irregular":
            knots = rng.uniform(0.4, 0.7, m)
            disc = component_mags(index, "starburst", 1 - knots)
            clumps = component_mags(index, "starburst", knots)
            for k, i in enumerate(index):
                set_component(i, 0, render.DISC, disc[k], 1.0, hlr[k], g[k] * 0.5, pa[k])
                set_component(i, 1, render.KNOTS, clumps[k], 1.0, hlr[k] * 1.2, g[k] * 0.3, pa[k],
                              n_knots=int(rng.integers(10, 40)))
            labels_n[index], bulge_to_total[index] = 1.0, 0.0
        elif morph == "merger":
            # Two galaxies (flux ratio 1:1 to 1:4) a little more than a half-light radius apart,
            # each stretched by the other's tide, plus a tidal tail of 10-20 % of the light.
            ratio = rng.uniform(0.25, 1.0, m)
            tail = rng.uniform(0.10, 0.20, m)
            first = (1 - tail) / (1 + ratio)
            second = (1 - tail) - first
            separation = hlr * rng.uniform(1.0, 2.2, m)
            direction = rng.uniform(0, np.pi, m)
            mags_a = component_mags(index, "intermediate", first)
            mags_b = component_mags(index, "disc", second)
            mags_t = component_mags(index, "disc", tail)
            n_a = 10 ** np.clip(rng.normal(0.4, 0.2, m), 0.0, 0.78)
            for k, i in enumerate(index):
                ux, uy = np.cos(direction[k]), np.sin(direction[k])
                half = separation[k] / 2
                tidal_g = rng.uniform(0.25, 0.5)
                set_component(i, 0, render.SERSIC, mags_a[k], n_a[k], hlr[k] * 0.7, tidal_g, direction[k],
                              -half * ux, -half * uy)
                set_component(i, 1, render.DISC, mags_b[k], 1.0, hlr[k] * 0.6 * np.sqrt(ratio[k]) + 0.1,
                              tidal_g, direction[k], half * ux, half * uy)
                # The tail leaves the second galaxy at an angle, curving away from the pair.
                tail_angle = direction[k] + rng.choice([-1, 1]) * rng.uniform(0.5, 1.1)
                set_component(i, 2, render.TAIL, mags_t[k], 1.0, hlr[k] * 1.3, 0.75, tail_angle,
                              half * ux + 1.2 * hlr[k] * np.cos(tail_angle),
                              half * uy + 1.2 * hlr[k] * np.sin(tail_angle))
            labels_n[index], bulge_to_total[index] = n_a, np.nan
        labels_hlr[index] = hlr

    for i in range(n):
        present = flux[i].sum(axis=1) > 0
        true_mag[i] = ZERO_POINT - 2.5 * np.log10(flux[i][present].sum(axis=0))
    object_class = np.where(np.isin(morphology, GALAXY_MORPHOLOGIES), "galaxy", morphology)
    labels = Table()
    labels["id"] = np.arange(n)
    labels["object_class"] = object_class.astype("<U8")
    labels["morphology"] = morphology
    labels["r_mag"] = r_mag
    labels["redshift"] = redshift
    labels["seeing_fwhm"] = seeing
    labels["sersic_n"] = labels_n
    labels["hlr_arcsec"] = labels_hlr
    labels["bulge_to_total"] = bulge_to_total
    for b, band in enumerate(survey.bands):
        labels[f"mag_true_{band}"] = true_mag[:, b]
    for name, unit in (("r_mag", "mag"), ("seeing_fwhm", "arcsec"), ("hlr_arcsec", "arcsec")):
        labels[name].unit = unit
    arrays = {"components": comp, "flux": flux, "seeing": seeing, "centre": centre}
    return arrays, labels


# ============================================================================ the simulator
def _worker_count(n_objects: int, n_workers: int | None) -> int:
    if n_workers is not None:
        return max(1, int(n_workers))
    if n_objects < 1500:
        return 1  # starting processes costs more than it saves
    return max(1, min(os.cpu_count() or 1, 8))


def render_cutouts(arrays: dict, survey_name: str, size: int, seed: int, noise: bool = True,
                   n_psf_classes: int = 3, n_workers: int | None = None, chunk: int = 500) -> np.ndarray:
    """Images (n, n_bands, size, size) for the objects drawn by :func:`_draw_objects`."""
    survey = SURVEYS[survey_name]
    band_class, class_factor = render.psf_classes(survey.psf_fwhm_factor(), n_psf_classes)
    n = len(arrays["seeing"])
    common = dict(band_class=band_class, class_factor=class_factor, sky_sigma=survey.sky_sigma(), size=size,
                  pixel_scale=survey.pixel_scale, seed=seed, noise=noise)

    def job(start):
        stop = min(n, start + chunk)
        return dict(start=start, components={k: v[start:stop] for k, v in arrays["components"].items()},
                    band_flux=arrays["flux"][start:stop], seeing=arrays["seeing"][start:stop],
                    centre=arrays["centre"][start:stop], **common)

    starts = list(range(0, n, chunk))
    workers = _worker_count(n, n_workers)
    if workers == 1 or len(starts) == 1:
        parts = [render.render_chunk(**job(start)) for start in starts]
    else:
        # fork (POSIX): workers start at once and need no importable __main__; the work is GalSim's
        # and numpy's only, so the parent's threads do not matter. Elsewhere: spawn.
        method = "fork" if "fork" in get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context(method)) as pool:
            futures = [pool.submit(render.render_chunk, **job(start)) for start in starts]
            parts = [future.result() for future in futures]
    return np.concatenate(parts) if parts else np.zeros((0, survey.n_bands, size, size), np.float32)


def simulate_cutouts(n_objects: int = 2000, survey: str = "splus", size: int = 32, seed: int = 0,
                     mix: dict | None = None, r_range: tuple = (14.0, 21.5), noise: bool = True,
                     n_psf_classes: int = 3, n_workers: int | None = None, use_cache: bool = True) -> Dataset:
    """Simulated multi-band cutouts (see the module docstring).

    n_objects: cutouts to draw. survey: ``splus`` (12 bands, 0.55 arcsec/pixel) or ``sdss`` (ugriz,
    0.396 arcsec/pixel). size: cutout side [pixels]. mix: fraction of each morphology (default
    :data:`PRETEXT_MIX`). r_range: r magnitudes [AB] (number counts rise to the faint end; the
    faintest are below the narrow bands' depth). noise: add sky and source noise. n_workers:
    processes (default: all cores for sets of 1500 or more; the result does not depend on it).
    """
    if survey not in SURVEYS:
        raise DataError(f"survey must be one of {sorted(SURVEYS)}; got {survey!r}.")
    if not 1 <= int(n_objects) <= 1_000_000:
        raise DataError(f"n_objects must be between 1 and 1,000,000; got {n_objects}.")
    if not 16 <= int(size) <= 256:
        raise DataError(f"size must be between 16 and 256 pixels; got {size}.")
    mix = dict(mix or PRETEXT_MIX)
    unknown = set(mix) - set(MORPHOLOGIES)
    if unknown:
        raise DataError(f"Unknown morphologies {sorted(unknown)} in mix; known: {', '.join(MORPHOLOGIES)}.")
    params = {"n_objects": int(n_objects), "survey": survey, "size": int(size), "seed": int(seed),
              "mix": {k: float(v) for k, v in sorted(mix.items())}, "r_range": [float(r) for r in r_range],
              "noise": bool(noise), "n_psf_classes": int(n_psf_classes)}

    def build() -> Dataset:
        arrays, labels = _draw_objects(int(n_objects), survey, mix, tuple(r_range), int(seed))
        images = render_cutouts(arrays, survey, int(size), int(seed), noise, n_psf_classes, n_workers)
        spec = SURVEYS[survey]
        provenance = {"generator": "cutouts", "version": VERSION, "params": params,
                      "flux_unit": f"image units, mag = {ZERO_POINT} - 2.5 log10(flux)",
                      "sky_sigma": [float(s) for s in spec.sky_sigma()], "zero_point": ZERO_POINT,
                      "gain_e_per_unit": [float(render.SKY_ELECTRONS / s ** 2) for s in spec.sky_sigma()],
                      "band_centre_aa": list(spec.centre_aa), "depth_mag": list(spec.depth_mag)}
        return Dataset(None, None, labels, provenance=provenance, images=images, bands=spec.bands,
                       pixel_scale_arcsec=spec.pixel_scale)

    return cached_dataset("cutouts", VERSION, params, build, use_cache=use_cache)


def label_set(name: str, n_objects: int = 2000, survey: str = "splus", size: int = 32, seed: int = 0,
              noise: bool = True, n_workers: int | None = None, use_cache: bool = True) -> Dataset:
    """A labelled downstream set like the paper's (see :data:`LABEL_SETS`): its cutouts, with the
    class index in label ``target`` and its name in ``target_name``; class fractions follow the
    paper's counts."""
    if name not in LABEL_SETS:
        raise DataError(f"Unknown label set {name!r}; choose from {', '.join(LABEL_SETS)}.")
    definition = LABEL_SETS[name]
    classes = list(definition["classes"])
    counts = np.asarray(definition["paper_counts"], dtype=float)
    mix: dict[str, float] = {}
    for class_name, fraction in zip(classes, counts / counts.sum()):
        for morph, share in definition["classes"][class_name].items():
            mix[morph] = mix.get(morph, 0.0) + fraction * share
    dataset = simulate_cutouts(n_objects, survey=survey, size=size, seed=seed, mix=mix,
                               r_range=definition["r_range"], noise=noise, n_workers=n_workers,
                               use_cache=use_cache)
    morphology = np.asarray(dataset.labels["morphology"])
    target = np.full(len(dataset), -1)
    for index, class_name in enumerate(classes):
        target[np.isin(morphology, list(definition["classes"][class_name]))] = index
    labels = dataset.labels.copy()
    labels["target"] = target
    labels["target_name"] = np.array(classes)[target].astype("<U16")
    provenance = {**dataset.provenance, "label_set": name, "classes": classes,
                  "source": {"generator": "cutouts_label_set",
                             "params": {"name": name, "n_objects": int(n_objects), "survey": survey,
                                        "size": int(size), "seed": int(seed), "noise": bool(noise)}}}
    return Dataset(None, None, labels, provenance=provenance, images=dataset.images, bands=dataset.bands,
                   pixel_scale_arcsec=dataset.pixel_scale_arcsec)
