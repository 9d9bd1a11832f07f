"""BATMM's sub-commands: ``data make bhb``, ``train batmm``, ``classify star``, ``bench batmm``."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ...cliutil import overrides, positive_int, progress_bar, write_json
from ...data.dataset import Dataset
from ...data.simulators.bhb import simulate_bhb
from ...training import TrainingCancelled
from .bench import bench_batmm
from .config import PRESETS, BatmmConfig
from .fit import fit
from .predict import classify_files


def cmd_data_make(args) -> int:
    dataset = simulate_bhb(args.n, seed=args.seed, snr=args.snr, image_size=args.image_size)
    path = dataset.save(args.out)
    n_bhb = int(dataset.labels["label"].sum())
    print(f"wrote {len(dataset)} stars ({n_bhb} BHB) with spectra of {dataset.spectra.shape[1]} pixels "
          f"(4000-9000 Angstrom) and ugriz cutouts of {dataset.images.shape[2]} x {dataset.images.shape[3]} "
          f"pixels to {path}")
    return 0


def load_training_data(args):
    """(dataset, source) from --data PATH (a saved Dataset) or the simulator (--n, --data-seed, --snr)."""
    if args.data:
        path = Path(args.data).resolve()
        return Dataset.load(path), {"kind": "file", "path": str(path)}
    params = {"n_stars": args.n, "seed": args.data_seed, "snr": args.snr, "image_size": args.image_size}
    return simulate_bhb(**params), {"kind": "simulator", "generator": "bhb", "params": params}


def cmd_train(args) -> int:
    config = BatmmConfig.preset(args.preset, **({"seed": args.seed} if args.seed is not None else {}),
                                **overrides(args.set))
    dataset, source = load_training_data(args)
    bar, update = progress_bar("batmm")
    stop_file = Path(args.out) / args.run_id / "CANCEL" if args.run_id else None
    try:
        run = fit(dataset, config, progress=update, runs_root=args.out, run_id=args.run_id, data_source=source,
                  should_stop=(lambda: stop_file.exists()) if stop_file else None, resume=args.resume)
    except TrainingCancelled as error:
        print(f"astrocore: training cancelled ({error}); resume with --resume --run-id {args.run_id}", file=sys.stderr)
        return 3
    finally:
        bar.close()
    metrics = run.record.metrics
    print(json.dumps({"run": run.id, "path": str(run.path), "train_seconds": metrics["train_seconds"],
                      "test": {k: metrics["test"][k] for k in ("f1", "precision", "recall", "roc_auc")},
                      "spectrum_only_f1": metrics["spectrum_only_attention"]["f1"],
                      "image_only_f1": metrics["image_only"]["f1"], "band_weights": metrics["band_weights"],
                      "segment_weights": metrics["segment_weights"]}, indent=2))
    return 0


def cmd_classify(args) -> int:
    started = time.perf_counter()
    result = classify_files(args.run, args.spectrum, args.image)
    result["seconds"] = time.perf_counter() - started
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"P(BHB) = {result['probability']:.3f}  ({'BHB' if result['probability'] >= 0.5 else 'not BHB'})")
        if result.get("band_weights"):
            print("band weights:    " + "  ".join(f"{b}={w:.2f}" for b, w in result["band_weights"].items()))
        if result.get("segment_weights"):
            print("segment weights: " + "  ".join(f"{s['from_aa']:.0f}-{s['to_aa']:.0f}A={s['weight']:.2f}"
                                                   for s in result["segment_weights"]))
    return 0


def cmd_bench(args) -> int:
    results = bench_batmm(n_stars=args.n, seeds=args.seeds, preset=args.preset, snr=args.snr,
                          progress=lambda line: print(line, file=sys.stderr, flush=True), **overrides(args.set))
    print(write_json(args.json, results))
    return 0


def add_commands(groups) -> None:
    """Register the BATMM sub-commands (see :mod:`astrocore.methods.spec`)."""
    make = groups["data_make"].add_parser("bhb", help="BHB stars vs blue stragglers / A stars: SDSS-like spectra + "
                                                      "ugriz cutouts from one SED per star")
    make.add_argument("--n", "--n-stars", dest="n", type=positive_int, default=4000, help="number of stars")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--snr", type=float, default=15.0, help="S/N per pixel at 4000-5500 A of a g = 18 star")
    make.add_argument("--image-size", type=positive_int, default=32, help="cutout side in 0.396 arcsec pixels")
    make.add_argument("--out", required=True, help="output .fits file or folder")
    make.set_defaults(handler=cmd_data_make)

    train = groups["train"].add_parser("batmm", help="BATMM: BHB stars from a spectrum and a ugriz cutout")
    train.add_argument("--data", default=None, help="a saved BHB Dataset (FITS or folder); default: simulate")
    train.add_argument("--n", "--n-stars", dest="n", type=positive_int, default=4000, help="simulated stars")
    train.add_argument("--data-seed", type=int, default=0)
    train.add_argument("--snr", type=float, default=15.0)
    train.add_argument("--image-size", type=positive_int, default=32)
    train.add_argument("--preset", default="fast", choices=list(PRESETS))
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override config fields, e.g. fusion_layers=4")
    train.add_argument("--out", default="runs", help="runs folder")
    train.add_argument("--run-id", default=None, help="name the run (create a CANCEL file in it to stop)")
    train.add_argument("--resume", action="store_true", help="continue --run-id from its checkpoints")
    train.set_defaults(handler=cmd_train)

    classify = groups["classify"].add_parser("star", help="BHB probability of one star (spectrum + ugriz cutout)")
    classify.add_argument("--spectrum", default=None, help="SDSS spec / spec-lite FITS, or CSV (wavelength, flux)")
    classify.add_argument("--image", nargs="*", default=None,
                          help="ugriz cutout: one multi-extension FITS, or five FITS files (u g r i z)")
    classify.add_argument("--run", required=True, help="a finished BATMM run folder")
    classify.add_argument("--json", action="store_true")
    classify.set_defaults(handler=cmd_classify)

    bench = groups["bench"].add_parser("batmm", help="BATMM vs its baselines and ablations over seeds")
    bench.add_argument("--seeds", type=positive_int, default=5)
    bench.add_argument("--n", type=positive_int, default=4000)
    bench.add_argument("--snr", type=float, default=15.0)
    bench.add_argument("--preset", default="fast", choices=list(PRESETS))
    bench.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override config fields, e.g. joint_epochs=3")
    bench.add_argument("--json", default=None)
    bench.set_defaults(handler=cmd_bench)
