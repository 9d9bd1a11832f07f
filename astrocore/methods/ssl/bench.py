"""The SSL bench: the pretext's magnitude errors, and downstream accuracy per set, label count and
scheme (mean and standard deviation over seeds) - the paper's low-data experiment."""
from __future__ import annotations

import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ...runs import list_runs
from .config import SSLConfig
from .data import dataset_from_source, label_set_source, pretext_source
from .evaluate import classify_one_ms, upload_classify_ms
from .fit import fit
from .run import SSLRun

BENCH_SCHEMES = ("scratch", "frozen_pretext", "finetune_pretext", "frozen_contrastive", "frozen_both")
# A bench scheme is a downstream scheme on one pretext network: "frozen_both" is the frozen scheme on
# the network trained on magnitudes and the contrastive objective together.
SCHEME_PRETEXT = {"scratch": None, "frozen_pretext": "magnitudes", "finetune_pretext": "magnitudes",
                  "frozen_contrastive": "contrastive", "frozen_both": "both"}
PRETEXT_OBJECTIVES = ("magnitudes", "contrastive", "both")


def bench_scheme(scheme: str, pretext_objective: str | None) -> str:
    """The bench's name for a downstream run: its scheme, or ``frozen_both`` for frozen features of
    a network pre-trained on both objectives."""
    return "frozen_both" if scheme == "frozen_pretext" and pretext_objective == "both" else scheme


def _summary(values: list[float]) -> dict:
    return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4), "n": len(values)}


