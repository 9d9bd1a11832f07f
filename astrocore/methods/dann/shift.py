"""What separates the models from a catalogue beyond noise: non-detections and the class balance.

* Detection limits. A catalogue line below 3 sigma enters the ratios at its 3-sigma upper limit
  (:func:`astrocore.data.simulators.nebulae_observe.features_from_fluxes`), i.e. the measured
  line is ``max(flux, 3 sigma)``. For faint nebulae that moves the ratios far from any model:
  a faint PN with [SII] and [OI] undetected gets [SII]/Halpha and [OI]/Halpha limits of
  ~0.3 and ~0.1, SNR-like values (and [SII]6716/6731 = 1, the ratio of two equal limits).
  :func:`censor` applies the same operation to the models: each source row is given the
  detection limits (3 sigma / Halpha, per line) of a random catalogue row, which the catalogue's
  own errors provide without any label, so the network learns what an upper limit does and does
  not say. This is part of the noise model (noise injection, Belfiore et al. 2025), not of the
  physics: the source fluxes are untouched.
* Label shift. The models come in equal thirds; catalogues are mostly HII regions.
  :func:`bbse_prior` estimates the target class balance without labels by black-box shift
  estimation (Lipton, Wang & Smola 2018, ICML): the classifier's predicted-class shares on the
  target, q, are C^T p_target with C the confusion matrix P(predicted | true) measured on held-out
  source rows, solved for p_target. It needs no calibrated probabilities; :func:`em_prior`
  (Saerens, Latinne & Decaestecker 2002, Neural Comput. 14, 21) does, and networks trained on
  noise-injected models are not calibrated on the target (it drifts to "all HII" early in
  training and underestimates PN threefold at the end; it is kept for comparison). The DANN
  weights its source rows by p_target(y) / p_source(y) in the domain loss (IWDAN, Combes et al.
  2020) so that aligning the two marginals does not push HII regions onto PN and SNR.
"""
from __future__ import annotations

import numpy as np

from ...data.dataset import DataError
from ...data.simulators.nebulae import LINE_NAMES, line_ratios
from ...data.simulators.nebulae_observe import DETECTION_SIGMA

REFERENCE_LINE = "HA6562"


def line_levels(labels, rows: np.ndarray) -> np.ndarray:
    """log10(F_line / F_Halpha) of ``rows`` for every line of :data:`LINE_NAMES`, (n, n_lines);
    -inf for a flux <= 0 (absent line)."""
    missing = [f"{line}_FLUX" for line in LINE_NAMES if f"{line}_FLUX" not in labels.colnames]
    if missing:
        raise DataError(f"detection_limits='target' needs the line fluxes; the data lack {missing[:4]}...")
    halpha = np.asarray(labels[f"{REFERENCE_LINE}_FLUX"], float)[rows]
    with np.errstate(divide="ignore", invalid="ignore"):
        levels = np.column_stack([np.log10(np.asarray(labels[f"{line}_FLUX"], float)[rows] / halpha)
                                  for line in LINE_NAMES])
    return np.where(np.isnan(levels), -np.inf, levels).astype(np.float32)


def detection_limits(labels, rows: np.ndarray, detection_sigma: float = DETECTION_SIGMA) -> np.ndarray:
    """log10(detection_sigma x error_line / F_Halpha) of catalogue ``rows``, (n, n_lines): where a
    line of that row would stop being detected, relative to its Halpha. -inf where the error is
    missing or zero (the line counts as always detected)."""
    missing = [f"{line}_FLUX_ERR" for line in LINE_NAMES if f"{line}_FLUX_ERR" not in labels.colnames]
    if missing:
        raise DataError(f"detection_limits='target' needs the catalogue's flux errors; the data lack {missing[:4]}...")
    halpha = np.asarray(labels[f"{REFERENCE_LINE}_FLUX"], float)[rows]
    columns = []
    for line in LINE_NAMES:
        error = np.asarray(labels[f"{line}_FLUX_ERR"], float)[rows]
        with np.errstate(divide="ignore", invalid="ignore"):
            limit = np.log10(detection_sigma * error / halpha)
        columns.append(np.where(np.isfinite(limit) & (error > 0) & (halpha > 0), limit, -np.inf))
    return np.column_stack(columns).astype(np.float32)


def censor(levels: np.ndarray, limits: np.ndarray, features) -> np.ndarray:
    """The ratios ``features`` (n, n_features, dex) of rows with line levels ``levels`` observed
    with detection limits ``limits`` (both (n, n_lines), relative to Halpha): each line becomes
    max(line, limit), as a catalogue records a non-detection (Halpha is the reference and is kept)."""
    observed = np.maximum(levels, limits)
    observed[:, LINE_NAMES.index(REFERENCE_LINE)] = 0.0
    ratios = line_ratios({line: 10.0 ** observed[:, k].astype(np.float64) for k, line in enumerate(LINE_NAMES)})
    return np.column_stack([ratios[name] for name in features]).astype(np.float32)


def em_prior(probabilities: np.ndarray, source_prior, iterations: int = 100, tolerance: float = 1e-6) -> np.ndarray:
    """The class balance of unlabelled rows from a classifier's probabilities (n, k) trained with
    class balance ``source_prior``: Saerens et al. (2002) EM. Each step re-weights the posteriors
    by p_new / p_source, renormalises them, and takes their mean as p_new."""
    probabilities = np.clip(np.asarray(probabilities, float), 1e-12, None)
    source_prior = np.asarray(source_prior, float) / np.sum(source_prior)
    prior = source_prior.copy()
    for _ in range(iterations):
        posterior = probabilities * (prior / source_prior)
        posterior /= posterior.sum(1, keepdims=True)
        new = posterior.mean(0)
        if np.abs(new - prior).max() < tolerance:
            prior = new
            break
        prior = new
    return prior


def bbse_prior(target_predicted: np.ndarray, source_predicted: np.ndarray, source_true: np.ndarray,
               n_classes: int = 3, floor: float = 1e-3) -> np.ndarray:
    """Black-box shift estimate of the target class balance (Lipton et al. 2018): solve
    C^T p = q by least squares, C[i, j] = P(predicted j | true i) on labelled source rows and
    q[j] the share of target rows predicted j; then clipped at ``floor`` and normalised."""
    source_true, source_predicted = np.asarray(source_true, int), np.asarray(source_predicted, int)
    confusion = np.zeros((n_classes, n_classes))
    np.add.at(confusion, (source_true, source_predicted), 1.0)
    confusion /= np.maximum(confusion.sum(1, keepdims=True), 1.0)
    q = np.bincount(np.asarray(target_predicted, int), minlength=n_classes) / max(len(target_predicted), 1)
    prior = np.linalg.lstsq(confusion.T, q, rcond=None)[0]
    prior = np.clip(prior, floor, None)
    return prior / prior.sum()
