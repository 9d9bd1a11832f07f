"""Evaluating a disentangler: probes of its latent, reconstruction, twins and generation accuracy."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
from astropy.table import Table

from ...data import dataset_from_source, renderer_for
from ...evaluation import (MAX_KNN_OBJECTS, PROBE_LABELS, error_by_parameter, generation_rmse,
                           representation_scores, rms, split_index)


def evaluate_disentangler(run, dataset, render: Callable[[Table], np.ndarray] | None = None,
                          probe_labels=PROBE_LABELS, max_objects: int = 4000, seed: int = 0) -> dict:
    """Everything the bench reports for one disentangling run, on its held-out objects.

    Returns r2 / r2_knn per label, twins_top10, recon_mse (mean per-pixel squared error, flux
    units), recon_rms (median per-spectrum RMS), recon_mse_by_cp (recon_mse in bins of the first
    conditional parameter, see :func:`error_by_parameter`), gen_rmse and gen_rmse_extrap (median RMS against
    the simulator's true spectrum; only with ``render``) and decode_ms (one spectrum on this CPU).
    """
    index = split_index(run, dataset, 2, max_objects, seed)
    train_index = split_index(run, dataset, 0, max(max_objects, MAX_KNN_OBJECTS), seed)
    labels = dataset.labels[index]
    spectra = dataset.spectra[index]
    all_cp = dataset.label_array(run.conditional)
    cp = all_cp[index]
    latent = run.encode(spectra, cp)
    train_latent = run.encode(dataset.spectra[train_index], all_cp[train_index])
    result = representation_scores(train_latent, dataset.labels[train_index], latent, labels, probe_labels, seed)
    reconstruction = run.decode(latent, cp)
    result["recon_mse"] = float(((reconstruction - spectra) ** 2).mean())
    result["recon_rms"] = float(np.median(rms(reconstruction, spectra)))
    result["recon_mse_by_cp"] = error_by_parameter(((reconstruction - spectra) ** 2).mean(axis=1),
                                                   cp[:, 0], run.conditional[0])
    if render is not None:
        n_pairs = min(len(index), 1000)
        pairs = index[:n_pairs]
        result["gen_rmse"] = generation_rmse(run, dataset.spectra, dataset.labels, pairs, render, False, seed=seed)
        result["gen_rmse_extrap"] = generation_rmse(run, dataset.spectra, dataset.labels, pairs, render, True, seed=seed)
    timings = []
    for _ in range(30):
        started = time.perf_counter()
        run.decode(latent[:1], cp[:1])
        timings.append(time.perf_counter() - started)
    result["decode_ms"] = round(1000 * float(np.median(timings)), 3)
    return result


def evaluate_run(run, max_objects: int = 4000) -> dict:
    """What ``astrocore evaluate RUN`` prints and the app's Evaluate tab shows: the run's metrics
    (:func:`evaluate_disentangler`) plus the same probes on the input spectra X."""
    started = time.time()
    dataset = dataset_from_source(run.record.data)
    metrics = evaluate_disentangler(run, dataset, render=renderer_for(dataset), max_objects=max_objects)
    # The same probes on the input spectra X (fitted on the training stars, scored on held-out ones).
    test = split_index(run, dataset, 2, max_objects)
    train = split_index(run, dataset, 0, max(max_objects, MAX_KNN_OBJECTS))
    try:
        metrics["X"] = representation_scores(dataset.spectra[train], dataset.labels[train], dataset.spectra[test],
                                             dataset.labels[test], PROBE_LABELS)
    except ValueError as error:  # e.g. too few held-out spectra for the probes
        metrics["X_error"] = str(error)
    metrics["n_held_out"] = int(len(test))
    metrics["seconds"] = round(time.time() - started, 2)
    return {"mode": run.config.mode, "conditional": list(run.conditional), **metrics}


def reconstruction_check(run, dataset) -> dict:
    """Reconstruction MSE (flux units squared) and mean latent of ``dataset`` through ``run``: what a
    shipped model stores for its sample and a test recomputes with the current code."""
    cp = dataset.label_array(run.conditional)
    latent = run.encode(dataset.spectra, cp)
    reconstruction = run.decode(latent, cp)
    return {"recon_mse": float(((reconstruction - dataset.spectra) ** 2).mean()),
            "latent_mean": np.asarray(latent.mean(axis=0), float).round(6).tolist()}
