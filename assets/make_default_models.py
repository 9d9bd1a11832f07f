"""Remake the trained runs shipped with astrocore (``astrocore/shipped/<id>/``).

The app opens these on a first visit instead of training. Each is trained by the CLI, with a fixed
seed, on the project's own simulators, with the settings the page's Train tab offers by default
(the disentangler on the bench's APOGEE-like grid, 120 chemistries x 210 Teff, log g points =
25,200 spectra, so its Evaluate numbers are the bench's). Then each run is made small (big matrices
in float16 or int8, no checkpoints or logs; ``astrocore.methods.shipping``) and stored with a few held-out
objects (``sample.fits``) and their representation (``sample_check.json``), which
``tests/test_shipped.py`` recomputes with the current code.

    python assets/make_default_models.py                 # all of them; about 25 minutes on 2 idle cores
    python assets/make_default_models.py default-dann    # one
    python assets/make_default_models.py --repack default-disentangle-apogee  # shrink again, no training
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from astrocore.app.images import downstream_arguments, pretext_arguments
from astrocore.app.multimodal import training_arguments
from astrocore.app.nebulae import nebula_source, train_arguments
from astrocore.cli import main as astrocore_cli
from astrocore.data.dataset import Dataset
from astrocore.methods import shipping
from astrocore.methods.disentangle.evaluate import evaluate_run, reconstruction_check
from astrocore.methods.registry import load_run

SAMPLE_SIZE = 24
PRETEXT_ID = "default-ssl-pretext"
# Run id -> the ``astrocore train`` arguments (method first). The SSL classifier starts from the
# shipped pretext network, so it comes after it.
RECIPES = {
    "default-disentangle-apogee": ["disentangle", "--data", "apogee", "--n-stars", "120", "--data-seed", "0",
                                   "--preset", "fast", "--mode", "mdat", "--conditional", "teff,logg",
                                   "--seed", "0"],
    "default-dann": ["dann", *map(str, train_arguments(nebula_source(), "dann", 0.1, 25))],
    "default-batmm": ["batmm", *training_arguments(4000, 15.0, 0, 0, "fast")],
    PRETEXT_ID: ["ssl", *pretext_arguments(4000, "magnitudes", 30)],
    "default-ssl-classifier": ["ssl", *downstream_arguments("star_galaxy_quasar", "frozen_pretext", 100,
                                                            str(shipping.SHIPPED_DIR / PRETEXT_ID))],
}


def disentangler_extras(run, sample) -> dict:
    """The disentangler's Evaluate numbers on held-out chemistries, and its reconstruction of the
    sample (which the first visit's Generate view opens)."""
    evaluation = evaluate_run(run, max_objects=4000)
    (Path(run.path) / "evaluation.json").write_text(json.dumps({"run": run.id, **evaluation}, indent=2))
    (Path(run.path) / "sample_metrics.json").write_text(json.dumps(reconstruction_check(run, sample), indent=2))
    return {k: evaluation[k] for k in ("r2", "r2_knn", "recon_mse") if k in evaluation}


def make(run_id: str, scratch: Path) -> dict:
    """Train ``run_id``'s recipe in ``scratch``, then :func:`finish` it."""
    arguments = ["train", *RECIPES[run_id], "--out", str(scratch), "--run-id", run_id]
    print("astrocore " + " ".join(arguments), file=sys.stderr)
    status = astrocore_cli(arguments)
    if status:
        raise SystemExit(f"training {run_id} failed with status {status}")
    return finish(scratch / run_id)


def repack(run_id: str, scratch: Path) -> dict:
    """:func:`finish` the installed shipped run again, without training: for a change to how runs
    are made small (the numbers stored with it are measured again on the new weights)."""
    folder = shipping.materialise(shipping.SHIPPED_DIR / run_id, scratch)
    return finish(folder, sample=Dataset.load(folder / "sample.fits"))


def finish(folder: Path, sample: Dataset | None = None) -> dict:
    """Shrink a finished run folder, measure the shrunk model as users will load it on its
    held-out sample (and, for the disentangler, its Evaluate numbers), split its weights into
    files under 5 MiB and install it in ``astrocore/shipped/``."""
    shipping.shrink_run_folder(folder)
    with tempfile.TemporaryDirectory() as loadable:
        run = load_run(shipping.materialise(folder, loadable))  # the weights as installed, from here on
        if sample is None:
            sample = shipping.held_out_sample(run, run.dataset(), SAMPLE_SIZE)
        sample = sample.subset(np.arange(len(sample)))  # in memory: the file it came from is rewritten
        shipping.write_sample(run, sample)
        summary = disentangler_extras(run, sample) if run.record.method == "disentangle" else {}
        for name in ("sample.fits", "sample_check.json", "evaluation.json", "sample_metrics.json"):
            if (Path(run.path) / name).exists():
                shutil.copy2(Path(run.path) / name, folder / name)
    shipping.split_weights(folder)  # files under 5 MiB in the repository; joined again on install
    shipping.install(folder)
    return {"run": folder.name, **summary}


def main(arguments: list[str]) -> int:
    again = "--repack" in arguments
    names = [name for name in arguments if name != "--repack"]
    unknown = sorted(set(names) - set(RECIPES))
    if unknown:
        print(f"unknown shipped runs {unknown}; known: {', '.join(RECIPES)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        for run_id in names or list(RECIPES):
            print(json.dumps((repack if again else make)(run_id, Path(scratch)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
