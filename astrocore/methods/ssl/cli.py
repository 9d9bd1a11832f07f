"""``astrocore data make cutouts``, ``train ssl``, ``classify image`` and ``bench ssl``."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ...cliutil import overrides, positive_int, progress_bar, write_json
from ...data.dataset import DataError
from ...data.simulators.cutouts import LABEL_SETS, label_set, simulate_cutouts
from ...data.simulators.cutouts_sed import SURVEYS
from ...training import TrainingCancelled
from ..registry import load_run
from .bench import bench_ssl, summarise_runs
from .classify import classify_files
from .config import PRESETS, PRETEXT_MIN_STEPS, PRETEXT_OBJECTIVES, SCHEMES, SSLConfig
from .data import dataset_from_source, file_source, label_set_source, pretext_source
from .fit import fit
from .run import SSLRun


def cmd_make(args) -> int:
    if args.label_set:
        dataset = label_set(args.label_set, args.n_objects, args.survey, args.size, args.seed)
    else:
        dataset = simulate_cutouts(args.n_objects, args.survey, args.size, args.seed, r_range=(args.r_min, args.r_max))
    path = dataset.save(args.out)
    print(f"wrote {len(dataset)} cutouts x {len(dataset.bands)} bands ({', '.join(dataset.bands)}) of "
          f"{args.size} x {args.size} pixels ({dataset.pixel_scale_arcsec} arcsec) to {path}")
    return 0


def _find_run(text: str, runs_root) -> SSLRun:
    path = Path(text)
    if not (path / "run.json").exists() and runs_root is not None:
        path = Path(runs_root) / text
    if not (path / "run.json").exists():
        raise SystemExit(f"astrocore: error: no run at {text!r} (give a run folder or an id under --out)")
    return load_run(path, method="ssl")  # a tampered or foreign folder: one clear error


def cmd_train(args) -> int:
    config = SSLConfig.preset(args.preset, stage=args.stage, pretext=args.pretext, scheme=args.scheme,
                              **({"epochs": args.epochs} if args.epochs else {}),
                              **({"seed": args.seed} if args.seed is not None else {}),
                              **({"n_labels": args.n_labels} if args.n_labels else {}), **overrides(args.set))
    if args.data not in ("simulate", ""):
        source = file_source(args.data)
    elif args.stage == "pretext":
        source = pretext_source(args.n_objects or 4000, args.survey, args.size, args.data_seed)
    else:
        source = label_set_source(args.label_set, args.n_objects or 3000, args.survey, args.size, args.data_seed)
    pretext_run = _find_run(args.pretext_run, args.out) if args.pretext_run else None
    try:
        dataset = dataset_from_source(source)
    except DataError as error:
        raise SystemExit(f"astrocore: error: {error}") from None
    bar, update = progress_bar(f"ssl {args.stage}", shown=("loss", "val_loss", "val_mae_mag", "val_accuracy"))
    stop_file = Path(args.out) / args.run_id / "CANCEL" if args.run_id else None
    try:
        run = fit(dataset, config, progress=update, runs_root=args.out, run_id=args.run_id, data_source=source,
                  should_stop=(lambda: stop_file.exists()) if stop_file else None, resume=args.resume,
                  pretext_run=pretext_run)
    except TrainingCancelled as error:
        print(f"astrocore: training cancelled ({error}); resume with --resume --run-id {args.run_id}", file=sys.stderr)
        return 3
    except DataError as error:
        raise SystemExit(f"astrocore: error: {error}") from None
    finally:
        bar.close()
    print(json.dumps({"run": run.id, "path": str(run.path), **run.record.metrics}, indent=2))
    return 0


def cmd_classify(args) -> int:
    run = _find_run(args.run, args.runs)
    try:
        table, errors = classify_files(run, args.files, hdu=args.hdu)
    except DataError as error:
        raise SystemExit(f"astrocore: error: {error}") from None
    for message in errors:
        print(f"astrocore: skipped {message}", file=sys.stderr)
    if table is None:
        return 2
    if args.json:
        print(json.dumps([dict(zip(table.colnames, [row[c].item() if hasattr(row[c], "item") else row[c]
                                                    for c in table.colnames])) for row in table], indent=2))
    else:
        table.pprint_all()
    if args.out:
        table.write(args.out, overwrite=True)
    return 0 if not errors else 1


def cmd_bench(args) -> int:
    if args.summarise:
        print(write_json(args.json, summarise_runs(args.summarise)))
        return 0
    results = bench_ssl(preset=args.preset, sets=args.sets.split(","),
                        **({"schemes": tuple(args.schemes.split(","))} if args.schemes else {}),
                        label_counts=[int(v) for v in args.labels.split(",")], seeds=args.seeds,
                        n_pretext=args.n_pretext, n_labelled=args.n_labelled, runs_root=args.runs,
                        progress=lambda line: print(line, file=sys.stderr, flush=True), main_set=args.main_set,
                        main_seeds=args.main_seeds,
                        main_label_counts=[int(v) for v in args.main_labels.split(",")] if args.main_labels else None,
                        pretext_epochs=args.pretext_epochs, contrastive_objects=args.contrastive_objects,
                        downstream_overrides=overrides(args.downstream_set),
                        pretext_paths=dict(zip(("magnitudes", "contrastive", "both"), args.pretext_runs.split(",")))
                        if args.pretext_runs else None, workers=args.workers)
    print(write_json(args.json, results))
    return 0


def add_commands(groups) -> None:
    """Register the SSL method's commands (see :mod:`astrocore.methods.spec`)."""
    make = groups["data_make"].add_parser("cutouts", help="simulated multi-band cutouts (GalSim): stars, quasars, "
                                                         "galaxies of several morphologies")
    make.add_argument("--n-objects", type=positive_int, default=2000)
    make.add_argument("--survey", choices=sorted(SURVEYS), default="splus",
                      help="splus: 12 bands, 0.55 arcsec pixels; sdss: ugriz, 0.396 arcsec pixels")
    make.add_argument("--size", type=positive_int, default=32, help="cutout side [pixels]")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--label-set", choices=list(LABEL_SETS), default=None, help="a labelled downstream set")
    make.add_argument("--r-min", type=float, default=14.0, help="brightest r magnitude [AB] (unlabelled sets)")
    make.add_argument("--r-max", type=float, default=21.5, help="faintest r magnitude [AB] (unlabelled sets)")
    make.add_argument("--out", required=True, help="output .fits file or folder")
    make.set_defaults(handler=cmd_make)

    train = groups["train"].add_parser("ssl", help="self-supervised pre-training on cutouts; few-label classifiers")
    train.add_argument("--stage", choices=["pretext", "downstream"], default="pretext")
    train.add_argument("--pretext", choices=list(PRETEXT_OBJECTIVES), default="magnitudes",
                       help="pretext objective: the paper's magnitudes, contrastive (SimCLR), or both")
    train.add_argument("--scheme", choices=list(SCHEMES), default="scratch", help="downstream scheme")
    train.add_argument("--pretext-run", default=None, help="downstream: the pre-trained run (folder or id)")
    train.add_argument("--data", default="simulate", help="'simulate' or a Dataset file/folder with images")
    train.add_argument("--label-set", choices=list(LABEL_SETS), default="star_galaxy_quasar")
    train.add_argument("--n-objects", type=positive_int, default=None,
                       help="simulated cutouts (pretext default 4000, downstream 3000)")
    train.add_argument("--n-labels", type=positive_int, default=None, help="labelled training objects (default all)")
    train.add_argument("--survey", choices=sorted(SURVEYS), default="splus")
    train.add_argument("--size", type=positive_int, default=32)
    train.add_argument("--data-seed", type=int, default=0)
    train.add_argument("--preset", choices=list(PRESETS), default="fast")
    train.add_argument("--epochs", type=positive_int, default=None,
                       help=f"default: the preset's; a pretext with a magnitude target runs more when the cutouts "
                            f"are few, {PRETEXT_MIN_STEPS} optimiser steps at least (--set min_steps=N)")
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override config fields, e.g. width=32")
    train.add_argument("--out", default="runs", help="runs folder")
    train.add_argument("--run-id", default=None, help="name the run (create a CANCEL file in it to stop)")
    train.add_argument("--resume", action="store_true")
    train.set_defaults(handler=cmd_train)

    classify = groups["classify"].add_parser("image", help="classify cutout files (FITS with N bands, PNG/JPEG)")
    classify.add_argument("files", nargs="+")
    classify.add_argument("--run", required=True, help="an SSL run folder (or id under --runs)")
    classify.add_argument("--runs", default="runs")
    classify.add_argument("--hdu", type=int, default=None, help="read this FITS extension only")
    classify.add_argument("--json", action="store_true")
    classify.add_argument("--out", default=None, help="also write the table (.csv, .ecsv, .fits)")
    classify.set_defaults(handler=cmd_classify)

    bench = groups["bench"].add_parser("ssl", help="pretext MAE, low-label accuracy per set and scheme")
    bench.add_argument("--preset", choices=list(PRESETS), default="fast")
    bench.add_argument("--sets", default=",".join(LABEL_SETS))
    bench.add_argument("--labels", default="100", help="label counts; 0 = all")
    bench.add_argument("--seeds", type=positive_int, default=2)
    bench.add_argument("--n-pretext", type=positive_int, default=12000)
    bench.add_argument("--n-labelled", type=positive_int, default=4000)
    bench.add_argument("--main-set", default="star_galaxy_quasar", help="the set that gets --main-seeds/--main-labels")
    bench.add_argument("--main-seeds", type=positive_int, default=3)
    bench.add_argument("--main-labels", default="100,200,500,1000,0", help="label counts of the main set (the low-data curve)")
    bench.add_argument("--pretext-epochs", type=positive_int, default=30)
    bench.add_argument("--contrastive-objects", type=positive_int, default=4000,
                       help="train the contrastive network on the first N cutouts only")
    bench.add_argument("--downstream-set", nargs="*", metavar="KEY=VALUE",
                       help="config overrides of the downstream runs, e.g. batch_size=64 min_steps=120")
    bench.add_argument("--pretext-runs", default=None, metavar="MAGNITUDES,CONTRASTIVE[,BOTH]",
                       help="reuse these pretext run folders instead of training them")
    bench.add_argument("--schemes", default=None, help="downstream schemes (default: all five)")
    bench.add_argument("--workers", type=positive_int, default=min(2, os.cpu_count() or 1),
                       help="processes training the downstream runs side by side (one thread each)")
    bench.add_argument("--runs", default=None, help="keep the bench's runs here (default: a temporary folder)")
    bench.add_argument("--summarise", default=None, metavar="RUNS",
                       help="instead: the record rebuilt from the finished runs a bench left in this folder")
    bench.add_argument("--json", default=None)
    bench.set_defaults(handler=cmd_bench)