def bench_ssl(preset: str = "fast", sets=("star_galaxy", "star_galaxy_quasar", "merger", "morphology_2",
                                          "morphology_4"),
              label_counts=(100,), seeds: int = 2, n_pretext: int = 12000, n_labelled: int = 4000,
              runs_root=None, progress: Callable[[str], None] | None = None, survey: str = "splus",
              schemes=BENCH_SCHEMES, overrides: dict | None = None, main_set: str = "star_galaxy_quasar",
              main_seeds: int | None = 3, main_label_counts=(100, 200, 500, 1000, 0), pretext_epochs: int | None = 30,
              contrastive_objects: int | None = 4000, downstream_overrides: dict | None = None,
              pretext_paths: dict | None = None, workers: int = 1) -> dict:
    """Train the pretext networks (magnitudes; contrastive; both) once, then every downstream scheme on
    each label set at each label count (0 = all labels) for ``seeds`` seeds. Returns the record
    written to benchmarks/ssl_fast.json.

    ``main_set`` may get more seeds (``main_seeds``) and label counts (``main_label_counts``) than the
    others; ``contrastive_objects`` trains the contrastive network on the first that many cutouts
    (it costs two augmented views per cutout); ``downstream_overrides`` change the downstream
    configs only (e.g. a smaller batch). ``pretext_paths`` ({"magnitudes": folder, "contrastive":
    folder, "both": folder}) reuses pretext runs instead of training them. ``workers`` processes
    (one thread each) train the downstream runs side by side; the results do not depend on it
    beyond floating-point rounding."""
    say = progress or (lambda line: None)
    overrides = dict(overrides or {})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(runs_root) if runs_root else Path(scratch)
        source = pretext_source(n_pretext, survey=survey)
        t0 = time.perf_counter()
        unlabelled = dataset_from_source(source)
        simulate_s = time.perf_counter() - t0
        say(f"pretext data: {len(unlabelled)} cutouts in {simulate_s:.0f} s")
        pretext = {}
        needed = [o for o in PRETEXT_OBJECTIVES if o == "magnitudes" or o in {SCHEME_PRETEXT[s] for s in schemes}]
        for objective in needed:
            if pretext_paths and objective in pretext_paths:
                pretext[objective] = SSLRun.load(pretext_paths[objective])
                continue
            config = SSLConfig.preset(preset, stage="pretext", pretext=objective, **{
                **overrides, **({"epochs": pretext_epochs} if pretext_epochs else {})})
            data, data_source = unlabelled, source
            # The contrastive term costs two augmented views per cutout: it may train on fewer.
            if objective != "magnitudes" and contrastive_objects and contrastive_objects < len(unlabelled):
                data = unlabelled.subset(np.arange(contrastive_objects))
                data_source = {**source, "first": int(contrastive_objects)}
            pretext[objective] = fit(data, config, runs_root=root, data_source=data_source)
            say(f"pretext {objective}: {pretext[objective].record.metrics['train_seconds']:.0f} s, "
                f"MAE {pretext[objective].record.metrics['pretext_mae']:.3f} mag")
        metrics = pretext["magnitudes"].record.metrics
        result = {
            "preset": preset, "survey": survey, "n_pretext_objects": len(unlabelled),
            "pretext_r_range": list(source["params"]["r_range"]),
            "n_pretext_kept": metrics["n_kept"], "n_labelled_per_set": n_labelled, "seeds": seeds,
            "pretext_mae_per_band": metrics["pretext_mae_per_band"],
            "photometric_error_per_band": metrics["photometric_error_per_band"],
            "photometry_minus_true_per_band": metrics["photometry_minus_true_per_band"],
            "pretext_train_s": {k: run.record.metrics["train_seconds"] for k, run in pretext.items()},
            "pretext_epochs": pretext["magnitudes"].config.epochs,
            "contrastive_objects": min(contrastive_objects or len(unlabelled), len(unlabelled)),
            "simulate_pretext_s": round(simulate_s, 1),
        }
        for objective, key in (("contrastive", "contrastive_probe_mae_per_band"), ("both", "both_mae_per_band")):
            if objective in pretext:
                result[key] = pretext[objective].record.metrics["pretext_mae_per_band"]
        jobs = []  # every downstream run: (set, label key, scheme, seed, config, pretext objective)
        for name in sets:
            is_main = name == main_set
            for count in (main_label_counts if is_main and main_label_counts else label_counts):
                key = "all" if count in (0, None) else str(count)
                for scheme in schemes:
                    for seed in range(main_seeds if is_main and main_seeds else seeds):
                        config = SSLConfig.preset(preset, stage="downstream", seed=seed,
                                                  scheme="frozen_pretext" if scheme == "frozen_both" else scheme,
                                                  n_labels=None if key == "all" else int(count),
                                                  **{**overrides, **(downstream_overrides or {})})
                        jobs.append((name, key, scheme, seed, config, SCHEME_PRETEXT[scheme]))
        pretext_folders = {objective: str(run.path) for objective, run in pretext.items()}
        sources = {name: label_set_source(name, n_labelled, survey=survey) for name in sets}
        for name in sets:  # simulate (or read from the cache) once, before any worker starts
            dataset_from_source(sources[name])
        t0 = time.perf_counter()
        finished = []

        def report(index: int, outcome: dict):
            finished.append(index)
            name, key, scheme, seed = jobs[index][:4]
            say(f"downstream {len(finished)}/{len(jobs)}: {name} {key} labels {scheme} seed {seed}: accuracy "
                f"{outcome['accuracy']:.3f} ({time.perf_counter() - t0:.0f} s)")

        outcomes = _run_jobs([(sources[name], config, pretext_folders.get(objective), str(root))
                              for name, _, _, _, config, objective in jobs], workers, report)
        _LABELLED.clear()  # the serial path keeps them in this process
        _PRETEXT_RUNS.clear()
        result["downstream_wall_s"] = round(time.perf_counter() - t0, 1)
        result["workers"] = int(workers)
        for name in sets:
            result[name] = {}
        grouped: dict = {}
        # "all" labels = the whole training pool of a set (what the low-data curve draws it at)
        result["all_labels"] = {name: outcome["n_labels"] for (name, key, *_), outcome in zip(jobs, outcomes)
                                if key == "all"}
        for (name, key, scheme, seed, _, _), outcome in zip(jobs, outcomes):
            scores = grouped.setdefault((name, key), {}).setdefault(scheme, {"accuracy": [], "macro_f1": [],
                                                                             "train_s": []})
            for metric in ("accuracy", "macro_f1", "train_s"):
                scores[metric].append(outcome[metric])
        for (name, key), per_scheme_scores in grouped.items():
            per_scheme = {scheme: {metric: _summary(values) for metric, values in scores.items()}
                          for scheme, scores in per_scheme_scores.items()}
            for scheme, scores in per_scheme.items():
                say(f"{name} {key:>4} labels {scheme:<19} accuracy {scores['accuracy']['mean']:.3f}"
                    f" +- {scores['accuracy']['std']:.3f}")
            per_scheme["best"] = max(per_scheme_scores, key=lambda s: per_scheme[s]["accuracy"]["mean"])
            result[name][key] = per_scheme
        if jobs:
            last = SSLRun.load(outcomes[-1]["path"])
            cutout = dataset_from_source(sources[jobs[-1][0]])
            result["predict_one_ms"] = classify_one_ms(last, cutout.images[0])
            result["upload_classify_ms"] = upload_classify_ms(last, cutout.images[0], cutout.bands,
                                                              cutout.pixel_scale_arcsec)
    result["train_s"] = round(time.perf_counter() - started, 1)
    return result


