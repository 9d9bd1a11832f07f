"""Baselines that are not networks: an SVM and gradient boosting on the spectra, and the physics
rule astronomers used before machine learning (the H-delta line's width at 20 % depth and its
minimum flux, Xue et al. 2008, together with the u-g colour of the Balmer jump)."""
from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

H_DELTA_AA = 4101.74
CONTINUUM_WINDOWS_AA = ((4020.0, 4040.0), (4165.0, 4185.0))


def svm_probability(spectra: np.ndarray, label: np.ndarray, split: np.ndarray, seed: int = 0) -> np.ndarray:
    """RBF SVM on the first 50 principal components of the min-max scaled spectra (trained on
    split 0); returns P(BHB) for every object (Platt scaling)."""
    model = make_pipeline(StandardScaler(), PCA(50, random_state=seed), SVC(C=3.0, probability=True, random_state=seed))
    model.fit(spectra[split == 0], label[split == 0])
    return model.predict_proba(spectra)[:, 1]


def gradient_boosting_probability(spectra: np.ndarray, label: np.ndarray, split: np.ndarray, seed: int = 0,
                                  rebin: int = 8) -> np.ndarray:
    """Histogram gradient boosting (XGBoost-like) on spectra rebinned by ``rebin`` pixels."""
    n, p = spectra.shape
    binned = spectra[:, : p - p % rebin].reshape(n, -1, rebin).mean(axis=2)
    model = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.1, early_stopping=True,
                                           validation_fraction=0.15, random_state=seed)
    model.fit(binned[split == 0], label[split == 0])
    return model.predict_proba(binned)[:, 1]


def h_delta_features(flux: np.ndarray, wavelength_aa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """H-delta width at 20 % below the continuum, D0.2 [Angstrom], and minimum normalised flux fm,
    per spectrum; the continuum is a straight line through the two side windows."""
    windows = [(wavelength_aa >= a) & (wavelength_aa <= b) for a, b in CONTINUUM_WINDOWS_AA]
    x = [wavelength_aa[w].mean() for w in windows]
    y = [flux[:, w].mean(axis=1) for w in windows]
    slope = (y[1] - y[0]) / (x[1] - x[0])
    near = np.abs(wavelength_aa - H_DELTA_AA) <= 40.0
    continuum = y[0][:, None] + slope[:, None] * (wavelength_aa[near][None, :] - x[0])
    normalised = flux[:, near] / np.maximum(continuum, 1e-12)
    kernel = np.ones(3) / 3  # a 3-pixel running mean tames the noise
    smooth = np.apply_along_axis(lambda row: np.convolve(row, kernel, mode="same"), 1, normalised)
    pixel_width = np.gradient(wavelength_aa)[near]
    d02 = ((smooth < 0.8) * pixel_width[None, :]).sum(axis=1)
    fm = smooth[:, 3:-3].min(axis=1)
    return d02, fm


def rule_probability(d02: np.ndarray, fm: np.ndarray, u_g: np.ndarray, label: np.ndarray,
                     split: np.ndarray) -> tuple[np.ndarray, dict]:
    """BHB when D0.2 < a, fm > b... as cuts: D0.2 below a threshold and u-g above one, the
    thresholds chosen on the training split to maximise F1. Returns (0/1 "probability", cuts)."""
    train = split == 0
    best = (-1.0, None)
    for width_cut in np.quantile(d02[train], np.linspace(0.05, 0.95, 37)):
        for colour_cut in np.quantile(u_g[train], np.linspace(0.0, 0.9, 31)):
            predicted = (d02[train] < width_cut) & (u_g[train] > colour_cut)
            tp = np.sum(predicted & (label[train] == 1))
            f1 = 2 * tp / max(predicted.sum() + (label[train] == 1).sum(), 1)
            if f1 > best[0]:
                best = (f1, (float(width_cut), float(colour_cut)))
    width_cut, colour_cut = best[1]
    probability = ((d02 < width_cut) & (u_g > colour_cut)).astype(float)
    return probability, {"d02_below_aa": width_cut, "u_g_above_mag": colour_cut,
                         "fm_median_bhb": float(np.median(fm[train & (label == 1)]))}
