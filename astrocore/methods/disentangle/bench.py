"""Benchmarks whose JSON output the issues' numbers refer to (``astrocore bench ...``)."""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import hashlib

import numpy as np

from ...data import dataset_from_source, load_source, renderer_for
from ...evaluation import MAX_KNN_OBJECTS, PROBE_KEYS, PROBE_LABELS, representation_scores, split_index
from .evaluate import evaluate_disentangler
from .config import MODES, DisentanglerConfig, preset_for_data
from .choose_latent import fit_run
from .emulator import EmulatorConfig, emulation_mse, estimated_label_mse, label_columns

# What the bench keeps of each run's evaluation, per mode.
RUN_METRICS = (*PROBE_KEYS, "recon_mse", "recon_rms", "recon_mse_by_cp", "twins_top10", "gen_rmse", "gen_rmse_extrap", "decode_ms")
SHARED_PAYNE = Path(__file__).resolve().parents[4] / "shared" / "data" / "payne" / "nn_apogee_4label_unnormalized.npz"

# Data sizes per preset: (source name, n_stars or fingerprints, conditional parameters[, config
# overrides for every mode]). The fast APOGEE-like grid has 120 chemistries: with 60, the probes see
# too few (about 40 in training) to learn a weak label like [alpha/Fe] from any representation, the
# unconstrained one included. The RVS-like set is 4x smaller than the APOGEE-like grid, so it gets
# more epochs for about the same number of optimiser steps (10 epochs leave its decoder underfit).
# With all four labels conditioned, nothing else varies among its noise-free spectra: the latent is
# sized to that (1, the smallest; with 6 the normalised latent must carry a function of the labels).
# The same rule sizes the other latents to the chemistry left unconditioned: 12 abundance labels in
# the APOGEE-like grid (the preset), [Fe/H] and [alpha/Fe] in the Payne 4-label grid.
# ``payne_random`` is the same emulator rendered as a survey sees stars: every spectrum its own
# chemistry at its own random Teff (3600-6000 K) and log g (0.4-2.6), the giant ranges of the
# gridded set, and as many spectra as it has; with no fingerprint column it has only the no-twin
# track, and its probes are scored on held-out stars.
GRIDS = {
    "fast": {
        "apogee": ("apogee", 120, ("teff", "logg")),
        "rvs4": ("rvs", 6000, ("teff", "logg", "feh", "afe"), {"epochs": 60, "latent_dim": 1}),
        "payne": (f"payne:{SHARED_PAYNE}", 60, ("teff", "logg"), {"latent_dim": 2}),
        "payne_random": (f"payne-random:{SHARED_PAYNE}", 9360, ("teff", "logg")),
    },
    "paper": {
        "apogee": ("apogee", 200, ("teff", "logg")),
        "rvs4": ("rvs", 38000, ("teff", "logg", "feh", "afe")),
        "payne": (f"payne:{SHARED_PAYNE}", 200, ("teff", "logg")),
        "payne_random": (f"payne-random:{SHARED_PAYNE}", 31200, ("teff", "logg")),
    },
}
# The grids that get the no-twin track (the twin track of payne_random cannot run).
NO_TWIN_GRIDS = ("apogee", "payne", "payne_random")
# The modes of the no-twin track: the unconstrained baseline and the disentangler.
NO_TWIN_MODES = ("noat", "mdat")
PAYNE_RANDOM_RANGES = {"teff": [3600.0, 6000.0], "logg": [0.4, 2.6]}


def load_grid(source_name: str, n_stars: int, seed: int = 0):
    """(dataset, source) of a bench grid; ``payne-random:PATH`` renders ``n_stars`` spectra at
    uniform random labels (Teff and log g in :data:`PAYNE_RANDOM_RANGES`) with no fingerprint column."""
    if source_name.startswith("payne-random:"):
        path = str(Path(source_name[len("payne-random:"):]).resolve())
        source = {"kind": "simulator", "generator": "payne",
                  "params": {"path": path, "seed": int(seed), "n_random": int(n_stars), **PAYNE_RANDOM_RANGES}}
        return dataset_from_source(source), source
    return load_source(source_name, n_stars=n_stars, seed=seed)


