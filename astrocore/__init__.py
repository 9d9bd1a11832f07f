"""astrocore: representation learning on stellar spectra, nebular lines and multi-band cutouts."""
__version__ = "0.1.0"
