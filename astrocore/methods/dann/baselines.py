"""The physics-rule baseline and the BPT demarcation curves.

Rule (after Kewley et al. 2006 and the SNR criterion of Mathewson & Clarke 1973 / Kopsacheili et
al. 2020): a nebula with [SII]6716+31/Halpha > 0.4 is an SNR; otherwise one above the Kewley et
al. (2001) maximum-starburst line in the [NII] or the [SII] diagram is a PN (photoionised by a
hot central star, far harder than OB stars); the rest are HII regions. The Kauffmann et al. (2003)
line is drawn on the diagrams for reference.
"""
from __future__ import annotations

import numpy as np

from ...data.simulators.nebulae import CLASSES

SNR_SII_HALPHA = 0.4


def kauffmann03(x):
    """Kauffmann et al. (2003): log [OIII]/Hbeta vs log [NII]/Halpha, defined for x < 0.05."""
    x = np.asarray(x, float)
    return np.where(x < 0.05, 0.61 / (x - 0.05) + 1.30, np.nan)


def kewley01_nii(x):
    """Kewley et al. (2001) [NII] diagram, x < 0.47."""
    x = np.asarray(x, float)
    return np.where(x < 0.47, 0.61 / (x - 0.47) + 1.19, np.nan)


def kewley01_sii(x):
    """Kewley et al. (2001) [SII] diagram, x < 0.32."""
    x = np.asarray(x, float)
    return np.where(x < 0.32, 0.72 / (x - 0.32) + 1.30, np.nan)


def kewley01_oi(x):
    """Kewley et al. (2001) [OI] diagram, x < -0.59."""
    x = np.asarray(x, float)
    return np.where(x < -0.59, 0.73 / (x + 0.59) + 1.33, np.nan)


DIAGRAMS = {  # x ratio -> (maximum-starburst curve, asymptote)
    "log_nii_ha": (kewley01_nii, 0.47),
    "log_sii_ha": (kewley01_sii, 0.32),
    "log_oi_ha": (kewley01_oi, -0.59),
}


def above_kewley(x_name: str, x, y) -> np.ndarray:
    """Whether (x, y) lies above (or right of) the Kewley 2001 curve of the diagram of ``x_name``."""
    curve, asymptote = DIAGRAMS[x_name]
    x, y = np.asarray(x, float), np.asarray(y, float)
    with np.errstate(invalid="ignore"):
        return (x >= asymptote) | (y > np.nan_to_num(curve(x), nan=np.inf))


def rule_classify(ratios: dict) -> np.ndarray:
    """Class index (0 HII, 1 PN, 2 SNR) of each nebula from its log ratios (dex)."""
    y = np.asarray(ratios["log_oiii_hb"], float)
    snr = np.asarray(ratios["log_sii_ha"], float) > np.log10(SNR_SII_HALPHA)
    pn = above_kewley("log_nii_ha", ratios["log_nii_ha"], y) | above_kewley("log_sii_ha", ratios["log_sii_ha"], y)
    return np.where(snr, CLASSES.index("SNR"), np.where(pn, CLASSES.index("PN"), CLASSES.index("HII")))