def _grid(preset: str, name: str) -> tuple[str, int, tuple[str, ...], dict]:
    """(source name, size, conditional parameters, config overrides) of one bench grid."""
    source_name, n_stars, conditional, *overrides = GRIDS[preset][name]
    return source_name, n_stars, conditional, dict(overrides[0]) if overrides else {}


def remembered(render):
    """``render`` (labels -> true spectra) remembering its answers: every mode of a grid asks for
    the true spectra of the same held-out stars at the same targets, and the simulator is slow."""
    if render is None:
        return None
    answers: dict[str, np.ndarray] = {}

    def render_once(labels):
        digest = hashlib.sha256()
        for name in sorted(labels.keys() if isinstance(labels, dict) else labels.colnames):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(np.asarray(labels[name], dtype=np.float64)).tobytes())
        key = digest.hexdigest()
        if key not in answers:
            answers[key] = render(labels)
        return answers[key]

    return render_once


# The no-twin track's second unconstrained reference (recorded under this name beside "noat").
SAME_LATENT_NOAT = "noat_same_latent"


def _modes_to_run(modes, twins: bool) -> tuple[str, ...]:
    """The modes of one grid entry: the no-twin track adds noAT at mdat's kept latent size."""
    modes = tuple(modes)
    if not twins and "mdat" in modes and "noat" in modes:
        return (*modes, SAME_LATENT_NOAT)
    return modes


def _config_mode(mode: str) -> str:
    """The config mode of a bench mode name."""
    return "noat" if mode == SAME_LATENT_NOAT else mode


