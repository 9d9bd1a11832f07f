"""Surveys and colours for the cutout simulator: band passes, depths, and the magnitudes of stars,
quasars and galaxy components in every band.

Bands are top-hats (central wavelength and full width in Angstrom). A source's magnitude in a band
is its continuum (AB magnitude interpolated linearly in log wavelength between anchor points) plus
its spectral lines, each changing the band's flux by ``EW / width`` (equivalent width EW > 0 for
emission, < 0 for absorption, observed frame, Angstrom) when the line falls inside the band. The
narrow S-PLUS bands see single lines (H-alpha in J0660, Ca II H+K in J0395, the Ca triplet in
J0861) that the broad bands wash out; that is what makes 12 bands better than 5 at separating
stars, quasars and galaxies.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Image zero point: a pixel value v contributes 10**(-0.4 (m - ZP)) per magnitude m; mag = ZP - 2.5 log10(flux).
ZERO_POINT = 30.0


@dataclass(frozen=True)
class Survey:
    """A survey's bands and imaging conditions.

    bands: names, blue to red. centre_aa / width_aa: top-hat band centre and full width [Angstrom].
    depth_mag: 5-sigma limiting AB magnitude in a 3 arcsec diameter aperture (sky-limited).
    pixel_scale: [arcsec / pixel]. seeing_fwhm: median PSF FWHM at 6250 Angstrom [arcsec];
    seeing_scatter: its log-normal scatter [dex].
    """

    name: str
    bands: tuple
    centre_aa: tuple
    width_aa: tuple
    depth_mag: tuple
    pixel_scale: float
    seeing_fwhm: float
    seeing_scatter: float = 0.08

    @property
    def n_bands(self) -> int:
        return len(self.bands)

    def band_index(self, name: str) -> int:
        return self.bands.index(name)

    def sky_sigma(self) -> np.ndarray:
        """Sky noise per pixel (image units, zero point :data:`ZERO_POINT`) that puts the 5-sigma
        limit of a 3 arcsec diameter aperture at ``depth_mag``."""
        limit_flux = 10 ** (-0.4 * (np.asarray(self.depth_mag) - ZERO_POINT))
        n_pixels = np.pi * (1.5 / self.pixel_scale) ** 2
        return limit_flux / 5.0 / np.sqrt(n_pixels)

    def psf_fwhm_factor(self) -> np.ndarray:
        """Seeing in each band relative to 6250 Angstrom (Kolmogorov turbulence: FWHM ~ lambda^-0.2)."""
        return (np.asarray(self.centre_aa) / 6250.0) ** -0.2


# S-PLUS (Mendes de Oliveira et al. 2019): 7 narrow + 5 broad bands on the 0.8 m T80-South
# telescope; depths are the DR1-like 5-sigma 3 arcsec aperture limits of the main survey.
SPLUS = Survey(
    name="splus",
    bands=("u", "J0378", "J0395", "J0410", "J0430", "g", "J0515", "r", "J0660", "i", "J0861", "z"),
    centre_aa=(3536, 3770, 3940, 4094, 4292, 4751, 5133, 6258, 6614, 7690, 8611, 8831),
    width_aa=(352, 151, 103, 201, 201, 1545, 207, 1465, 147, 1506, 410, 1182),
    depth_mag=(21.0, 20.6, 20.4, 20.6, 20.7, 21.6, 20.9, 21.4, 20.9, 21.0, 20.3, 20.6),
    pixel_scale=0.55,
    seeing_fwhm=1.25,
)

# SDSS imaging: ugriz, 0.396 arcsec pixels, median seeing ~1.4 arcsec in r.
SDSS = Survey(
    name="sdss",
    bands=("u", "g", "r", "i", "z"),
    centre_aa=(3551, 4686, 6166, 7480, 8932),
    width_aa=(600, 1380, 1370, 1530, 950),
    depth_mag=(22.0, 22.2, 22.2, 21.3, 20.5),
    pixel_scale=0.396,
    seeing_fwhm=1.4,
)

SURVEYS = {"splus": SPLUS, "sdss": SDSS}


# ============================================================================ line and continuum
def _continuum(anchor_aa: np.ndarray, anchor_mag: np.ndarray, wavelength_aa: np.ndarray) -> np.ndarray:
    """Continuum AB magnitude at ``wavelength_aa`` (n_objects, n_bands), linear in log wavelength
    between anchors (anchor_mag: (n_objects, n_anchors), anchor_aa: (n_anchors,) or per object)."""
    x = np.log(np.asarray(wavelength_aa, dtype=np.float64))
    xp = np.log(np.asarray(anchor_aa, dtype=np.float64))
    if xp.ndim == 1:
        xp = np.broadcast_to(xp, anchor_mag.shape)
    if x.ndim == 1:
        x = np.broadcast_to(x, (len(anchor_mag), x.size))
    return np.stack([np.interp(x[i], xp[i], anchor_mag[i]) for i in range(len(anchor_mag))])


def _line_factor(survey: Survey, line_aa: np.ndarray, ew_aa: np.ndarray) -> np.ndarray:
    """Flux factor per band (n_objects, n_bands) of lines at observed ``line_aa`` (n_objects,
    n_lines) with observed equivalent widths ``ew_aa`` (same shape; > 0 emission)."""
    centre, width = np.asarray(survey.centre_aa, float), np.asarray(survey.width_aa, float)
    inside = np.abs(line_aa[:, :, None] - centre[None, None, :]) <= width[None, None, :] / 2
    factor = 1.0 + (inside * ew_aa[:, :, None] / width[None, None, :]).sum(axis=1)
    return np.clip(factor, 0.05, None)


# ============================================================================ stars
# The SDSS stellar locus (after Covey et al. 2007): colours u-g, r-i, i-z against g-r, from A stars
# (g-r ~ -0.2) to mid-M dwarfs (g-r ~ 1.5).
_LOCUS_GR = np.array([-0.25, 0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.55])
_LOCUS_UG = np.array([1.05, 1.10, 0.95, 1.15, 1.60, 2.05, 2.40, 2.55, 2.60, 2.62])
_LOCUS_RI = np.array([-0.15, -0.05, 0.05, 0.13, 0.20, 0.30, 0.42, 0.62, 1.00, 1.50])
_LOCUS_IZ = np.array([-0.12, -0.04, 0.00, 0.05, 0.10, 0.17, 0.25, 0.36, 0.55, 0.80])
_SDSS_EFFECTIVE_AA = np.array([3551.0, 4686.0, 6166.0, 7480.0, 8932.0])


def star_magnitudes(survey: Survey, r_mag: np.ndarray, g_minus_r: np.ndarray) -> np.ndarray:
    """AB magnitudes (n, n_bands) of stars on the stellar locus at ``g_minus_r`` with r = ``r_mag``.

    Absorption lines: H-alpha and Ca II H+K strongest in A stars / cool stars respectively
    (equivalent widths in Angstrom as functions of g-r), the Ca triplet growing towards K stars.
    """
    gr = np.clip(g_minus_r, _LOCUS_GR[0], _LOCUS_GR[-1])
    ug, ri, iz = (np.interp(gr, _LOCUS_GR, table) for table in (_LOCUS_UG, _LOCUS_RI, _LOCUS_IZ))
    anchors = np.stack([r_mag + gr + ug, r_mag + gr, r_mag, r_mag - ri, r_mag - ri - iz], axis=1)
    magnitudes = _continuum(_SDSS_EFFECTIVE_AA, anchors, survey.centre_aa)
    halpha_ew = -np.clip(9.0 * (1.0 - gr / 0.6), 0.5, 9.0)  # A stars ~9 A, K stars < 1 A
    cahk_ew = -np.clip(4.0 + 14.0 * (gr + 0.1), 2.0, 22.0)  # H+K together, growing to cool stars
    cat_ew = -np.clip(3.0 + 5.0 * gr, 2.0, 8.0)  # Ca II triplet 8498+8542+8662 together
    lines = np.stack([np.full_like(gr, 6563.0), np.full_like(gr, 3950.0), np.full_like(gr, 8600.0)], axis=1)
    factor = _line_factor(survey, lines, np.stack([halpha_ew, cahk_ew, cat_ew], axis=1))
    return magnitudes - 2.5 * np.log10(factor)


# ============================================================================ quasars
# Rest-frame broad emission lines (Angstrom) and typical rest equivalent widths (Vanden Berk et al. 2001).
_QSO_LINES_AA = np.array([1216.0, 1549.0, 1909.0, 2798.0, 4861.0, 6563.0])
_QSO_LINES_EW = np.array([90.0, 35.0, 22.0, 35.0, 60.0, 250.0])


def quasar_magnitudes(survey: Survey, r_mag: np.ndarray, redshift: np.ndarray, alpha_nu: np.ndarray,
                      rng: np.random.Generator) -> np.ndarray:
    """AB magnitudes (n, n_bands) of quasars: a power law f_nu ~ nu^alpha_nu (alpha ~ -0.5: blue),
    the Lyman-alpha forest's absorption blueward of 1216 (1+z), and broad emission lines."""
    centre = np.asarray(survey.centre_aa, float)
    # m(lambda) = m(6250) + 2.5 alpha log10(lambda / 6250) for f_nu ~ nu^alpha.
    magnitudes = r_mag[:, None] + 2.5 * alpha_nu[:, None] * np.log10(centre[None, :] / 6250.0)
    forest = centre[None, :] < 1216.0 * (1 + redshift[:, None])
    depth = np.clip(0.25 * (1 + redshift[:, None]) ** 2.5 - 0.6, 0.0, 3.0)  # effective tau grows with z
    magnitudes = magnitudes + forest * 1.0857 * depth
    ew = _QSO_LINES_EW[None, :] * rng.lognormal(0.0, 0.35, (len(r_mag), _QSO_LINES_AA.size))
    factor = _line_factor(survey, _QSO_LINES_AA[None, :] * (1 + redshift[:, None]), ew * (1 + redshift[:, None]))
    return magnitudes - 2.5 * np.log10(factor)


