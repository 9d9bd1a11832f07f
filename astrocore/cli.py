"""``astrocore`` / ``python -m astrocore``: every page action is also a command.

    astrocore data make {rvs,apogee,payne:FILE,...} [--n-stars N] [--seed S] [--snr SNR] --out PATH
    astrocore train METHOD ...            e.g. astrocore train disentangle --data apogee --mode mdat
    astrocore train --resume RUN          continue an interrupted run (any method) from its checkpoint
    astrocore evaluate RUN [--json]
    astrocore runs list [--dir runs/]
    astrocore embed RUN --representation NAME --method umap|tsne|pca [--seed S] [--param k=v] --out PATH
    astrocore classify WHAT ...           a method's inference on your files
    astrocore bench METHOD ... --json PATH

The ``train``, ``classify`` and ``bench`` sub-commands (and the methods' own ``data make``
generators) come from the method registry: each method adds its own (``methods/<name>/cli.py``).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from . import distributed
from .cliutil import overrides, positive_int, progress_bar
from .data import load_source, make_store
from .data.dataset import DataError, Dataset
from .data.store import STORE_FORMAT, STORE_VERSION, wants_store
from .embeddings import PROJECTION_METHODS, ProjectionError, cache_key, check_projectable, project, projection_params
from .methods import registry
from .runs import RunRecord, check_run_id, checked_run_folder, list_runs, listing_lines, new_run_id, runs_dir
from .training import TrainingCancelled, atomic_write_text

SPECTRA_GENERATORS = {
    "rvs": "Gaia RVS-like stars (8460-8700 Angstrom, R = 11500); --n-stars random stars",
    "apogee": "APOGEE-like grid (H band, 7214 pixels); --n-stars chemistries, each rendered at all 210 "
              "Teff x log g grid points (20 chemistries = 4,200 spectra)",
    "payne": "a grid rendered from a Payne emulator: payne:FILE.npz; --n-stars chemistries",
}


def cmd_data_make(args) -> int:
    name = args.generator if args.generator != "payne" else f"payne:{args.path}"
    if wants_store(args.out):  # written part by part, never whole in memory
        path = make_store(name, args.out, n_stars=args.n_stars, seed=args.seed, snr=args.snr)
        dataset = Dataset.load(path)
    else:
        dataset, _ = load_source(name, n_stars=args.n_stars, seed=args.seed, snr=args.snr)
        path = dataset.save(args.out)
    summary = dataset.summary()
    print(f"wrote {summary['n_objects']} spectra x {summary['n_pixels']} pixels "
          f"({summary['wavelength_aa'][0]:.1f}-{summary['wavelength_aa'][1]:.1f} Angstrom) to {path}")
    return 0


def cmd_evaluate(args) -> int:
    run = registry.load_run(args.run)
    spec = registry.get(run.record.method)
    if spec.evaluate is None:
        raise ValueError(f"Method {spec.name!r} has no evaluation; its metrics are in {run.path}/run.json.")
    metrics = {"run": run.id, **spec.evaluate(run, max_objects=args.max_objects)}
    if args.out:  # written whole, then renamed: the app polls this file
        atomic_write_text(Path(args.out), json.dumps(metrics, indent=2))
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        for key, value in metrics.items():
            print(f"{key:>16}: {value}")
    return 0


def _resume_folder(run: str, runs_root=None) -> Path:
    """A run given as a folder (``runs/ID``) or as an id in ``runs_root``."""
    path = Path(run)
    if path.is_dir() and (path / "run.json").exists():
        return checked_run_folder(path)
    return checked_run_folder(runs_dir(runs_root) / check_run_id(run), runs_dir(runs_root))


def cmd_train_resume(args) -> int:
    """``astrocore train --resume RUN``: read the run's method, configuration and data source from
    its run.json and continue its training (the method's ``fit`` with ``resume=True``)."""
    if not args.resume_run:
        raise ValueError("choose a METHOD (astrocore train METHOD ...) or a run to continue (--resume RUN).")
    folder = _resume_folder(args.resume_run, args.resume_dir)
    record = RunRecord.read(folder)
    spec = registry.get(record.method)
    if record.status == "done":
        print(f"astrocore: run {record.id} is already finished; nothing to resume.", file=sys.stderr)
        return 0
    config = spec.config_class.from_json(record.config)
    # The Run class knows how to rebuild its data from run.json's source; it needs no weights for that.
    shell = spec.run_class.__new__(spec.run_class)
    shell.record = record
    dataset = shell.dataset()
    extra = {}
    if record.data.get("pretext_run"):  # an SSL downstream run starts from its pretext run
        extra["pretext_run"] = registry.load_run(_resume_folder(str(record.data["pretext_run"]), folder.parent))
    stop_file = folder / "CANCEL"
    bar, update = progress_bar(f"{record.method} (resumed)")
    try:
        run = spec.fit(dataset, config, progress=update, runs_root=folder.parent, run_id=folder.name,
                       data_source=record.data, should_stop=stop_file.exists, resume=True, **extra)
    except TrainingCancelled as error:
        print(f"astrocore: training cancelled ({error}); continue with: astrocore train --resume {folder}",
              file=sys.stderr)
        return 3
    finally:
        bar.close()
    print(json.dumps({"run": run.id, "path": str(run.path), "status": run.record.status}, indent=2))
    return 0


def cmd_runs_list(args) -> int:
    records = list_runs(args.dir)
    if args.json:
        print(json.dumps([{k: v for k, v in r.to_json().items() if k != "history"} for r in records], indent=2))
        return 0
    print("\n".join(listing_lines(records, args.dir)))
    return 0


def cmd_embed(args) -> int:
    run = registry.load_run(args.run)
    spec = registry.get(run.record.method)
    representation = args.representation or spec.default_representation or next(iter(spec.representations))
    if representation not in spec.representations:
        raise SystemExit(f"astrocore: error: a {spec.name} run offers --representation "
                         f"{', '.join(spec.representations)}; got {representation!r}")
    try:
        values = run.representation(representation)
        params = projection_params(args.method, overrides(args.param))
        check_projectable(len(values), args.method, params)
    except ProjectionError as error:
        raise SystemExit(f"astrocore: error: {error}") from None
    # The same cache key as the Embedding explorer page, so either one reuses the other's work.
    coordinates, info = project(values, args.method, key=cache_key(run.id, representation), seed=args.seed,
                                **params)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.part")
    with open(partial, "wb") as stream:  # written whole, then renamed: a reader never sees half a file
        np.savez(stream, coordinates=coordinates, info=np.array(json.dumps(info)))
    os.replace(partial, out)
    print(f"wrote {coordinates.shape[0]} x 2 {args.method} coordinates to {args.out}")
    return 0


def cmd_encode(args) -> int:
    run = registry.load_run(args.run)
    spec = registry.get(run.record.method)
    name = args.representation or spec.default_representation or next(iter(spec.representations))
    dataset = Dataset.load(args.data) if wants_store(args.data) else load_source(args.data)[0]
    n, ranks, rank = len(dataset), distributed.world_size(), distributed.rank()
    first, last = rank * n // ranks, (rank + 1) * n // ranks  # each rank its block of rows
    out = Path(args.out)
    tmp = out.with_name(f".{out.name}.part")
    (tmp / name).mkdir(parents=True, exist_ok=True)
    shards = []
    for k, start in enumerate(range(first, last, args.rows)):
        values = np.asarray(run.representation(name, dataset.subset(np.arange(start, min(start + args.rows, last)))))
        file = f"{name}/{rank:03d}-{k:05d}.npy"
        np.save(tmp / file, values.astype(np.float32), allow_pickle=False)
        shards.append({"file": file, "rows": len(values)})
    shards = [shard for part in distributed.gather_objects(shards) for shard in part]
    if distributed.is_main_process():
        probe = np.load(tmp / shards[0]["file"], mmap_mode="r")
        np.save(tmp / "ids.npy", np.asarray(dataset.labels["id"]).astype(str))
        meta = {"format": STORE_FORMAT, "version": STORE_VERSION, "rows": n, "run": run.id, "representation": name,
                "arrays": {name: {"dtype": probe.dtype.str, "row_shape": list(probe.shape[1:]), "shards": shards,
                                  "rows": n}}}
        (tmp / "store.json").write_text(json.dumps(meta, indent=1))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
        print(f"wrote {n} x {probe.shape[1]} {name} of run {run.id} to {out}")
    distributed.barrier()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="astrocore", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="make or convert datasets").add_subparsers(dest="action", required=True)
    make = data.add_parser("make", help="simulate a dataset and save it (FITS file or folder)").add_subparsers(
        dest="generator", required=True, metavar="GENERATOR")
    for name, text in SPECTRA_GENERATORS.items():
        generator = make.add_parser(name, help=text, description=text)
        if name == "payne":
            generator.add_argument("path", help="the emulator .npz (also written payne:FILE)")
        generator.add_argument("--n-stars", type=positive_int, default=None,
                               help="random stars (rvs) or chemistries, each at every grid point (apogee, payne)")
        generator.add_argument("--seed", type=int, default=0)
        generator.add_argument("--snr", type=float, default=None, help="add Gaussian noise at this signal-to-noise")
        generator.add_argument("--out", required=True, help="output .fits file or folder; a folder named *.shards "
                               "is an on-disk store, written in parts (sets larger than memory)")
        generator.set_defaults(handler=cmd_data_make)

    groups = {"data_make": make}
    train = commands.add_parser("train", help="train a method, or continue a run: astrocore train --resume RUN")
    train.add_argument("--resume", dest="resume_run", metavar="RUN", default=None,
                       help="continue an interrupted or cancelled run of any method from its checkpoint (a run "
                            "folder, or a run id in --dir)")
    train.add_argument("--dir", dest="resume_dir", default=None, help="runs folder of a --resume RUN given by id")
    train.set_defaults(handler=cmd_train_resume)
    groups["train"] = train.add_subparsers(dest="method", required=False, metavar="METHOD")

    evaluate = commands.add_parser("evaluate", help="probes and metrics of a run (R^2, reconstruction, F1, ...)")
    evaluate.add_argument("run")
    evaluate.add_argument("--json", action="store_true")
    evaluate.add_argument("--max-objects", type=positive_int, default=4000)
    evaluate.add_argument("--out", default=None, help="also write the metrics as JSON to this file")
    evaluate.set_defaults(handler=cmd_evaluate)

    runs = commands.add_parser("runs", help="the run registry").add_subparsers(dest="action", required=True)
    listing = runs.add_parser("list")
    listing.add_argument("--dir", default=None)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_runs_list)

    embed = commands.add_parser("embed", help="2-d projection of a run's representation")
    embed.add_argument("run")
    embed.add_argument("--representation", default=None,
                       help="what to project; each method offers its own (disentangle: z latent, X input spectra, "
                            "h the encoder's last hidden layer). Default: the method's first")
    embed.add_argument("--method", default="umap", choices=list(PROJECTION_METHODS))
    embed.add_argument("--seed", type=int, default=0)
    embed.add_argument("--param", action="append", metavar="NAME=VALUE",
                       help="method parameter, e.g. n_neighbors=15, min_dist=0.1 (umap) or perplexity=30 (tsne)")
    embed.add_argument("--out", required=True)
    embed.set_defaults(handler=cmd_embed)

    encode = commands.add_parser("encode", help="a run's representation of a dataset, streamed to an on-disk store "
                                 "(sets larger than memory; under torchrun the ranks split the rows)")
    encode.add_argument("run")
    encode.add_argument("--data", required=True, help="a dataset: a *.shards store, a file or folder, or a simulator")
    encode.add_argument("--representation", default=None, help="default: the method's first (disentangle: z)")
    encode.add_argument("--rows", type=positive_int, default=8192, help="spectra encoded at a time")
    encode.add_argument("--out", required=True, help="output store folder (e.g. latents.shards)")
    encode.set_defaults(handler=cmd_encode)

    groups["classify"] = commands.add_parser("classify", help="classify your own files with a trained run") \
        .add_subparsers(dest="what", required=True, metavar="WHAT")
    groups["bench"] = commands.add_parser("bench", help="benchmarks that print JSON").add_subparsers(
        dest="target", required=True, metavar="METHOD")
    for spec in registry.methods().values():
        if spec.add_commands is not None:
            spec.add_commands(groups)
    return parser