def _bench_grid(name: str, preset: str, runs_root: Path, modes=MODES, recipe_overrides=None,
                twins: bool = True, references: bool = True) -> dict:
    """One grid's entry. ``twins=False`` is the no-twin track: the fingerprint column is hidden
    from training (``use_twins=False``; the split still keeps chemistries together), mdat uses
    the preset for data without fingerprints and no grid-specific latent size.
    ``references=False`` skips the label emulators (the twin track's, on the same split)."""
    source_name, n_stars, conditional, grid_overrides = _grid(preset, name)
    started = time.perf_counter()
    dataset, source = load_grid(source_name, n_stars=n_stars, seed=0)
    render = remembered(renderer_for(dataset))
    if not twins:
        preset = preset_for_data(preset, ())  # the preset for data without fingerprints
        grid_overrides = {"use_twins": False}
    result: dict = {
        "n_spectra": len(dataset), "n_pixels": dataset.n_pixels, "conditional": list(conditional),
        "data_s": round(time.perf_counter() - started, 2),
        **{key: {} for key in (*RUN_METRICS, "train_s")},
    }
    runs = {}
    for mode in _modes_to_run(modes, twins):
        overrides = {**grid_overrides, **(recipe_overrides or {})}
        if mode == "noat" and not recipe_overrides:
            # The unconstrained baseline: the paper's 25 dimensions, linear (nothing normalises or
            # bounds them), no adversary, no twin term.
            overrides.update(latent_dim=25, latent_candidates=(), latent_activation="none", twin_weight=0.0)
        if mode == SAME_LATENT_NOAT:
            # The same network as the kept mdat (its validated latent size, batch-normalised
            # latent, schedule) without the adversary and dependence penalty: what removing Teff
            # and log g costs the reconstruction, apart from the latent's size.
            overrides.update(latent_dim=runs["mdat"].config.latent_dim, latent_candidates=())
        config = DisentanglerConfig.preset(preset, mode=_config_mode(mode), conditional=conditional, **overrides)
        started = time.perf_counter()
        run = fit_run(dataset, config, runs_root=runs_root, data_source=source)
        result["train_s"][mode] = round(time.perf_counter() - started, 2)
        result.setdefault("twins", {})[mode] = run.record.metrics["twins"]
        if "latent_choice" in run.record.metrics:
            result.setdefault("latent_choice", {})[mode] = run.record.metrics["latent_choice"]
        metrics = evaluate_disentangler(run, dataset, render=render)
        for key in RUN_METRICS:
            if key in metrics:
                result[key][mode] = metrics[key]
        runs[mode] = run
    # The input spectra themselves, on the same held-out objects.
    any_run = next(iter(runs.values()))
    test, train = split_index(any_run, dataset, 2), split_index(any_run, dataset, 0, MAX_KNN_OBJECTS)
    x_scores = representation_scores(dataset.spectra[train], dataset.labels[train],
                                     dataset.spectra[test], dataset.labels[test], PROBE_LABELS)
    for key in PROBE_KEYS:
        result[key]["X"] = x_scores[key]
    if "twins_top10" in x_scores:
        result["twins_top10"]["X"] = x_scores["twins_top10"]
    if not twins:
        chemistry = [name for name in label_columns(dataset) if name not in conditional]
        if chemistry:
            # The probes' reading of a perfect chemistry-only representation: the true abundance
            # labels themselves, on the same objects. With a few dozen training chemistries the k-NN
            # probe of any such representation is a nearest-chemistry lookup, and what it reads
            # depends on how the representation weighs the abundances.
            table = dataset.labels
            truth = np.stack([np.asarray(table[name], np.float64) for name in chemistry], axis=1)
            truth_scores = representation_scores(truth[train], table[train], truth[test], table[test], PROBE_LABELS)
            for key in PROBE_KEYS:
                result[key]["true_chemistry"] = truth_scores[key]
            result["true_chemistry_labels"] = chemistry
    if not recipe_overrides and references:
        # The reference for disentangled reconstructions: a decoder given every true label, on
        # the same split and schedule (every mode shares them).
        split = any_run.arrays()["split"]
        emulator_config = EmulatorConfig(epochs=config.epochs, batch_size=config.batch_size, seed=config.seed)
        emulator = emulation_mse(dataset, split, test, config=emulator_config)
        result["recon_mse"]["labels"] = emulator["test_mse"]
        result["train_s"]["labels"] = emulator["train_s"]
        if set(label_columns(dataset)) - set(conditional):
            # The reference for a latent that holds only what the conditional parameters leave:
            # the same decoder given those labels as a supervised (ridge) reader reads them from
            # the spectra of unseen stars.
            estimated = estimated_label_mse(dataset, split, conditional, test, config=emulator_config)
            result["recon_mse"]["labels_estimated"] = estimated["test_mse"]
            result["train_s"]["labels_estimated"] = estimated["train_s"]
            result["estimate_r2"] = estimated["estimate_r2"]
    result = {key: value for key, value in result.items() if value != {}}
    result["runs"] = {mode: run.id for mode, run in runs.items()}
    if not twins:
        result["preset"] = preset
    return result


