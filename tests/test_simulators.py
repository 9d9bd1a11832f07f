"""Tests of the RVS-like and APOGEE-like spectrum simulators (small sizes; the file runs in well
under a minute on two cores). Physics tests assert trends that would fail for a wrong model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from astrocore.data.dataset import DataError, Dataset
from astrocore.data.simulators.apogee import (APOGEE_ABUNDANCES, apogee_line_list, apogee_wavelength, render_apogee,
                                              simulate_apogee)
from astrocore.data.simulators.linelists import air_to_vacuum, vacuum_to_air
from astrocore.data.simulators.rvs import RVS_LABEL_RANGES, RVS_WAVELENGTH, render_rvs, simulate_rvs

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "payne"
XFE = [f"{name}_fe" for name in APOGEE_ABUNDANCES]


@pytest.fixture(autouse=True)
def _private_cache(monkeypatch, tmp_path):
    """Every test writes its cache into its own temporary folder."""
    monkeypatch.setenv("ASTROCORE_CACHE", str(tmp_path / "cache"))


def _apogee_labels(teff, logg, feh=0.0, afe=0.0, **xfe):
    teff = np.atleast_1d(np.asarray(teff, dtype=float))
    n = teff.size
    labels = {"teff": teff, "logg": np.broadcast_to(np.asarray(logg, float), (n,)),
              "feh": np.full(n, feh), "afe": np.full(n, afe)}
    for name in XFE:
        labels[name] = np.full(n, xfe.get(name, 0.0))
    return labels


def _rvs_labels(teff, logg, feh=0.0, afe=0.0):
    teff = np.atleast_1d(np.asarray(teff, dtype=float))
    n = teff.size
    return {"teff": teff, "logg": np.broadcast_to(np.asarray(logg, float), (n,)),
            "feh": np.full(n, feh), "afe": np.full(n, afe)}


# ----------------------------------------------------------------------------- shapes and units
def test_rvs_shapes_ranges_units():
    ds = simulate_rvs(n_stars=30, seed=1, use_cache=False)
    assert isinstance(ds, Dataset)
    assert ds.spectra.shape == (30, 2400) and ds.spectra.dtype == np.float32
    assert ds.errors is None
    assert ds.wavelength[0] == pytest.approx(8460.0) and ds.wavelength[-1] == pytest.approx(8699.9)
    assert np.allclose(np.diff(ds.wavelength), 0.1)
    assert np.array_equal(ds.wavelength, RVS_WAVELENGTH)
    assert ds.labels.colnames == ["id", "teff", "logg", "feh", "afe"]
    assert str(ds.labels["teff"].unit) == "K" and str(ds.labels["logg"].unit) == "dex"
    for name, (lo, hi) in RVS_LABEL_RANGES.items():
        values = np.asarray(ds.labels[name])
        assert values.min() >= lo and values.max() <= hi, name
    assert np.all(ds.spectra > 0.0) and np.all(ds.spectra <= 1.0)
    # continuum-normalised: the brightest pixels reach the continuum (except under TiO bands)
    warm = np.asarray(ds.labels["teff"]) > 4000
    assert np.all(np.percentile(ds.spectra[warm], 99, axis=1) > 0.98)
    prov = ds.provenance
    assert prov["generator"] == "rvs" and prov["seed"] == 1 and prov["continuum_normalised"] is True
    assert prov["params"]["n_stars"] == 30 and isinstance(prov["version"], str)


def test_rvs_grid_sampling_is_regular():
    ds = simulate_rvs(n_stars=60, sampling="grid", use_cache=False)
    counts = [np.unique(np.asarray(ds.labels[n])).size for n in ("teff", "logg", "feh", "afe")]
    assert int(np.prod(counts)) == len(ds)
    assert 0.5 * 60 <= len(ds) <= 1.6 * 60
    assert counts[0] >= counts[3]  # more steps in Teff than in [alpha/Fe]
    for name, (lo, hi) in RVS_LABEL_RANGES.items():
        assert np.asarray(ds.labels[name]).min() == pytest.approx(lo)
        assert np.asarray(ds.labels[name]).max() == pytest.approx(hi)


def test_rvs_random_feh_covers_range_with_realistic_weight():
    from astrocore.data.simulators.rvs import sample_rvs_labels

    labels = sample_rvs_labels(5000, "random", np.random.default_rng(0))
    feh = labels["feh"]
    assert feh.min() < -4.0 and feh.max() > 0.8
    assert np.mean(np.abs(feh + 0.3) < 1.0) > 0.6  # most stars near realistic metallicities


def test_apogee_shapes_labels_and_grid():
    ds = simulate_apogee(n_fingerprints=2, teff_grid=[4000, 4600], logg_grid=[1.0, 2.0],
                         use_cache=False)
    assert ds.spectra.shape == (8, 7214) and ds.spectra.dtype == np.float32
    assert ds.labels.colnames == ["id", "fingerprint", "teff", "logg", "feh", "afe"] + XFE
    assert str(ds.labels["teff"].unit) == "K" and str(ds.labels["mg_fe"].unit) == "dex"
    assert np.array_equal(np.asarray(ds.labels["fingerprint"]), np.repeat([0, 1], 4))
    for fp in (0, 1):
        rows = ds.labels[ds.labels["fingerprint"] == fp]
        for name in ["feh", "afe"] + XFE:  # each fingerprint keeps its chemistry on the grid
            assert np.unique(np.asarray(rows[name])).size == 1
        assert sorted(set(zip(rows["teff"], rows["logg"]))) == [(4000, 1.0), (4000, 2.0),
                                                              (4600, 1.0), (4600, 2.0)]
    assert np.all(ds.spectra > 0.0) and np.all(ds.spectra <= 1.0)
    assert ds.provenance["generator"] == "apogee"
    assert ds.provenance["params"]["n_fingerprints"] == 2


def test_apogee_default_grid_and_wavelength():
    from astrocore.data.simulators.apogee import DEFAULT_LOGG_GRID, DEFAULT_TEFF_GRID

    assert DEFAULT_TEFF_GRID.size == 15 and DEFAULT_TEFF_GRID[0] == 3200 and DEFAULT_TEFF_GRID[-1] == 6000
    assert DEFAULT_LOGG_GRID.size == 14 and DEFAULT_LOGG_GRID[0] == 0.0
    assert DEFAULT_LOGG_GRID[-1] == pytest.approx(2.6)
    wl = apogee_wavelength()
    index = np.r_[322:3242, 3648:6048, 6412:8306]
    assert wl.shape == (7214,)
    assert np.allclose(wl, 10 ** (4.179 + 6e-6 * index), rtol=0, atol=1e-8)
    assert 15160 < wl[0] < 15175 and 16930 < wl[-1] < 16945
    if (SHARED / "apogee_wavelength.npz").exists():
        ref = np.load(SHARED / "apogee_wavelength.npz")["wavelength"]
        assert np.allclose(wl, ref, rtol=1e-10)


def test_fingerprint_chemistry_is_realistic():
    from astrocore.data.simulators.apogee import sample_fingerprints

    chem = sample_fingerprints(2000, np.random.default_rng(0))
    feh, afe = chem["feh"], chem["afe"]
    assert feh.min() >= -1.0 and feh.max() <= 0.4 and -0.35 < np.median(feh) < -0.05
    assert np.corrcoef(feh, afe)[0, 1] < -0.4  # alpha/Fe anti-correlated with metallicity
    assert 0.05 < np.std(afe) < 0.2
    for name in ("o", "mg", "si", "ca", "ti"):
        scatter = np.std(chem[f"{name}_fe"] - afe)
        assert 0.03 < scatter < 0.08, name
    assert np.corrcoef(chem["c_fe"], chem["n_fe"])[0, 1] < -0.5  # CN processing


def test_air_vacuum_roundtrip():
    wl = np.array([8542.09, 15740.7, 16750.6])
    assert np.allclose(vacuum_to_air(air_to_vacuum(wl)), wl, atol=1e-6)
    assert air_to_vacuum(15740.716) == pytest.approx(15745.02, abs=0.05)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(DataError, match="sampling"):
        simulate_rvs(n_stars=5, sampling="sobol", use_cache=False)
    with pytest.raises(DataError, match="teff"):
        render_rvs({"teff": [5.0], "logg": [4.0], "feh": [0.0], "afe": [0.0]})
    with pytest.raises(DataError, match="mg_fe"):
        labels = _apogee_labels(4500, 2.0)
        del labels["mg_fe"]
        render_apogee(labels)


# ----------------------------------------------------------------------------- determinism, cache
def test_determinism_and_render_consistency():
    a = simulate_rvs(n_stars=12, seed=7, use_cache=False)
    b = simulate_rvs(n_stars=12, seed=7, use_cache=False)
    c = simulate_rvs(n_stars=12, seed=8, use_cache=False)
    assert np.array_equal(a.spectra, b.spectra)
    assert np.array_equal(np.asarray(a.labels["teff"]), np.asarray(b.labels["teff"]))
    assert not np.array_equal(a.spectra, c.spectra)
    # simulate is exactly render of the sampled labels, in any batch
    assert np.array_equal(render_rvs(a.labels), a.spectra)
    assert np.array_equal(render_rvs(a.labels[3:4]), a.spectra[3:4])

    g = simulate_apogee(n_fingerprints=2, teff_grid=[4200], logg_grid=[1.4, 1.6], seed=5,
                        use_cache=False)
    h = simulate_apogee(n_fingerprints=2, teff_grid=[4200], logg_grid=[1.4, 1.6], seed=5,
                        use_cache=False)
    k = simulate_apogee(n_fingerprints=2, teff_grid=[4200], logg_grid=[1.4, 1.6], seed=6,
                        use_cache=False)
    assert np.array_equal(g.spectra, h.spectra)
    assert not np.array_equal(g.spectra, k.spectra)
    assert np.array_equal(render_apogee(g.labels[1:2]), g.spectra[1:2])


def test_cache_roundtrip(tmp_path, monkeypatch):
    cache = tmp_path / "mycache"
    monkeypatch.setenv("ASTROCORE_CACHE", str(cache))
    first = simulate_rvs(n_stars=6, seed=2, snr=80)
    entries = list((cache / "datasets").iterdir())
    assert len(entries) == 1 and entries[0].name.startswith("rvs-")
    second = simulate_rvs(n_stars=6, seed=2, snr=80)
    assert np.array_equal(first.spectra, second.spectra)
    assert np.array_equal(first.errors, second.errors)
    assert second.provenance == first.provenance
    simulate_rvs(n_stars=6, seed=3, snr=80)
    assert len(list((cache / "datasets").iterdir())) == 2
    simulate_rvs(n_stars=6, seed=4, use_cache=False)
    assert len(list((cache / "datasets").iterdir())) == 2
    apo = simulate_apogee(n_fingerprints=1, teff_grid=[5000], logg_grid=[2.0])
    again = simulate_apogee(n_fingerprints=1, teff_grid=[5000], logg_grid=[2.0])
    assert np.array_equal(apo.spectra, again.spectra)
    assert len(list((cache / "datasets").iterdir())) == 3


def test_noise_level_matches_snr():
    clean = simulate_rvs(n_stars=20, seed=4, use_cache=False)
    noisy = simulate_rvs(n_stars=20, seed=4, snr=50, use_cache=False)
    assert np.array_equal(np.asarray(clean.labels["teff"]), np.asarray(noisy.labels["teff"]))
    residual = noisy.spectra - clean.spectra
    assert np.std(residual) == pytest.approx(1 / 50, rel=0.03)
    assert abs(np.mean(residual)) < 1e-3
    assert noisy.errors is not None and np.allclose(noisy.errors, 1 / 50)
    apo_clean = simulate_apogee(n_fingerprints=1, teff_grid=[4800], logg_grid=[2.2],
                                use_cache=False)
    apo = simulate_apogee(n_fingerprints=1, teff_grid=[4800], logg_grid=[2.2], snr=100,
                          use_cache=False)
    assert np.std(apo.spectra - apo_clean.spectra) == pytest.approx(0.01, rel=0.05)


# ----------------------------------------------------------------------------- RVS physics
def test_calcium_triplet_wings_grow_with_gravity():
    """Pressure (van der Waals) wings: at fixed Teff the 2-6 A wings of 8542/8662 are deeper in a
    dwarf than in a giant. (In luminous giants, log g < 2, the lines strengthen again - the
    observed CaT luminosity effect - because the continuous opacity ~ Pe is tiny there.)"""
    flux = render_rvs(_rvs_labels([5000.0] * 3, [1.0, 2.5, 4.5]))
    bright, giant, dwarf = flux
    for centre in (8542.09, 8662.14):
        d = np.abs(RVS_WAVELENGTH - centre)
        wing = (d > 2.0) & (d < 6.0)
        assert dwarf[wing].mean() < giant[wing].mean() - 0.01, centre
        # the upper envelope of the wing region (between blends) is depressed too
        assert np.percentile(dwarf[wing], 75) < np.percentile(giant[wing], 75) - 0.004, centre
        assert bright[wing].mean() < giant[wing].mean(), centre  # luminosity effect
        # the lines are strong, saturated features at all gravities
        assert flux[:, d < 0.3].min(axis=1).max() < 0.45
    # and the wings keep growing with gravity on the dwarf side
    d = np.abs(RVS_WAVELENGTH - 8542.09)
    wing = (d > 2.0) & (d < 6.0)
    denser = render_rvs(_rvs_labels([5000.0, 5000.0], [3.5, 5.0]))
    assert denser[1, wing].mean() < dwarf[wing].mean() < denser[0, wing].mean()


def test_paschen_lines_appear_in_hot_stars():
    flux = render_rvs(_rvs_labels([5000.0, 6500.0, 7500.0], [4.0, 4.0, 4.0]))
    near = np.abs(RVS_WAVELENGTH - 8598.4) < 0.6  # H I P14
    depth = 1.0 - flux[:, near].min(axis=1)
    assert depth[2] > depth[0] + 0.1
    assert depth[2] > depth[1] > depth[0]
    # broad: still depressed 3 A from the line centre in the hot star
    off = np.abs(RVS_WAVELENGTH - 8595.4) < 0.3
    assert flux[2, off].mean() < 0.97


def test_tio_bands_in_cool_stars():
    flux = render_rvs(_rvs_labels([3000.0, 3600.0, 4500.0], [1.0, 1.0, 1.0]))
    between = (RVS_WAVELENGTH > 8560) & (RVS_WAVELENGTH < 8650)
    mean = flux[:, between].mean(axis=1)
    assert mean[0] < 0.6 * mean[2]
    assert mean[0] < mean[1] <= mean[2] + 1e-3


def test_teff_logg_dominate_the_variance():
    ds = simulate_rvs(n_stars=300, seed=11, use_cache=False)
    flux = ds.spectra.astype(float)
    flux = flux - flux.mean(axis=0)
    total = np.sum(flux**2)

    def explained(names):
        x = np.column_stack([np.asarray(ds.labels[n], float) for n in names])
        x = (x - x.mean(0)) / x.std(0)
        design = np.column_stack([np.ones(len(x)), x, x**2, x[:, :1] * x[:, 1:]])
        coef, *_ = np.linalg.lstsq(design, flux, rcond=None)
        return 1.0 - np.sum((flux - design @ coef) ** 2) / total

    r_tg = explained(["teff", "logg"])
    r_chem = explained(["feh", "afe"])
    assert r_tg > 0.5
    assert r_tg > 2.5 * r_chem
    # first principal component follows Teff
    u, s, vt = np.linalg.svd(flux, full_matrices=False)
    pc1 = u[:, 0] * s[0]
    assert abs(np.corrcoef(pc1, np.asarray(ds.labels["teff"], float))[0, 1]) > 0.6


def test_metallicity_changes_lines_weakly():
    flux = render_rvs(_rvs_labels([5000.0] * 3, [2.5] * 3) | {"feh": np.array([-0.5, 0.0, 0.3])})
    hotter = render_rvs(_rvs_labels([5800.0], [2.5]))[0]
    d_feh = np.abs(flux[2] - flux[1]).mean()
    d_teff = np.abs(hotter - flux[1]).mean()
    assert d_feh > 0.002  # metallicity is visible...
    assert d_teff > d_feh  # ...but less than a few hundred K in Teff
    assert np.all(np.diff(flux.mean(axis=1)) < 0)  # more metals, more absorption


# ----------------------------------------------------------------------------- APOGEE physics
def _line_positions(species, teff, logg, n_lines=12, isolation=1.0):
    """Wavelengths of the strongest lines of ``species`` at (teff, logg) that no stronger line of
    another species sits close to (so depths can be read off the spectrum)."""
    from astrocore.data.simulators.apogee import APOGEE_BAND
    from astrocore.data.simulators.atmosphere import atmosphere, line_strengths
    from astrocore.data.simulators.stellar_labels import scaled_abundances

    lines = apogee_line_list()
    names = lines.species_names()
    atm = atmosphere(teff, logg, 0.0, 0.0)
    strength = line_strengths(lines, atm, scaled_abundances(np.zeros(1), np.zeros(1)),
                              APOGEE_BAND)[0]
    wl = apogee_wavelength()
    chips = [(wl[0], wl[2919]), (wl[2920], wl[5319]), (wl[5320], wl[-1])]
    picked = []
    for i in np.argsort(-strength):
        if names[i] != species:
            continue
        w = lines.wavelength[i]
        if not any(a + 2 < w < b - 2 for a, b in chips):
            continue
        near = np.abs(lines.wavelength - w) < isolation
        if np.any(strength[near & (names != species)] > 0.3 * strength[i]):
            continue
        picked.append(w)
        if len(picked) == n_lines:
            break
    return np.array(picked)


def _depth_at(flux, positions, half_width=0.25):
    wl = apogee_wavelength()
    return np.array([1.0 - flux[..., np.abs(wl - p) < half_width].min(axis=-1)
                     for p in positions]).T


def test_apogee_molecules_fade_with_temperature():
    flux = render_apogee(_apogee_labels([3600.0, 4200.0, 5000.0, 5600.0], 1.0))
    for species in ("OH", "CO"):
        positions = _line_positions(species, 3600.0, 1.0)
        depth = _depth_at(flux, positions).mean(axis=1)
        assert depth[0] > 3.0 * depth[2] and depth[0] > 0.3, species
        assert depth[0] > depth[1] > depth[2] > depth[3], species
    # CN peaks in K giants (below ~4000 K carbon is locked into CO) and fades in warmer stars
    depth = _depth_at(flux, _line_positions("CN", 4200.0, 1.0)).mean(axis=1)
    assert depth[1] > 2.0 * depth[2] and depth[0] > 3.0 * depth[3]
    assert depth[1] > depth[2] > depth[3]
    # molecules dominate the spectrum of a cool giant: many more absorbed pixels than at 5600 K
    assert np.mean(flux[0] < 0.9) > 3.0 * np.mean(flux[3] < 0.9)


def test_apogee_co_bandheads():
    wl = apogee_wavelength()
    flux = render_apogee(_apogee_labels([3800.0, 5800.0], 1.0))
    for head in (15582.0, 16189.0):
        redward = (wl > head + 1.0) & (wl < head + 6.0)
        blueward = (wl > head - 8.0) & (wl < head - 3.0)
        cool_jump = np.median(flux[0, blueward]) - np.median(flux[0, redward])
        assert cool_jump > 0.1, head
        assert abs(np.median(flux[1, blueward]) - np.median(flux[1, redward])) < 0.03


def test_brackett_lines_in_warm_stars():
    positions = 1e8 / (109677.58 * (1 / 16 - 1 / np.arange(11, 17) ** 2))  # Br11-Br16, vacuum
    flux = render_apogee(_apogee_labels([4000.0, 6000.0, 7000.0], 4.5))
    wl = apogee_wavelength()
    depth = []
    for p in positions:
        if not np.any(np.abs(wl - p) < 0.5):
            continue  # in a chip gap
        # a broad feature: mean depression within 3 A of the line centre
        depth.append(1.0 - flux[:, np.abs(wl - p) < 3.0].mean(axis=1))
    depth = np.array(depth).mean(axis=0)
    assert depth[1] > depth[0] + 0.01
    assert depth[2] > depth[1]


def test_one_element_changes_only_its_own_lines():
    base = _apogee_labels(4500.0, 2.0)
    more_mg = _apogee_labels(4500.0, 2.0, mg_fe=0.3)
    f0, f1 = render_apogee(base)[0], render_apogee(more_mg)[0]
    change = np.abs(f1 - f0)
    wl = apogee_wavelength()
    lines = apogee_line_list()
    mg = lines.wavelength[lines.species_names() == "Mg I"]
    near_mg = np.min(np.abs(wl[:, None] - mg[None, :]), axis=1) < 3.0
    assert change[near_mg].sum() > 0.9 * change.sum()
    assert near_mg.mean() < 0.25  # the Mg windows are a small part of the spectrum
    named = air_to_vacuum(np.array([15740.716, 15748.988, 15765.842]))
    for w in named:
        window = np.abs(wl - w) < 1.0
        assert change[window].max() > 0.01
        assert (f1[window].min() < f0[window].min())  # more Mg, deeper Mg lines
    # chemical twins are identical; an element absent from the spectrum's lines changes nothing
    assert np.array_equal(render_apogee(base)[0], f0)


def test_apogee_continuum_and_gravity_sensitivity():
    flux = render_apogee(_apogee_labels([4500.0] * 3, [0.5, 1.5, 2.5]))
    assert np.all(np.percentile(flux, 99, axis=1) > 0.985)  # continuum-normalised
    assert np.all(flux > 0.0)
    # changing log g by 1 dex changes the spectrum more than changing [Fe/H] by 0.2 dex
    chem = render_apogee(_apogee_labels([4500.0], [1.5], feh=0.2))[0]
    assert np.abs(flux[2] - flux[1]).mean() > np.abs(chem - flux[1]).mean()
