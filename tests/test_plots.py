"""Figure builders of the app (astrocore/app/plots.py): what every chart must respect."""
import numpy as np

from astrocore.app import plots


def test_no_si_prefixed_ticks_on_wavelength_and_flux_axes():
    # plotly's default tick labels ("15.2k", "500µ") read as units; the figures ask for plain numbers.
    wavelength = np.linspace(15100.0, 17000.0, 400)
    flux = 1 + 5e-4 * np.sin(wavelength / 7)
    figures = [plots.spectrum_figure(wavelength, {"Original": flux, "Generated": flux}, {"Gen. − true": flux - 1}),
               plots.example_spectra_figure(wavelength, np.stack([flux, flux]), ["a", "b"]),
               plots.grid_figure(wavelength, np.stack([flux, flux]), [4000, 5000], "Teff [K]")]
    for figure in figures:
        axes = [figure.layout[name] for name in figure.layout if name.startswith(("xaxis", "yaxis"))]
        assert axes and all(axis.exponentformat == "none" for axis in axes)
        assert figure.layout.separators == "."
