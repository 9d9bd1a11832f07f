"""Out-of-core benchmark: train the disentangler for one epoch on a ~5 GB on-disk store and encode
it, with peak memory (RSS) and throughput, against the in-memory path on a ~1 GB subset.

    nice -n 10 python benchmarks/out_of_core.py [--folder /tmp/astrocore_ooc] [--gb 5] [--json benchmarks/out_of_core.json]

The set: APOGEE-like spectra (7214 pixels, float32): 4 simulated chemistries x 210 grid points,
repeated with fresh Gaussian noise (sigma 0.01) until the store holds ``--gb`` GB; each repeat is a
new fingerprint, so twins exist. It is written once (StoreWriter, one shard of 8192 rows in memory
at a time) and reused. Each measured step runs in its own process; its peak RSS is
``getrusage(RUSAGE_SELF).ru_maxrss + getrusage(RUSAGE_CHILDREN).ru_maxrss``. The model is the
"fast" preset with smaller decoder layers and no post-training phases, so one epoch takes minutes
on a CPU; both paths train the same model with the same settings. Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from astrocore.data import load_source
from astrocore.data.dataset import Dataset
from astrocore.data.store import StoreWriter
from astrocore.methods.disentangle.config import DisentanglerConfig
from astrocore.methods.disentangle.fit import fit

SETTINGS = dict(epochs=1, batch_size=256, decoder_refit_epochs=0, twin_code_steps=0, adversary_steps=1,
                decoder_hidden=(64, 128), patience=None)


def peak_rss_mb() -> float:
    """Peak RSS of this process plus that of its largest waited-for child, in MB (Linux: ru_maxrss
    is in kilobytes). A child forked at import time shares this process's pages, so the sum
    over-counts; ``rss_parts`` gives the two terms."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024


def rss_parts() -> dict:
    return {"self_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "children_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}


def make_set(path: Path, gigabytes: float, seed: int = 0) -> dict:
    """The APOGEE-like store of ``gigabytes`` GB at ``path`` (made once)."""
    if (path / "store.json").exists():
        return {"reused": True}
    started = time.perf_counter()
    base, _ = load_source("apogee", n_stars=4, seed=seed)
    n_rows = int(gigabytes * 1e9 / (base.n_pixels * 4))
    rng = np.random.default_rng(seed)
    writer = StoreWriter(path, rows_per_shard=8192)
    labels = []
    for copy, start in enumerate(range(0, n_rows, len(base))):
        rows = min(len(base), n_rows - start)
        noisy = base.spectra[:rows] + rng.normal(0, 0.01, size=(rows, base.n_pixels)).astype(np.float32)
        writer.append(spectra=noisy)
        part = base.labels[:rows].copy()
        part["id"] = np.arange(start, start + rows)
        part["fingerprint"] = np.asarray(part["fingerprint"]) + 4 * copy
        labels.append(part)
    from astropy.table import vstack

    vstack(labels).write(writer.folder / "labels.ecsv", format="ascii.ecsv")
    np.save(writer.folder / "wavelength.npy", base.wavelength)
    (writer.folder / "provenance.json").write_text(json.dumps({"generator": "benchmark", "noise": 0.01}))
    writer.close()
    return {"reused": False, "seconds": round(time.perf_counter() - started, 1)}


def train_step(data: str, rows: int | None, runs: str, run_id: str) -> dict:
    """One epoch of the disentangler on the store (``rows`` None) or on its first ``rows`` in memory."""
    dataset = Dataset.load(data)
    path = "disk"
    if rows is not None:
        dataset = dataset.subset(np.arange(rows))
        dataset = Dataset(np.asarray(dataset.spectra), dataset.wavelength, dataset.labels, None, dataset.provenance)
        path = "memory"
    loaded = peak_rss_mb()
    config = DisentanglerConfig.preset("fast", **SETTINGS)
    started = time.perf_counter()
    run = fit(dataset, config, runs_root=runs, run_id=run_id)
    total = time.perf_counter() - started
    n_train = int((run.arrays()["split"] == 0).sum())
    epoch = float(run.record.history["seconds"])
    return {"path": path, "n_spectra": len(dataset), "gb": round(len(dataset) * dataset.n_pixels * 4 / 1e9, 2),
            "n_train": n_train, "epoch_seconds": round(epoch, 1), "train_spectra_per_s": round(n_train / epoch, 1),
            "fit_seconds": round(total, 1), "fit_seconds_besides_the_epoch": round(total - epoch, 1),
            "peak_rss_mb_after_loading": round(loaded, 1), "peak_rss_mb": round(peak_rss_mb(), 1), **rss_parts()}


def encode_step(run: str, data: str, out: str) -> dict:
    started = time.perf_counter()
    command = [sys.executable, "-m", "astrocore", "encode", run, "--data", data, "--out", out]
    subprocess.run(command, check=True, capture_output=True)
    seconds = time.perf_counter() - started
    n = len(Dataset.load(data))
    return {"command": " ".join(["astrocore", *command[3:]]), "n_spectra": n, "seconds": round(seconds, 1),
            "spectra_per_s": round(n / seconds, 1), "peak_rss_mb": round(peak_rss_mb(), 1), **rss_parts()}


def in_subprocess(*arguments) -> dict:
    result = subprocess.run([sys.executable, __file__, *arguments], check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", default="/tmp/astrocore_ooc")
    parser.add_argument("--gb", type=float, default=5.0)
    parser.add_argument("--memory-gb", type=float, default=1.0)
    parser.add_argument("--json", default=None)
    parser.add_argument("--step", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = Path(args.folder)
    data, runs = folder / f"apogee_{args.gb:g}gb.shards", folder / "runs"
    if args.step == "train":
        print(json.dumps(train_step(str(data), args.rows, str(runs), "memory" if args.rows else "disk")))
        return
    if args.step == "encode":
        print(json.dumps(encode_step(str(runs / "disk"), str(data), str(folder / "latent.shards"))))
        return
    folder.mkdir(parents=True, exist_ok=True)
    made = make_set(data, args.gb)
    n_pixels = 7214
    memory_rows = int(args.memory_gb * 1e9 / (n_pixels * 4))
    common = ["--folder", str(folder), "--gb", f"{args.gb:g}"]
    disk = in_subprocess(*common, "--step", "train")
    encode = in_subprocess(*common, "--step", "encode")
    memory = in_subprocess(*common, "--step", "train", "--rows", str(memory_rows))
    result = {
        "set": {"path": str(data), "gb_on_disk": round(sum(p.stat().st_size for p in data.rglob("*.npy")) / 1e9, 2),
                "pixels": n_pixels, "made": made},
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in SETTINGS.items()},
        "train_on_disk": disk, "encode_on_disk": encode, "train_in_memory_subset": memory,
        "train_throughput_disk_over_memory": round(disk["train_spectra_per_s"] / memory["train_spectra_per_s"], 3),
        "peak_rss_under_2gb": max(disk["peak_rss_mb"], encode["peak_rss_mb"]) < 2048,
        "command": "nice -n 10 python benchmarks/out_of_core.py --json benchmarks/out_of_core.json",
    }
    text = json.dumps(result, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
