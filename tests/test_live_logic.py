"""The plain logic behind the live components (astrocore.app.live, plots.spectrum_pixels): which
slider values the server draws, what the component is told about each slider, and the pixel map
with which the browser's decoder fills the generated trace exactly where the server's figure has
its points."""
import numpy as np
import pytest

from astrocore.app import live, plots
from astrocore.app import spectra as app_spectra

RANGE = {"teff": (3200.0, 6000.0), "logg": (0.0, 2.6)}
OWN = {"teff": 4403.0, "logg": 1.21}


def specs():
    return app_spectra.slider_specs(RANGE)


def test_a_new_star_snaps_the_sliders_to_its_own_values():
    state = {}
    values = live.settled_values(state, "cp_", specs(), OWN, "star 1", None)
    assert values == {"teff": 4400.0, "logg": 1.2}  # snapped to the slider steps (10 K, 0.05 dex)
    assert state["cp_teff"] == 4400.0 and state["cp_star"] == "star 1"
    # A report about the previous star is ignored once another star is shown.
    report = {"id": "a", "seq": 1, "star": "star 1", "values": {"teff": 5000.0, "logg": 2.0}}
    assert live.settled_values(state, "cp_", specs(), {"teff": 3500.0, "logg": 0.5}, "star 2", report) == \
        {"teff": 3500.0, "logg": 0.5}
    assert live.settled_values(state, "cp_", specs(), {"teff": 3500.0, "logg": 0.5}, "star 2", report) == \
        {"teff": 3500.0, "logg": 0.5}


def test_reports_are_applied_once_and_clipped_to_the_sliders():
    state = {}
    live.settled_values(state, "cp_", specs(), OWN, "star 1", None)
    report = {"id": "a", "seq": 1, "star": "star 1", "values": {"teff": 5000.0}}
    assert live.settled_values(state, "cp_", specs(), OWN, "star 1", report) == {"teff": 5000.0, "logg": 1.2}
    # Back to this star later (another star in between): the old report must not come back.
    live.settled_values(state, "cp_", specs(), OWN, "star 2", report)
    assert live.settled_values(state, "cp_", specs(), OWN, "star 1", report)["teff"] == 4400.0
    assert live.settled_values(state, "cp_", specs(), OWN, "star 1", report)["teff"] == 4400.0
    # A new report (another sequence number, or a new component instance) is applied, within the range.
    high = specs()[0].high
    newer = {"id": "b", "seq": 1, "star": "star 1", "values": {"teff": 1e6, "logg": 1.5}}
    assert live.settled_values(state, "cp_", specs(), OWN, "star 1", newer) == {"teff": high, "logg": 1.5}
    # Garbage from the browser changes nothing.
    for bad in ("text", {"star": "star 1", "values": "x"}, {"id": "c", "seq": 2, "star": "star 1"}):
        assert live.settled_values(state, "cp_", specs(), OWN, "star 1", bad) == {"teff": high, "logg": 1.5}


def test_slider_args_carry_units_ranges_and_help():
    args = {a["name"]: a for a in live.slider_args(specs(), OWN)}
    assert args["teff"]["title"] == "Teff [K]" and args["teff"]["unit"] == "K" and args["teff"]["short"] == "Teff"
    assert args["logg"]["unit"] == "dex" and args["logg"]["format"] == "%.2f"
    assert args["teff"]["low"] < args["teff"]["train_low"] == 3200.0 < args["teff"]["train_high"] < args["teff"]["high"]
    assert "This star: 4403" in args["teff"]["help"]


def apogee_like():
    rng = np.random.default_rng(0)
    chips = [np.linspace(15150, 15800, 3000), np.linspace(15860, 16420, 2500), np.linspace(16480, 16950, 1714)]
    wavelength = np.concatenate(chips)
    flux = 1 - 0.3 * rng.random((3, len(wavelength))) ** 8
    return wavelength, flux


@pytest.mark.parametrize("xrange", [None, (15744.0, 15770.0), (15700.0, 15900.0)])
def test_pixel_map_points_at_the_figures_points(xrange):
    wavelength, (original, recon, generated) = apogee_like()
    traces = {"Original": original, "Reconstruction": recon, "Generated": generated, "True": None}
    residuals = {"Recon. − orig.": recon - original}
    figure = plots.spectrum_figure(wavelength, traces, residuals, xrange=xrange)
    pixels = plots.spectrum_pixels(wavelength, traces, residuals, xrange=xrange)
    drawn = next(trace for trace in figure.data if trace.name == "Generated")
    x, y = np.asarray(drawn.x, float), np.asarray(drawn.y, float)
    assert len(pixels) == len(y)
    gaps = pixels < 0
    assert np.array_equal(gaps, np.isnan(y)) and np.array_equal(gaps, np.isnan(x))
    assert np.allclose(y[~gaps], generated[pixels[~gaps]].astype(np.float32))
    assert np.allclose(x[~gaps], wavelength[pixels[~gaps]].astype(np.float32))
    if xrange is None:  # the full range is decimated, with the chip gaps kept
        assert len(y) < len(wavelength) / 2 and gaps.sum() == 2
