"""``astrocore`` / ``python -m astrocore``: every page action is also a command.

    astrocore data make {rvs,apogee} [--n-stars N] [--seed S] [--snr SNR] --out PATH
    astrocore train disentangle --data rvs|apogee|payne:FILE|PATH --mode mdat --conditional teff,logg
                                [--preset fast|paper|paper-fast] [--epochs N] [--set key=value ...] --out runs/
    astrocore evaluate RUN [--json]
    astrocore runs list [--dir runs/]
    astrocore embed RUN --representation z|X|h --method umap|tsne|pca [--seed S] [--param k=v] --out PATH
    astrocore bench disentangle [--preset fast] --json PATH
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _overrides(pairs: list[str]) -> dict:
    values = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise SystemExit(f"--set expects key=value; got {pair!r}")
        key, text = pair.split("=", 1)
        value = _parse_value(text)
        values[key.replace("-", "_")] = tuple(value) if isinstance(value, list) else value
    return values


def _progress_bar(description: str):
    from tqdm import tqdm

    bar = tqdm(total=0, desc=description, unit="batch", dynamic_ncols=True)

    def update(step, total, metrics):
        bar.total = total
        bar.n = step
        shown = {k: f"{v:.4g}" for k, v in metrics.items() if isinstance(v, float) and k in
                 ("recon", "val_recon", "adversary", "loss", "val_objective")}
        bar.set_postfix(shown, refresh=False)
        bar.refresh()

    return bar, update


def cmd_data_make(args) -> int:
    from .data import load_source

    dataset, _ = load_source(args.generator, n_stars=args.n_stars, seed=args.seed, snr=args.snr)
    path = dataset.save(args.out)
    summary = dataset.summary()
    print(f"wrote {summary['n_objects']} spectra x {summary['n_pixels']} pixels "
          f"({summary['wavelength_aa'][0]:.1f}-{summary['wavelength_aa'][1]:.1f} Angstrom) to {path}")
    return 0


def cmd_train_disentangle(args) -> int:
    from .data import load_source
    from .models.disentangler import DisentanglerConfig, fit
    from .training import TrainingCancelled

    config = DisentanglerConfig.preset(
        args.preset,
        mode=args.mode,
        conditional=tuple(name.strip() for name in args.conditional.split(",") if name.strip()),
        **({"epochs": args.epochs} if args.epochs else {}),
        **({"seed": args.seed} if args.seed is not None else {}),
        **_overrides(args.set),
    )
    dataset, source = load_source(args.data, n_stars=args.n_stars, seed=args.data_seed)
    bar, update = _progress_bar(f"disentangle {config.mode}")
    stop_file = Path(args.out) / (args.run_id or "") / "CANCEL" if args.run_id else None
    try:
        run = fit(dataset, config, progress=update, runs_root=args.out, run_id=args.run_id, data_source=source,
                  should_stop=(lambda: stop_file.exists()) if stop_file else None, resume=args.resume)
    except TrainingCancelled as error:
        print(f"astrocore: training cancelled ({error}); resume with --resume --run-id {args.run_id}", file=sys.stderr)
        return 3
    finally:
        bar.close()
    print(json.dumps({"run": run.id, "path": str(run.path), **run.record.metrics}, indent=2))
    return 0


def cmd_evaluate(args) -> int:
    from .data import dataset_from_source, renderer_for
    from .evaluation import evaluate_disentangler
    from .runs import load_run

    run = load_run(args.run)
    dataset = dataset_from_source(run.record.data)
    metrics = evaluate_disentangler(run, dataset, render=renderer_for(dataset), max_objects=args.max_objects)
    if args.json:
        print(json.dumps({"run": run.id, **metrics}, indent=2))
    else:
        for key, value in metrics.items():
            print(f"{key:>16}: {value}")
    return 0


def cmd_runs_list(args) -> int:
    from .runs import list_runs

    records = list_runs(args.dir)
    if args.json:
        print(json.dumps([{k: v for k, v in r.to_json().items() if k != "history"} for r in records], indent=2))
        return 0
    if not records:
        print(f"no runs in {args.dir or 'runs'}/")
    for record in records:
        data = record.data.get("generator") or Path(record.data.get("path", "?")).name
        mode = record.config.get("mode", "")
        recon = record.metrics.get("recon_mse_test")
        recon_text = f"recon_mse={recon:.3g}" if recon is not None else ""
        print(f"{record.id:<44} {record.method:<11} {mode:<5} {data:<8} {record.status:<9} {record.created}  {recon_text}")
    return 0


def cmd_embed(args) -> int:
    import numpy as np

    from .embeddings import project
    from .runs import load_run

    from .explore import ExploreError, cache_key, check_projectable, projection_params, run_representation

    run = load_run(args.run)
    try:
        values = run_representation(run, args.representation)  # z, X or the encoder features h
        params = projection_params(args.method, _overrides(args.param))
        check_projectable(len(values), args.method, params)
    except ExploreError as error:
        raise SystemExit(f"error: {error}") from None
    # The same cache key as the Embedding explorer page, so either one reuses the other's work.
    coordinates, info = project(values, args.method, key=cache_key(run.id, args.representation), seed=args.seed,
                                **params)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.part")
    with open(partial, "wb") as stream:  # written whole, then renamed: a reader never sees half a file
        np.savez(stream, coordinates=coordinates, info=np.array(json.dumps(info)))
    os.replace(partial, out)
    print(f"wrote {coordinates.shape[0]} x 2 {args.method} coordinates to {args.out}")
    return 0


def cmd_bench(args) -> int:
    from .bench import bench_disentangle, sweep_disentangle

    if args.sweep:
        results = {"sweep": sweep_disentangle(preset=args.preset, runs_root=args.runs,
                                              progress=lambda line: print(line, file=sys.stderr))}
    else:
        results = bench_disentangle(preset=args.preset, grids=args.grids.split(","), runs_root=args.runs)
    text = json.dumps(results, indent=2)
    if args.json:
        Path(args.json).write_text(text)
    print(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="astrocore", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="make or convert datasets").add_subparsers(dest="action", required=True)
    make = data.add_parser("make", help="simulate a dataset and save it (FITS file or folder)")
    make.add_argument("generator", help="rvs, apogee or payne:PATH")
    make.add_argument("--n-stars", type=int, default=None, help="stars (rvs) or chemical fingerprints (apogee)")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--snr", type=float, default=None, help="add Gaussian noise at this signal-to-noise")
    make.add_argument("--out", required=True, help="output .fits file or folder")
    make.set_defaults(handler=cmd_data_make)

    train = commands.add_parser("train", help="train a method").add_subparsers(dest="method", required=True)
    disentangle = train.add_parser("disentangle", help="GANDALF-style disentangling autoencoder")
    disentangle.add_argument("--data", default="apogee", help="rvs, apogee, payne:FILE or a path to spectra")
    disentangle.add_argument("--n-stars", type=int, default=None)
    disentangle.add_argument("--data-seed", type=int, default=0)
    disentangle.add_argument("--mode", choices=["noat", "at", "mdat"], default="mdat")
    disentangle.add_argument("--conditional", default="teff,logg")
    disentangle.add_argument("--preset", default="fast", choices=["fast", "paper", "paper-fast"])
    disentangle.add_argument("--epochs", type=int, default=None)
    disentangle.add_argument("--seed", type=int, default=None)
    disentangle.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override config fields, e.g. latent_dim=6 lambdas=[0.01,0.02]")
    disentangle.add_argument("--out", default="runs", help="runs folder")
    disentangle.add_argument("--run-id", default=None, help="name the run (create a CANCEL file in it to stop)")
    disentangle.add_argument("--resume", action="store_true", help="continue --run-id from its checkpoint")
    disentangle.set_defaults(handler=cmd_train_disentangle)

    evaluate = commands.add_parser("evaluate", help="probe R^2, reconstruction, generation accuracy of a run")
    evaluate.add_argument("run")
    evaluate.add_argument("--json", action="store_true")
    evaluate.add_argument("--max-objects", type=int, default=4000)
    evaluate.set_defaults(handler=cmd_evaluate)

    runs = commands.add_parser("runs", help="the run registry").add_subparsers(dest="action", required=True)
    listing = runs.add_parser("list")
    listing.add_argument("--dir", default=None)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_runs_list)

    embed = commands.add_parser("embed", help="2-d projection of a run's representation")
    embed.add_argument("run")
    embed.add_argument("--representation", default="z", choices=["z", "X", "h"],
                       help="z: latent, X: input spectra, h: the encoder's last hidden layer")
    embed.add_argument("--method", default="umap", choices=["pca", "umap", "tsne"])
    embed.add_argument("--seed", type=int, default=0)
    embed.add_argument("--param", action="append", metavar="NAME=VALUE",
                       help="method parameter, e.g. n_neighbors=15, min_dist=0.1 (umap) or perplexity=30 (tsne)")
    embed.add_argument("--out", required=True)
    embed.set_defaults(handler=cmd_embed)

    bench = commands.add_parser("bench", help="benchmarks that print JSON").add_subparsers(dest="target", required=True)
    bench_dis = bench.add_parser("disentangle")
    bench_dis.add_argument("--preset", default="fast", choices=["fast", "paper"])
    bench_dis.add_argument("--grids", default="apogee,rvs4,payne")
    bench_dis.add_argument("--runs", default=None, help="keep the bench's runs here (default: a temporary folder)")
    bench_dis.add_argument("--json", default=None)
    bench_dis.add_argument("--sweep", action="store_true",
                           help="instead: the trade-off curve of mdat over lambda x adversary steps and the twin term")
    bench_dis.set_defaults(handler=cmd_bench)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .data.dataset import DataError

    try:
        return args.handler(args) or 0
    except (DataError, FileNotFoundError, ValueError) as error:
        print(f"astrocore: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
