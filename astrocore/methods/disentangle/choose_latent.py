"""Choosing the latent size by validation (for data without twins, issue 21).

How many dimensions a latent needs depends on how much chemistry the spectra carry (2 abundances in
the Payne grid, 12 in the APOGEE-like grid), which a survey user does not know. With
``latent_candidates`` the disentangler is trained once per candidate size, and each is scored on
the validation split only (chemistries that neither training nor the test probes see):

- leakage: the R^2 with which an MLP and a k-NN probe (fitted on training objects) read each
  conditional parameter from the latent, the larger of the two;
- reconstruction: the mean squared error of the validation spectra.

The kept size is the one that reconstructs best among those whose leakage stays at or below
``max_leakage`` for every conditional parameter (the least leaky one when none does). Neither
score looks at the test split or at any label beyond the conditional parameters, which every
spectrum comes with. The run folder holds the kept model; the others stay in its ``candidates/``
folder, and ``metrics["latent_choice"]`` records every candidate's scores.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from ...data.dataset import Dataset
from ...evaluation import representation_scores, split_index
from ...runs import RunRecord, claim_run_folder, recording_outcome, write_progress
from ...training import is_main_process
from .config import DisentanglerConfig
from .fit import fit, source_from_provenance, split_indices
from .run import DisentanglerRun

CANDIDATES_FOLDER = "candidates"
# What the kept run takes from the chosen candidate's folder.
KEPT_FILES = ("weights.safetensors", "arrays.npz", "history.jsonl")


def validation_scores(run: DisentanglerRun, dataset: Dataset) -> dict:
    """Leakage of each conditional parameter into the latent (max of the MLP and k-NN probes' R^2,
    probes fitted on training objects and scored on validation ones) and the validation
    reconstruction MSE (flux units squared) of a finished run."""
    arrays = run.arrays()
    split, latent = arrays["split"], arrays["latent"]
    train, validation = split_index(run, dataset, 0), split_index(run, dataset, 1)
    if len(validation) == 0:
        raise ValueError("Choosing the latent size needs a validation split (val_fraction > 0).")
    conditional = run.record.config["conditional"]
    scores = representation_scores(latent[train], dataset.labels[train], latent[validation],
                                   dataset.labels[validation], probe_labels=conditional)
    leakage = {name: max(value for value in (scores["r2"][name], scores["r2_knn"][name]) if value is not None)
               for name in conditional if scores["r2"].get(name) is not None}
    return {"latent_dim": int(run.record.config["latent_dim"]), "leakage": leakage,
            "max_leakage": round(max(leakage.values(), default=0.0), 4),
            "val_recon_mse": float(np.asarray(arrays["recon_mse"])[split == 1].mean())}


def chosen_index(scores: list[dict], max_leakage: float) -> int:
    """Index of the kept candidate: the best validation reconstruction among those leaking at most
    ``max_leakage``, else the least leaky (ties: the smaller latent, listed first)."""
    eligible = [i for i, score in enumerate(scores) if score["max_leakage"] <= max_leakage]
    if eligible:
        return min(eligible, key=lambda i: scores[i]["val_recon_mse"])
    return min(range(len(scores)), key=lambda i: scores[i]["max_leakage"])


def fit_choosing_latent(dataset: Dataset, config: DisentanglerConfig,
                        progress: Callable[[int, int, dict], None] | None = None, runs_root=None,
                        run_id: str | None = None, data_source: dict | None = None,
                        should_stop: Callable[[], bool] | None = None, resume: bool = False) -> DisentanglerRun:
    """:func:`fit` once per size in ``config.latent_candidates`` (in ``<run>/candidates/z<size>``),
    then keep the size chosen on the validation split (module docstring). Cancelled, it resumes
    where it stopped: finished candidates are not trained again."""
    folder = claim_run_folder(runs_root, run_id, "disentangle", config.mode, resume)
    record = RunRecord(id=folder.name, path=folder, method="disentangle", config=config.to_json(),
                       data=data_source or source_from_provenance(dataset))
    if is_main_process():
        record.write()
    candidates_root = folder / CANDIDATES_FOLDER
    sizes = config.latent_candidates
    scores, runs = [], []
    with recording_outcome(record):
        for index, size in enumerate(sizes):
            candidate = dataclasses.replace(config, latent_dim=size, latent_candidates=())
            name = f"z{size}"
            if resume and _finished(candidates_root / name):
                run = DisentanglerRun.load(candidates_root / name)
            else:
                run = fit(dataset, candidate, progress=_candidate_progress(folder, progress, index, len(sizes), size),
                          runs_root=candidates_root, run_id=name, data_source=record.data, should_stop=should_stop,
                          resume=resume and (candidates_root / name).exists())
            runs.append(run)
            if is_main_process():
                scores.append(validation_scores(run, dataset))
        if not is_main_process():
            return runs[0]
        kept = chosen_index(scores, config.max_leakage)
        chosen = runs[kept]
        for file_name in KEPT_FILES:
            if (chosen.path / file_name).exists():
                shutil.copy2(chosen.path / file_name, folder / file_name)
        record.config = dataclasses.replace(config, latent_dim=sizes[kept]).to_json()
        record.history = chosen.record.history
        record.metrics = {**chosen.record.metrics, "latent_choice": {
            "kept": sizes[kept], "max_leakage": config.max_leakage, "candidates": scores,
            "rule": "best validation reconstruction among candidates whose validation leakage "
                    "(max of MLP and k-NN R^2 of each conditional parameter) is <= max_leakage"}}
        record.status = "done"
        record.write()
    return DisentanglerRun.load(folder)


def fit_run(dataset: Dataset, config: DisentanglerConfig, **options) -> DisentanglerRun:
    """Train a disentangler: :func:`fit_choosing_latent` when the config lists latent candidates,
    else :func:`fit` (same options)."""
    if not config.latent_candidates:
        return fit(dataset, config, **options)
    split = split_indices(dataset.labels, config.test_fraction, config.val_fraction, config.seed)
    if not (split == 1).any():
        # Too few stars (or chemistries) for a validation split: no choice can be made, so the
        # preset's latent_dim is trained and the run says why.
        run = fit(dataset, dataclasses.replace(config, latent_candidates=()), **options)
        if is_main_process():
            run.record.metrics["latent_choice"] = {
                "kept": config.latent_dim, "skipped": "too few stars for a validation split; "
                                                      f"latent_dim {config.latent_dim} trained without a choice"}
            run.record.write()
        return run
    return fit_choosing_latent(dataset, config, **options)


def _finished(folder: Path) -> bool:
    try:
        return RunRecord.read(folder).status == "done"
    except (FileNotFoundError, OSError, ValueError):
        return False


def _candidate_progress(folder: Path, progress, index: int, count: int, size: int):
    """Progress of candidate ``index`` as a stretch of one bar over all candidates, written to the
    kept run's folder too (the app follows that folder)."""
    def report(step, total, metrics):
        metrics = {**metrics, "phase": f"latent {size} ({index + 1} of {count})"
                   + (f", {metrics['phase']}" if metrics.get("phase") else "")}
        overall, overall_total = index * total + step, count * total
        write_progress(folder, overall, overall_total, metrics)
        if progress is not None:
            progress(overall, overall_total, metrics)
    return report