# ============================================================================ galaxy components
# Rest-frame continuum templates, AB magnitude relative to 5500 Angstrom, after the Coleman, Wu &
# Weedman (1980) / Kinney et al. (1996) shapes: a 4000 Angstrom break strong in old populations and
# a UV that rises with star formation.
_TEMPLATE_AA = np.array([1500, 2500, 3500, 3900, 4100, 4600, 5500, 7000, 9000, 12000], dtype=float)
GALAXY_TEMPLATES = {
    "old": np.array([5.0, 3.5, 2.2, 1.75, 1.0, 0.55, 0.0, -0.40, -0.65, -0.90]),  # ellipticals, bulges
    "intermediate": np.array([4.3, 3.0, 1.8, 1.45, 0.85, 0.45, 0.0, -0.36, -0.60, -0.82]),  # S0 discs
    "disc": np.array([2.0, 1.5, 0.90, 0.65, 0.35, 0.17, 0.0, -0.25, -0.45, -0.62]),  # star-forming discs (Sbc)
    "starburst": np.array([0.4, 0.3, 0.30, 0.25, 0.12, 0.07, 0.0, -0.12, -0.22, -0.30]),  # irregulars, knots
}
# Nebular lines [OII] 3727, H-beta, [OIII] 5007, H-alpha + [NII]: rest equivalent widths [Angstrom].
_GALAXY_LINES_AA = np.array([3727.0, 4861.0, 5007.0, 6563.0])
GALAXY_LINE_EW = {
    "old": np.array([0.0, 0.0, 0.0, 0.0]),
    "intermediate": np.array([2.0, 0.5, 0.5, 3.0]),
    "disc": np.array([15.0, 5.0, 5.0, 30.0]),
    "starburst": np.array([45.0, 20.0, 60.0, 110.0]),
}


