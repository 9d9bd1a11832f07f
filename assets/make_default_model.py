"""Remake the disentangler shipped with astrocore (``astrocore/shipped/default-disentangle-apogee``).

The app opens it on a first visit instead of training one. It is the ``fast`` mdAT recipe trained
with a fixed seed on the bench's APOGEE-like grid (120 chemistries x 210 Teff, log g points =
25,200 spectra), so its Evaluate numbers are the bench's. Weights are stored as float16 (half the
size; the decoded flux changes by < 1e-4), with the full evaluation on held-out chemistries
(``evaluation.json``) and a small sample of held-out spectra (``sample.fits``) on which
``tests/test_shipped.py`` checks that the current code reproduces the stored numbers.

    python assets/make_default_model.py          # about 5 minutes on 2 idle CPU cores
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from safetensors.torch import load_file, save_file

from astrocore.data import load_source
from astrocore.methods.disentangle import DisentanglerConfig, fit
from astrocore.methods.disentangle.evaluate import evaluate_run, reconstruction_check
from astrocore.methods.registry import load_run

RUN_ID = "default-disentangle-apogee"
N_CHEMISTRIES = int(sys.argv[2]) if len(sys.argv) > 2 else 120  # the bench's grid: fewer leave the probes too few chemistries to learn [alpha/Fe]
SAMPLE_SIZE = 24
TARGET = Path(__file__).resolve().parents[1] / "astrocore" / "shipped" / RUN_ID


def main(target: Path = TARGET) -> int:
    dataset, source = load_source("apogee", n_stars=N_CHEMISTRIES, seed=0)
    config = DisentanglerConfig.preset("fast", mode="mdat", conditional=("teff", "logg"), seed=0)
    with tempfile.TemporaryDirectory() as scratch:
        run = fit(dataset, config, runs_root=scratch, run_id=RUN_ID, data_source=source,
                  progress=lambda step, total, metrics: print(f"\r{step}/{total}", end="", file=sys.stderr))
        print(file=sys.stderr)
        folder = Path(scratch) / RUN_ID
        # The big weight matrices in float16 (the shipped folder stays small); buffers such as the
        # wavelength axis and the flux scaling keep float32, where float16 would lose Angstroms.
        tensors = load_file(str(folder / "weights.safetensors"))
        save_file({k: (v.half() if v.is_floating_point() and v.ndim == 2 and v.numel() > 65536 else v)
                   for k, v in tensors.items()}, str(folder / "weights.safetensors"))
        run = load_run(folder)
        evaluation = evaluate_run(run, max_objects=4000)
        (folder / "evaluation.json").write_text(json.dumps({"run": RUN_ID, **evaluation}, indent=2))
        # A few held-out spectra, spread over the grid, for the first visit's Generate view and the test.
        split = run.arrays()["split"]
        held_out = np.flatnonzero(split == 2)
        rows = held_out[np.linspace(0, len(held_out) - 1, SAMPLE_SIZE).astype(int)]
        sample = dataset.subset(rows)
        sample.provenance = {**dataset.provenance, "sample_of": RUN_ID, "rows": rows.tolist()}
        sample.save(folder / "sample.fits")
        (folder / "sample_metrics.json").write_text(json.dumps(reconstruction_check(run, sample), indent=2))
        for name in ("checkpoint.safetensors", "checkpoint.json", "progress.json", "history.jsonl"):
            (folder / name).unlink(missing_ok=True)
        for child in list(folder.iterdir()):
            if child.is_dir():
                shutil.rmtree(child)
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(folder, target)
    print(json.dumps({k: evaluation[k] for k in ("r2", "r2_knn", "recon_mse") if k in evaluation}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else TARGET))