def _downstream_job(source: dict, config: SSLConfig, pretext_folder: str | None, runs_root: str) -> dict:
    """One downstream run of the bench (in a worker process or in this one): its scores."""
    pretext_run = _PRETEXT_RUNS.get(pretext_folder) if pretext_folder else None
    if pretext_folder and pretext_run is None:
        pretext_run = _PRETEXT_RUNS[pretext_folder] = SSLRun.load(pretext_folder)
    if source["params"]["name"] not in _LABELLED:
        _LABELLED.clear()  # one labelled set in memory per process
        _LABELLED[source["params"]["name"]] = dataset_from_source(source)
    run = fit(_LABELLED[source["params"]["name"]], config, runs_root=runs_root, data_source=source,
              pretext_run=pretext_run if config.uses_pretext_run else None)
    metrics = run.record.metrics
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "train_s": metrics["train_seconds"],
            "path": str(run.path), "n_labels": metrics["n_labels"]}


_PRETEXT_RUNS: dict = {}
_LABELLED: dict = {}


def _single_thread():
    torch.set_num_threads(1)


def _run_jobs(jobs: list[tuple], workers: int, report: Callable[[int, dict], None]) -> list[dict]:
    """Each job's outcome, in order; ``report(index, outcome)`` as each finishes. Worker processes
    are spawned, not forked: the parent has used torch's thread pool, which a forked child may
    inherit locked."""
    if workers <= 1 or len(jobs) <= 1:
        outcomes = []
        for index, job in enumerate(jobs):
            outcomes.append(_downstream_job(*job))
            report(index, outcomes[-1])
        return outcomes
    with ProcessPoolExecutor(max_workers=int(workers), mp_context=get_context("spawn"),
                             initializer=_single_thread) as pool:
        futures = {pool.submit(_downstream_job, *job): index for index, job in enumerate(jobs)}
        outcomes: list = [None] * len(jobs)
        for future in as_completed(futures):
            outcomes[futures[future]] = future.result()
            report(futures[future], outcomes[futures[future]])
        return outcomes


def summarise_runs(runs_root) -> dict:
    """The bench record rebuilt from the run folders a bench left in ``runs_root`` (e.g. one that
    was stopped before it wrote its JSON): per set, label count and scheme, mean and std over the
    finished runs, plus the pretext metrics."""
    records = [r for r in list_runs(runs_root) if r.method == "ssl" and r.status == "done"]
    result: dict = {"partial": True}
    pretext = [r for r in records if r.config.get("stage") == "pretext"]
    for record in pretext:
        objective = record.config.get("pretext")
        if objective == "magnitudes":
            for key in ("pretext_mae_per_band", "photometric_error_per_band", "photometry_minus_true_per_band"):
                result[key] = record.metrics[key]
        else:
            key = "both_mae_per_band" if objective == "both" else "contrastive_probe_mae_per_band"
            result[key] = record.metrics["pretext_mae_per_band"]
    groups: dict = {}
    pool = {}
    for record in records:
        if record.config.get("stage") != "downstream":
            continue
        name = (record.data.get("params") or {}).get("name", "file")
        n_labels = record.config.get("n_labels")
        key = "all" if n_labels is None else str(n_labels)
        pool[name] = max(pool.get(name, 0), record.data.get("n_labels", 0))
        scheme = bench_scheme(record.config["scheme"], (record.data.get("pretext_config") or {}).get("pretext"))
        scores = groups.setdefault(name, {}).setdefault(key, {}).setdefault(
            scheme, {"accuracy": [], "macro_f1": [], "train_s": []})
        scores["accuracy"].append(record.metrics["accuracy"])
        scores["macro_f1"].append(record.metrics["macro_f1"])
        scores["train_s"].append(record.metrics["train_seconds"])
    for name, counts in groups.items():
        result[name] = {}
        for key, schemes in counts.items():
            entry = {scheme: {metric: _summary(values) for metric, values in scores.items()}
                     for scheme, scores in schemes.items()}
            entry["best"] = max(schemes, key=lambda s: entry[s]["accuracy"]["mean"])
            result[name][key] = entry
    result["train_s"] = round(sum(r.metrics.get("train_seconds", 0) for r in records), 1)
    return result