def galaxy_component_magnitudes(survey: Survey, template: str, r_mag: np.ndarray, redshift: np.ndarray,
                                rng: np.random.Generator) -> np.ndarray:
    """AB magnitudes (n, n_bands) of a galaxy component (template ``old`` | ``intermediate`` |
    ``disc`` | ``starburst``) at ``redshift``, normalised to r-band-like magnitude ``r_mag`` at
    6250 Angstrom observed."""
    centre = np.asarray(survey.centre_aa, float)
    shape = GALAXY_TEMPLATES[template]
    n = len(r_mag)
    rest = centre[None, :] / (1 + redshift[:, None])
    magnitudes = np.stack([np.interp(np.log(rest[i]), np.log(_TEMPLATE_AA), shape) for i in range(n)])
    reference = np.interp(np.log(6250.0 / (1 + redshift)), np.log(_TEMPLATE_AA), shape)
    magnitudes = magnitudes - reference[:, None] + r_mag[:, None]
    ew = GALAXY_LINE_EW[template][None, :] * rng.lognormal(0.0, 0.3, (n, _GALAXY_LINES_AA.size))
    factor = _line_factor(survey, _GALAXY_LINES_AA[None, :] * (1 + redshift[:, None]), ew * (1 + redshift[:, None]))
    return magnitudes - 2.5 * np.log10(factor)


def combine_magnitudes(*magnitudes: np.ndarray) -> np.ndarray:
    """Total magnitude of components given their magnitudes (same shapes)."""
    flux = sum(10 ** (-0.4 * m) for m in magnitudes)
    return -2.5 * np.log10(flux)
