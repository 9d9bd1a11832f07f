"""The disentangler's sub-commands: ``astrocore train disentangle`` and ``astrocore bench disentangle``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ...cliutil import overrides, positive_int, progress_bar, write_json
from ...data import load_source
from ...training import TrainingCancelled
from .bench import bench_disentangle, sweep_disentangle
from .config import MODES, PRESETS, DisentanglerConfig, preset_for_data
from .choose_latent import fit_run


def cmd_train(args) -> int:
    DisentanglerConfig.preset(args.preset, **overrides(args.set))  # a mistyped --set fails before the data is made
    dataset, source = load_source(args.data, n_stars=args.n_stars, seed=args.data_seed)
    # Data without a fingerprint column cannot use twins: "fast" becomes the recipe without them.
    preset = preset_for_data(args.preset, dataset.labels.colnames)
    if preset != args.preset:
        print(f"astrocore: no fingerprint column in the data: using preset {preset!r}", file=sys.stderr)
    config = DisentanglerConfig.preset(
        preset,
        mode=args.mode,
        conditional=tuple(name.strip() for name in args.conditional.split(",") if name.strip()),
        **({"epochs": args.epochs} if args.epochs else {}),
        **({"seed": args.seed} if args.seed is not None else {}),
        **overrides(args.set),
    )
    bar, update = progress_bar(f"disentangle {config.mode}")
    stop_file = Path(args.out) / args.run_id / "CANCEL" if args.run_id else None
    try:
        run = fit_run(dataset, config, progress=update, runs_root=args.out, run_id=args.run_id, data_source=source,
                  should_stop=(lambda: stop_file.exists()) if stop_file else None, resume=args.resume)
    except TrainingCancelled as error:
        print(f"astrocore: training cancelled ({error}); resume with --resume --run-id {args.run_id}", file=sys.stderr)
        return 3
    finally:
        bar.close()
    print(json.dumps({"run": run.id, "path": str(run.path), **run.record.metrics}, indent=2))
    return 0


def cmd_bench(args) -> int:
    if args.sweep:
        results = {"sweep": sweep_disentangle(preset=args.preset, runs_root=args.runs,
                                              progress=lambda line: print(line, file=sys.stderr))}
    else:
        results = bench_disentangle(preset=args.preset, grids=args.grids.split(","), runs_root=args.runs,
                                    tracks=tuple(args.tracks.split(",")))
    print(write_json(args.json, results))
    return 0


def tracks_list(text: str) -> str:
    """``--tracks``: a comma-separated subset of twins, no_twins."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names or set(names) - {"twins", "no_twins"}:
        raise argparse.ArgumentTypeError(f"expected twins, no_twins or both (comma-separated); got {text!r}")
    return ",".join(names)


def add_commands(groups) -> None:
    """Register ``train disentangle`` and ``bench disentangle`` (see :mod:`astrocore.methods.spec`)."""
    train = groups["train"].add_parser("disentangle", help="GANDALF-style disentangling autoencoder")
    train.add_argument("--data", default="apogee", help="rvs, apogee, payne:FILE or a path to spectra")
    train.add_argument("--n-stars", type=positive_int, default=None,
                       help="rvs: random stars; apogee / payne: chemistries, each rendered at every Teff x log g "
                            "grid point (20 APOGEE-like chemistries = 4,200 spectra)")
    train.add_argument("--data-seed", type=int, default=0)
    train.add_argument("--mode", choices=list(MODES), default="mdat")
    train.add_argument("--conditional", default="teff,logg")
    train.add_argument("--preset", default="fast", choices=list(PRESETS))
    train.add_argument("--epochs", type=positive_int, default=None)
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--set", nargs="*", metavar="KEY=VALUE",
                       help="override config fields, e.g. latent_dim=6 lambdas=[0.01,0.02]")
    train.add_argument("--out", default="runs", help="runs folder")
    train.add_argument("--run-id", default=None, help="name the run (create a CANCEL file in it to stop)")
    train.add_argument("--resume", action="store_true", help="continue --run-id from its checkpoint")
    train.set_defaults(handler=cmd_train)

    bench = groups["bench"].add_parser("disentangle", help="noAT / AT / mdAT on the simulated grids")
    bench.add_argument("--preset", default="fast", choices=["fast", "paper"])
    bench.add_argument("--grids", default="apogee,rvs4,payne")
    bench.add_argument("--runs", default=None, help="keep the bench's runs here (default: a temporary folder)")
    bench.add_argument("--json", default=None)
    bench.add_argument("--tracks", default="twins,no_twins", type=tracks_list,
                       help="twins (fingerprints used), no_twins (hidden, as for survey data) or both")
    bench.add_argument("--sweep", action="store_true",
                       help="instead: the trade-off curve of mdat over lambda x adversary steps and the twin term")
    bench.set_defaults(handler=cmd_bench)