def _legacy_arguments(argv: list[str]) -> list[str]:
    # ``data make payne:FILE`` (the form --data takes) means ``data make payne FILE``.
    if argv[:2] == ["data", "make"] and len(argv) > 2 and argv[2].startswith("payne:"):
        return [*argv[:2], "payne", argv[2][len("payne:"):], *argv[3:]]
    return argv


def _join_torchrun(args) -> None:
    """Under ``torchrun``: join the process group, give every rank rank 0's run id (the ranks of
    one training write one run) and keep the other ranks' standard output quiet."""
    if not distributed.init_from_env():
        return
    if args.command == "train" and getattr(args, "run_id", "") is None:
        args.run_id = distributed.broadcast_object(new_run_id(args.method) if distributed.is_main_process() else None)
    if not distributed.is_main_process():
        sys.stdout = open(os.devnull, "w")


def main(argv=None) -> int:
    argv = _legacy_arguments(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    _join_torchrun(args)
    finished = False
    try:
        status = args.handler(args) or 0
        finished = True
        return status
    except (DataError, FileNotFoundError, ValueError) as error:
        print(f"astrocore: error: {error}", file=sys.stderr)
        return 2
    finally:
        distributed.leave(finished)


if __name__ == "__main__":
    raise SystemExit(main())
