"""The cutout simulator (GalSim) and the photometry of the SSL pretext task."""
from pathlib import Path

import numpy as np
import pytest

from astrocore.data.dataset import DataError
from astrocore.data.photometry import measure, pretext_targets
from astrocore.data.simulators import cutouts
from astrocore.data.simulators.cutouts import (COSMOS_PRIOR, LABEL_SETS, _draw_objects, draw_shapes, label_set,
                                               simulate_cutouts)
from astrocore.data.simulators.cutouts_sed import SPLUS, galaxy_component_magnitudes

COSMOS_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "galsim" / "cosmos_sersics_sample_N300_cleaned.asc"


def colour(labels, first, second):
    return np.asarray(labels[f"mag_true_{first}"]) - np.asarray(labels[f"mag_true_{second}"])


def test_same_call_same_bytes_and_shapes():
    first = simulate_cutouts(8, seed=3, use_cache=False, n_workers=1)
    second = simulate_cutouts(8, seed=3, use_cache=False, n_workers=1)
    assert first.images.shape == (8, 12, 32, 32)
    assert first.bands == SPLUS.bands and first.pixel_scale_arcsec == 0.55
    assert np.array_equal(first.images, second.images)
    other = simulate_cutouts(8, seed=4, use_cache=False, n_workers=1)
    assert not np.array_equal(first.images, other.images)
    sdss = simulate_cutouts(4, survey="sdss", size=24, seed=3, use_cache=False)
    assert sdss.images.shape == (4, 5, 24, 24) and sdss.pixel_scale_arcsec == pytest.approx(0.396)


def test_worker_split_does_not_change_the_result():
    one = simulate_cutouts(6, seed=5, use_cache=False, n_workers=1)
    arrays, _ = _draw_objects(6, "splus", cutouts.PRETEXT_MIX, (14.0, 21.5), 5)
    two = cutouts.render_cutouts(arrays, "splus", 32, 5, n_workers=2, chunk=3)
    assert np.array_equal(one.images, two)


def test_flux_is_conserved_in_noise_free_cutouts():
    data = simulate_cutouts(40, seed=1, noise=False, use_cache=False, n_workers=1,
                            mix={"star": 0.5, "quasar": 0.25, "spiral": 0.25})
    measured = 30 - 2.5 * np.log10(data.images.sum(axis=(2, 3)))
    true = np.stack([data.labels[f"mag_true_{b}"] for b in data.bands], axis=1)
    point = np.isin(data.labels["morphology"], ["star", "quasar"])
    assert np.abs(measured - true)[point].max() < 0.01  # PSF wings beyond 8.8 arcsec: < 1 %
    compact = ~point & (np.asarray(data.labels["hlr_arcsec"]) < 1.5)
    if compact.any():
        assert np.abs(measured - true)[compact].max() < 0.1


def test_colour_trends_per_class():
    _, labels = _draw_objects(3000, "splus", cutouts.PRETEXT_MIX, (14.0, 19.0), 0)
    morphology = np.asarray(labels["morphology"])

    def median(values, name):
        return np.median(values[morphology == name])

    ug, gr = colour(labels, "u", "g"), colour(labels, "g", "r")
    # Quasars: blue power laws; stars: the stellar locus (u-g rises with g-r); ellipticals red,
    # irregulars blue, spirals between.
    assert median(ug, "quasar") < median(ug, "star") - 0.5
    stars = morphology == "star"
    assert np.corrcoef(gr[stars], ug[stars])[0, 1] > 0.7
    assert median(gr, "elliptical") > median(gr, "spiral") > median(gr, "irregular")
    # H-alpha emission of star-forming galaxies lifts J0660 above r where the line falls in the
    # narrow band (z < 0.019); an old population shows none.
    rng = np.random.default_rng(0)
    z, r = np.full(50, 0.01), np.full(50, 16.0)
    j0660, r_band = SPLUS.band_index("J0660"), SPLUS.band_index("r")
    burst = galaxy_component_magnitudes(SPLUS, "starburst", r, z, rng)
    old = galaxy_component_magnitudes(SPLUS, "old", r, z, rng)
    assert np.median(burst[:, j0660] - burst[:, r_band]) < np.median(old[:, j0660] - old[:, r_band]) - 0.3


def test_sky_noise_matches_the_depth():
    data = simulate_cutouts(30, seed=2, use_cache=False, n_workers=1, r_range=(21.0, 21.5))
    measured = np.median(measure(data.images, 0.55)["noise"], axis=0)
    assert np.allclose(measured / SPLUS.sky_sigma(), 1.0, atol=0.08)


