"""The DANN sub-commands: ``astrocore data make nebulae``, ``astrocore train dann``,
``astrocore classify nebulae`` and ``astrocore bench dann``."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ...cliutil import overrides, positive_int, progress_bar, write_json
from ...data.dataset import Dataset
from ...data.readers.catalogues import read_nebula_catalogue
from ...data.simulators.nebulae_observe import KNOBS, expected_class_balance, simulate_nebulae
from ...training import TrainingCancelled
from ..registry import load_run
from .bench import bench_dann
from .config import DETECTION_LIMITS, LAMBDA_SCHEDULES, MODES, PRESETS, SELECTIONS, DannConfig
from .fit import fit
from .run import nebula_dataset, source_from_dataset


def _simulation_arguments(parser, n_default: int = 8000) -> None:
    parser.add_argument("--n-source", type=positive_int, default=n_default, help="model nebulae (equal thirds)")
    parser.add_argument("--n-target", type=positive_int, default=n_default, help="observed nebulae")
    parser.add_argument("--gap", type=float, default=1.0, help="strength of every observational effect (0: none)")
    for knob in KNOBS:
        parser.add_argument(f"--{knob}", type=float, default=1.0, help=f"{knob} knob (multiplies its reference strength)")


def _simulation_params(args, seed: int) -> dict:
    return {"n_source": args.n_source, "n_target": args.n_target, "seed": seed, "gap": args.gap,
            **{knob: getattr(args, knob) for knob in KNOBS}}


def cmd_make(args) -> int:
    dataset = simulate_nebulae(**_simulation_params(args, args.seed))
    path = dataset.save(args.out)
    target = (dataset.labels["domain"] == "target").sum()
    print(f"wrote {len(dataset)} nebulae ({len(dataset) - target} models, {target} observed) to {path}")
    return 0


def cmd_train(args) -> int:
    settings = overrides(args.set)
    if args.data == "nebulae" and "target_prior" not in settings:
        # The class balance this simulated catalogue is drawn with (for class_weighting="prior").
        settings["target_prior"] = expected_class_balance(args.gap, args.balance)
    config = DannConfig.preset(
        args.preset, mode=args.mode,
        **{k: v for k, v in {"epochs": args.epochs, "seed": args.seed, "noise_sigma": args.noise_sigma,
                             "lambda_max": args.lambda_max, "lambda_schedule": args.lambda_schedule,
                             "selection": args.selection, "detection_limits": args.detection_limits}.items()
                           if v is not None},
        **settings)
    if args.data == "nebulae":
        source = {"kind": "simulator", "generator": "nebulae", "params": _simulation_params(args, args.data_seed)}
        dataset = nebula_dataset(source)
    else:
        dataset = Dataset.load(args.data)
        source = source_from_dataset(dataset)
        if source.get("kind") == "unknown":
            source = {"kind": "file", "path": str(Path(args.data).resolve())}
    bar, update = progress_bar(f"dann {config.mode}", shown=("loss", "label_loss", "domain_loss", "val_loss",
                                                             "target_accuracy"))
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
    print(json.dumps({"run": run.id, "path": str(run.path), "target": metrics["target"],
                      "selected_epoch": metrics["selected_epoch"], "train_seconds": metrics["train_seconds"]},
                     indent=2))
    return 0


def cmd_classify(args) -> int:
    run = load_run(args.run, method="dann")  # a tampered or foreign folder: one clear error
    started = time.perf_counter()
    catalogue = read_nebula_catalogue(args.catalogue)
    table = run.classify_table(catalogue.labels)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.write(out, overwrite=True, format="fits" if out.suffix.lower() in (".fits", ".fit") else "ascii.csv")
    usable = int(table["usable"].sum())
    counts = {name: int((table["predicted_class"][table["usable"]] == name).sum()) for name in ("HII", "PN", "SNR")}
    print(f"classified {usable} of {len(table)} nebulae in {time.perf_counter() - started:.2f} s "
          f"({', '.join(f'{k} {v}' for k, v in counts.items())}); {len(table) - usable} rows have a reason; "
          f"wrote {out}")
    return 0


def cmd_bench(args) -> int:
    results = bench_dann(seeds=args.seeds, preset=args.preset, n=args.n, sweep=args.sweep,
                         sweep_seeds=args.sweep_seeds, runs_root=args.runs,
                         progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(write_json(args.json, results))
    return 0


def add_commands(groups) -> None:
    """Register the DANN commands (see :mod:`astrocore.methods.spec`)."""
    make = groups["data_make"].add_parser("nebulae", help="model (source) and observed (target) nebula line catalogue")
    _simulation_arguments(make)
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--out", required=True, help="output .fits file or folder")
    make.set_defaults(handler=cmd_make)

    train = groups["train"].add_parser("dann", help="domain-adversarial HII / PN / SNR classifier (Belfiore+2025)")
    train.add_argument("--data", default="nebulae", help="'nebulae' (simulate) or a saved nebula dataset")
    _simulation_arguments(train)
    train.add_argument("--data-seed", type=int, default=0)
    train.add_argument("--mode", choices=list(MODES), default="dann")
    train.add_argument("--preset", default="fast", choices=list(PRESETS))
    train.add_argument("--epochs", type=positive_int, default=None)
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--noise-sigma", type=float, default=None, help="noise injection into the source ratios [dex]")
    train.add_argument("--lambda-max", type=float, default=None)
    train.add_argument("--detection-limits", choices=list(DETECTION_LIMITS), default=None,
                       help="'target': train on the models at the catalogue's detection limits (preset default); 'none'")
    train.add_argument("--lambda-schedule", choices=list(LAMBDA_SCHEDULES), default=None)
    train.add_argument("--selection", choices=list(SELECTIONS), default=None,
                       help="which epoch to keep (a label-free validator, the source loss, or the last)")
    train.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override config fields, e.g. hidden=[128,64]")
    train.add_argument("--out", default="runs", help="runs folder")
    train.add_argument("--run-id", default=None, help="name the run (create a CANCEL file in it to stop)")
    train.add_argument("--resume", action="store_true", help="continue --run-id from its checkpoint")
    train.set_defaults(handler=cmd_train)

    classify = groups["classify"].add_parser("nebulae", help="HII / PN / SNR for a catalogue of line fluxes")
    classify.add_argument("catalogue", help="FITS or CSV with line fluxes and errors (PHANGS-MUSE names or similar)")
    classify.add_argument("--run", required=True, help="a finished dann run folder")
    classify.add_argument("--out", required=True, help="output table (.csv or .fits)")
    classify.set_defaults(handler=cmd_classify)

    bench = groups["bench"].add_parser("dann", help="rule / source-only / DANN (+ noise) / oracle on the target")
    bench.add_argument("--seeds", type=positive_int, default=5)
    bench.add_argument("--preset", default="fast", choices=list(PRESETS))
    bench.add_argument("--n", type=positive_int, default=8000, help="source and target nebulae each")
    bench.add_argument("--sweep", default="0,0.25,0.5,0.75,1.0", help="gap strengths of the sweep ('' to skip)")
    bench.add_argument("--sweep-seeds", type=positive_int, default=2)
    bench.add_argument("--runs", default=None, help="keep the bench's runs here (default: a temporary folder)")
    bench.add_argument("--json", default=None)
    bench.set_defaults(handler=cmd_bench)
