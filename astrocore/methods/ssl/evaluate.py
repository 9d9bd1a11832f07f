"""What ``astrocore evaluate`` reports for an SSL run, from its saved per-object arrays."""
from __future__ import annotations

import io
import time

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from ...data.readers.cutouts import write_cutout
from .classify import classify_files


def _median_ms(call, repeats: int) -> float:
    """Median wall time [ms] of ``call()`` over ``repeats`` calls, after one warm-up call."""
    call()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return round(1000 * float(np.median(timings)), 3)


def classify_one_ms(run, image: np.ndarray, repeats: int = 20) -> float:
    """Median time [ms] to classify (downstream) or measure (pretext) one cutout on this machine."""
    predict = run.predict_proba if run.stage == "downstream" else run.predict_magnitudes
    return _median_ms(lambda: predict(image[None]), repeats)


def upload_classify_ms(run, image: np.ndarray, bands, pixel_scale_arcsec: float, repeats: int = 10) -> float:
    """Median time [ms] of the upload path for one cutout (n_bands, h, w): read a multi-extension
    FITS file's bytes, check the cutout, classify it and find its neighbours (:func:`classify_files`)."""
    buffer = io.BytesIO()
    write_cutout(buffer, image, bands=tuple(bands), pixel_scale_arcsec=pixel_scale_arcsec)
    payload = buffer.getvalue()

    def upload():
        table, errors = classify_files(run, [("cutout.fits", payload)])
        if errors or table is None:
            raise RuntimeError(f"the upload path refused a simulated cutout: {errors}")

    return _median_ms(upload, repeats)


def pretext_residuals(arrays: dict, role: int = 2) -> dict[str, np.ndarray]:
    """Predicted minus measured magnitudes, measured errors and photometry minus truth, for one role
    (2: the test cutouts that passed the photometric cut)."""
    chosen = arrays["role"] == role
    return {"residual": arrays["predicted_magnitude"][chosen] - arrays["magnitude"][chosen],
            "error": arrays["magnitude_error"][chosen],
            "photometry_minus_true": arrays["magnitude"][chosen] - arrays["true_magnitude"][chosen]}


def evaluate_run(run, max_objects: int = 4000) -> dict:
    """Pretext: MAE per band of the predicted magnitudes against the photometry, next to the
    photometric errors. Downstream: accuracy, macro F1 and the confusion matrix on the test set."""
    arrays = run.arrays()
    bands = list(run.bands)
    result = {"stage": run.stage}
    if run.stage == "pretext":
        parts = pretext_residuals(arrays)
        result["pretext_mae_per_band"] = dict(zip(bands, np.abs(parts["residual"]).mean(axis=0).round(4).tolist()))
        result["photometric_error_per_band"] = dict(zip(bands, np.median(parts["error"], axis=0).round(4).tolist()))
        result["n_test"] = int(len(parts["residual"]))
    else:
        test = arrays["role"] == 2
        target, predicted = arrays["target"][test][:max_objects], arrays["predicted"][test][:max_objects]
        labels = list(range(len(run.classes)))
        result.update(scheme=run.config.scheme, classes=run.classes, n_labels=int((arrays["role"] == 0).sum()),
                      accuracy=float(accuracy_score(target, predicted)),
                      macro_f1=float(f1_score(target, predicted, average="macro", labels=labels, zero_division=0)),
                      confusion=confusion_matrix(target, predicted, labels=labels).tolist())
    return result