def bench_disentangle(preset: str = "fast", grids=("apogee", "rvs4", "payne"), runs_root=None,
                      paper_recipe: bool = True, tracks=("twins", "no_twins")) -> dict:
    """The GANDALF comparison (X / noat / at / mdat) on each grid, plus the paper-faithful recipe
    for mdat on the APOGEE-like grid (track ``twins``); and for the grids of
    :data:`NO_TWIN_GRIDS`, X / noat / mdat with the fingerprint column hidden from training under
    ``"no_twins"`` (track ``no_twins``), plus noat at mdat's kept latent size (``noat_same_latent``)
    and the probes on the true abundance labels (``true_chemistry``). Returns the JSON-able dict
    described in the issues."""
    started = time.perf_counter()
    temporary = None
    if runs_root is None:
        temporary = tempfile.TemporaryDirectory(prefix="astrocore-bench-")
        runs_root = Path(temporary.name)
    results: dict = {"preset": preset}
    for name in grids:
        if name.startswith("payne") and not SHARED_PAYNE.exists():
            results[name] = {"skipped": f"{SHARED_PAYNE} not found"}
            continue
        with_twins = "twins" in tracks and name != "payne_random"
        results[name] = _bench_grid(name, preset, Path(runs_root)) if with_twins else {}
        if "no_twins" in tracks and name in NO_TWIN_GRIDS:
            # The label emulators would repeat the twin track's (same split); payne_random has none.
            results[name]["no_twins"] = _bench_grid(name, preset, Path(runs_root), modes=NO_TWIN_MODES,
                                                    twins=False, references=name == "payne_random")
        if name == "payne_random":
            results[name]["note"] = "no fingerprint column (each spectrum its own chemistry): no-twin track only"
        if name == "apogee" and paper_recipe and preset == "fast" and with_twins:
            faithful = _bench_grid(name, "fast", Path(runs_root), modes=("mdat",),
                                   recipe_overrides=_paper_recipe_fields())
            results[name]["paper_recipe"] = {k: v for k, v in faithful.items() if k in
                                             (*PROBE_KEYS, "recon_mse", "gen_rmse", "train_s")}
    results["total_s"] = round(time.perf_counter() - started, 1)
    if temporary is not None:
        temporary.cleanup()
    return results


def _paper_recipe_fields() -> dict:
    """The paper's recipe (all config fields of the ``paper`` preset but the schedule)."""
    paper = DisentanglerConfig.preset("paper-fast")
    keep = ("latent_dim", "latent_activation", "scaling", "adversary", "objective", "lambdas",
            "lambda_warmup_epochs", "adversary_steps", "twin_weight", "twin_latent_factor", "decoder_refit_epochs",
            "twin_code_steps", "cp_features", "conditioning", "encoder", "activation", "lr_schedule")
    return {key: getattr(paper, key) for key in keep}


def sweep_points(lambdas=(0.01, 0.1, 1.0), adversary_steps=(1, 5), twin_latent_factors=(0.0,)) -> list[dict]:
    """The sweep's config overrides: lambda x adversary steps at the preset's twin setting, then the
    twin latent-match factor at the preset's lambda (0 switches the twin term off; the preset's own factor
    is among the first points)."""
    points = [{"lambdas": (value,), "adversary_steps": steps} for steps in adversary_steps for value in lambdas]
    for factor in twin_latent_factors:
        points.append({"twin_weight": 0.0} if factor == 0 else {"twin_latent_factor": factor})
    return points


def sweep_disentangle(preset: str = "fast", points=None, runs_root=None, progress=print) -> list[dict]:
    """The trade-off curve on the APOGEE-like grid: mdat under each override of
    :func:`sweep_points`, with the conditioned R^2 (MLP, k-NN and polynomial ridge) against
    [Fe/H] and [alpha/Fe] R^2, reconstruction and generation error."""
    source_name, n_stars, conditional, grid_overrides = _grid(preset, "apogee")
    dataset, source = load_source(source_name, n_stars=n_stars, seed=0)
    render = remembered(renderer_for(dataset))
    temporary = tempfile.TemporaryDirectory(prefix="astrocore-sweep-") if runs_root is None else None
    root = Path(temporary.name if temporary else runs_root)
    results = []
    for overrides in points or sweep_points():
        config = DisentanglerConfig.preset(preset, mode="mdat", conditional=conditional,
                                           **{**grid_overrides, **overrides})
        started = time.perf_counter()
        run = fit_run(dataset, config, runs_root=root, data_source=source)
        metrics = evaluate_disentangler(run, dataset, render=render)
        point = {"lambda": config.lambdas[0], "adversary_steps": config.adversary_steps,
                 "twin_weight": config.twin_weight, "twin_latent_factor": config.twin_latent_factor,
                 "train_s": round(time.perf_counter() - started, 1),
                 **{key: metrics.get(key) for key in (*PROBE_KEYS, "recon_mse", "gen_rmse")}}
        results.append(point)
        if progress is not None:
            progress(json.dumps(point))
    if temporary is not None:
        temporary.cleanup()
    return results