def test_morphology_parameters_follow_the_physics():
    _, labels = _draw_objects(2000, "splus", cutouts.PRETEXT_MIX, (14.0, 19.0), 1)
    morphology = np.asarray(labels["morphology"])
    n = np.asarray(labels["sersic_n"])
    assert np.all((n[morphology == "elliptical"] >= 3) & (n[morphology == "elliptical"] <= 6))
    bt = np.asarray(labels["bulge_to_total"])
    assert abs(np.median(bt[morphology == "lenticular"]) - 0.5) < 0.05
    assert np.all(np.asarray(labels["redshift"])[morphology == "star"] == 0)


def test_builtin_prior_matches_the_cosmos_sample():
    if not COSMOS_FILE.exists():
        pytest.skip(f"the COSMOS Sersic sample is not at {COSMOS_FILE}")
    sample = np.loadtxt(COSMOS_FILE)
    drawn = draw_shapes(np.random.default_rng(0), 20000, np.full(20000, COSMOS_PRIOR["reference_mag"]))
    for values, reference in ((np.log10(drawn["sersic_n"]), np.log10(sample[:, 1])),
                              (np.log10(drawn["hlr"]), np.log10(sample[:, 2])), (drawn["g"], sample[:, 3])):
        assert abs(values.mean() - reference.mean()) < 0.03
        assert abs(values.std() / reference.std() - 1) < 0.15


def test_label_sets_have_the_papers_imbalance():
    data = label_set("morphology_4", 120, size=16, seed=0, use_cache=False)
    counts = np.bincount(np.asarray(data.labels["target"]), minlength=4)
    paper = np.asarray(LABEL_SETS["morphology_4"]["paper_counts"])
    assert np.abs(counts - 120 * paper / paper.sum()).max() <= 1
    assert set(data.labels["target_name"]) == {"elliptical", "spiral", "lenticular", "irregular"}
    with pytest.raises(DataError, match="Unknown label set"):
        label_set("nonsense", 10)


def test_photometry_against_true_magnitudes():
    data = simulate_cutouts(60, seed=7, use_cache=False, n_workers=1, mix={"star": 1.0}, r_range=(14.0, 17.0))
    result = pretext_targets(data)
    keep = result["keep"]
    assert keep.sum() >= 20
    residual = (result["magnitude"] - result["true_magnitude"])[keep]
    # A Kron aperture misses the PSF's far wings: a few per cent, the same in every band.
    offset = np.median(residual, axis=0)
    assert np.all((offset > 0) & (offset < 0.08))
    pull = (residual - offset) / result["magnitude_error"][keep]
    assert 0.6 < np.std(pull) < 1.6  # the errors describe the scatter
    assert np.all(result["magnitude_error"][result["keep"]] <= 0.1)
    assert np.allclose(result["targets"], result["magnitude"] / 30, equal_nan=True)


def test_fixed_aperture_magnitudes_measure_concentration():
    """A point source loses the PSF's wings outside a small fixed aperture, more in worse seeing;
    an extended galaxy loses more still: the small-aperture minus Kron magnitude separates them."""
    stars = simulate_cutouts(30, seed=9, use_cache=False, n_workers=1, mix={"star": 1.0}, r_range=(14.0, 16.0))
    galaxies = simulate_cutouts(30, seed=9, use_cache=False, n_workers=1, mix={"elliptical": 0.5, "spiral": 0.5},
                                r_range=(14.0, 16.0))
    r = list(stars.bands).index("r")

    def concentration(data):
        result = pretext_targets(data, max_error=1.0, fixed_apertures_arcsec=(0.8, 2.0))
        assert result["targets"].shape == (len(data), 3 * len(data.bands))
        assert result["aperture_magnitude"].shape == (len(data), 2, len(data.bands))
        assert np.allclose(result["targets"][:, 12:24], result["aperture_magnitude"][:, 0] / 30, equal_nan=True)
        return (result["aperture_magnitude"][:, 0, r] - result["magnitude"][:, r])[result["keep"]]

    star, galaxy = concentration(stars), concentration(galaxies)
    assert len(star) == len(stars) and np.all(star > 0)  # bright: all kept; 0.8" holds part of the seeing disc
    seeing = np.asarray(stars.labels["seeing_fwhm"])
    assert np.corrcoef(np.argsort(np.argsort(seeing)), np.argsort(np.argsort(star)))[0, 1] > 0.8
    assert np.median(galaxy) > np.median(star) + 1.0
    with pytest.raises(ValueError, match="radii"):
        pretext_targets(stars, fixed_apertures_arcsec=(0.0,))


def test_the_error_cut_removes_faint_objects():
    data = simulate_cutouts(40, seed=8, use_cache=False, n_workers=1, mix={"star": 1.0}, r_range=(20.5, 21.5))
    assert pretext_targets(data)["keep"].mean() < 0.2
