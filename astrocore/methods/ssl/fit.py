"""Training: the pretext stage on unlabelled cutouts and the downstream schemes on labelled ones.

:func:`fit` dispatches on ``config.stage``. Both stages use :func:`astrocore.training.train` and
write ``runs/<id>/`` (run.json last, weights.safetensors, arrays.npz with ``ids`` and ``split`` in
the order of ``run.dataset()``: 0 train, 1 validation, 2 held out, where "held out" includes the
objects a stage never trained on but does not score - pretext: removed by the photometric cut;
downstream: unlabelled members of the training pool. ``role`` tells them apart: 0 train, 1
validation, 2 test (scored), 3 unused).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score

from ...data.dataset import DataError, Dataset
from ...data.photometry import pretext_targets
from ...runs import RunRecord, claim_run_folder, recording_outcome, save_arrays, write_progress
from ...training import LoopSettings, count_batches, is_main_process, pick_device, save_modules, seed_everything, train
from .config import SSLConfig
from .imagenet import load_imagenet_backbone
from .model import CutoutNet, dihedral_views
from .run import SSLRun
from .tasks import ClassifierTask, HeadTask, PretextTask

# With few labels an epoch is the labelled set repeated to at least this many cutouts (each seen
# under a new rotation / flip), so validation runs every ~8 steps instead of every step.
MIN_EPOCH_OBJECTS = 1024
SPLIT_SEED = 2020  # the downstream validation and test sets are the same for every seed and label count


def _epochs(n_train: int, batch_size: int, epochs: int, min_steps: int) -> int:
    return int(min(400, max(epochs, math.ceil(min_steps / count_batches(n_train, batch_size)))))


def _repeated(index: np.ndarray) -> np.ndarray:
    """``index`` repeated to at least :data:`MIN_EPOCH_OBJECTS` entries (see there)."""
    return np.tile(index, max(1, math.ceil(MIN_EPOCH_OBJECTS / max(1, len(index)))))


class _Reporter:
    """One progress scale over a run's phases, written to the run folder and passed on."""

    def __init__(self, folder: Path, total: int, progress):
        self.folder, self.total, self.progress, self.done = folder, max(1, total), progress, 0

    def phase(self, name: str, steps: int):
        offset = self.done
        self.done += steps

        def report(step, total, metrics):
            if not is_main_process():
                return
            metrics = {**metrics, "phase": name}
            write_progress(self.folder, offset + step, self.total, metrics)
            if self.progress is not None:
                self.progress(offset + step, self.total, metrics)
        return report


def _start_record(config: SSLConfig, runs_root, run_id, data: dict, resume: bool) -> RunRecord:
    tag = config.pretext if config.stage == "pretext" else config.scheme
    folder = claim_run_folder(runs_root, run_id, "ssl", tag.replace("_", "-"), resume)
    run_id = folder.name
    record = RunRecord(id=run_id, path=folder, method="ssl", config=config.to_json(), data=data)
    if is_main_process() and not (resume and (folder / "run.json").exists()):
        record.write()
    return record


def _settings(config: SSLConfig, epochs: int, seed_offset: int = 0, schedule: str | None = None) -> LoopSettings:
    return LoopSettings(epochs=epochs, batch_size=config.batch_size, seed=config.seed + seed_offset,
                        patience=config.patience, device=config.device, lr_schedule=schedule or config.lr_schedule)


def _source_of(dataset: Dataset, data_source: dict | None) -> dict:
    if data_source is not None:
        return dict(data_source)
    source = (dataset.provenance or {}).get("source")
    if source:
        return {"kind": "simulator", **source}
    provenance = dataset.provenance or {}
    if provenance.get("generator") == "cutouts":
        return {"kind": "simulator", "generator": "cutouts", "params": provenance["params"]}
    return {"kind": "dataset", "provenance": provenance, "n_objects": len(dataset)}


def fit(dataset: Dataset, config: SSLConfig, progress: Callable | None = None, runs_root=None,
        run_id: str | None = None, data_source: dict | None = None, should_stop: Callable | None = None,
        resume: bool = False, pretext_run: SSLRun | None = None) -> SSLRun:
    """Train a pretext network (``config.stage == "pretext"``) or a downstream classifier and save
    it as a run. Downstream schemes other than ``scratch`` and ``imagenet`` need ``pretext_run``."""
    if dataset.images is None:
        raise DataError("An SSL run needs cutouts (a dataset with images).")
    seed_everything(config.seed)
    if config.stage == "pretext":
        return _fit_pretext(dataset, config, progress, runs_root, run_id, data_source, should_stop, resume)
    return _fit_downstream(dataset, config, progress, runs_root, run_id, data_source, should_stop, resume,
                           pretext_run)


# ============================================================================ pretext
def _fit_pretext(dataset, config, progress, runs_root, run_id, data_source, should_stop, resume) -> SSLRun:
    photometry = pretext_targets(dataset, config.max_error, config.fixed_apertures_arcsec)
    kept = np.flatnonzero(photometry["keep"])
    if len(kept) < 50:
        raise DataError(f"Only {len(kept)} of {len(dataset)} cutouts pass the photometric cut (every band's "
                        f"magnitude error <= {config.max_error}); the pretext task needs at least 50.")
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(kept)
    n_test, n_val = int(round(config.test_fraction * len(order))), int(round(config.val_fraction * len(order)))
    split = np.full(len(dataset), -1, dtype=np.int8)
    split[order[:n_test]], split[order[n_test:n_test + n_val]], split[order[n_test + n_val:]] = 2, 1, 0
    train_index, val_index = np.flatnonzero(split == 0), np.flatnonzero(split == 1)

    size = dataset.images.shape[-1]
    net = CutoutNet(len(dataset.bands), config, size=size)
    sky_sigma = np.median(photometry["noise"][train_index], axis=0)
    with torch.no_grad():
        net.softening.copy_(torch.as_tensor(np.maximum(sky_sigma, 1e-6), dtype=torch.float32))
        # Start the saturating output at the mean training magnitude of each band.
        mean_target = np.clip(photometry["targets"][train_index].mean(axis=0), 0.05, 0.95)
        net.magnitude_head[-1].bias.copy_(torch.logit(torch.as_tensor(mean_target, dtype=torch.float32)))
    data = {**_source_of(dataset, data_source), "bands": list(dataset.bands), "size": int(size),
            "pixel_scale_arcsec": dataset.pixel_scale_arcsec, "classes": []}
    record = _start_record(config, runs_root, run_id, data, resume)
    task = PretextTask(net, config.pretext, torch.as_tensor(sky_sigma, dtype=torch.float32), config.learning_rate,
                       config.weight_decay, config.contrastive_weight)
    arrays = {"images": dataset.images, "targets": photometry["targets"]}
    epochs = _epochs(len(train_index), config.batch_size, config.epochs, config.steps_at_least)
    probe_epochs = config.head_epochs if config.pretext == "contrastive" else 0
    probe_steps = probe_epochs * count_batches(len(train_index), 256)
    steps = epochs * count_batches(len(train_index), config.batch_size) + probe_steps
    reporter = _Reporter(record.path, steps, progress)
    started = time.perf_counter()
    with recording_outcome(record):
        history = train(task, {k: v[train_index] for k, v in arrays.items()},
                        {k: v[val_index] for k, v in arrays.items()} if len(val_index) else None,
                        _settings(config, epochs), progress=reporter.phase(config.pretext, epochs * count_batches(
                            len(train_index), config.batch_size)), checkpoint_dir=record.path, resume=resume,
                        should_stop=should_stop)
        run = SSLRun(record, net.cpu().eval())
        features = run.features(dataset.images)
        if probe_epochs:
            # A contrastive network has no magnitude head of its own: fit one on its frozen features,
            # so every pretext run predicts magnitudes (and the two objectives can be compared).
            head_task = HeadTask(net.magnitude_head, config.head_learning_rate, config.weight_decay, kind="magnitudes")
            feature_arrays = {"features": features, "targets": photometry["targets"]}
            train(head_task, {k: v[train_index] for k, v in feature_arrays.items()},
                  {k: v[val_index] for k, v in feature_arrays.items()}, LoopSettings(epochs=probe_epochs, batch_size=256, seed=config.seed + 1,
                                                         device=config.device, lr_schedule="cosine"),
                  progress=reporter.phase("magnitude probe", probe_steps), should_stop=should_stop)
            net.cpu().eval()
    if not is_main_process():  # the other torchrun ranks have helped train; rank 0 saves the run
        return run
    save_modules(record.path / "weights.safetensors", {"net": net})
    predicted = run.predict_magnitudes(dataset.images)
    test = split == 2
    residual = predicted - photometry["magnitude"]
    saved = {"ids": np.asarray(dataset.labels["id"]), **_split_arrays(split), "features": features,
             "predicted_magnitude": predicted, "magnitude": photometry["magnitude"],
             "magnitude_error": photometry["magnitude_error"], "true_magnitude": photometry["true_magnitude"]}
    saved.update(_label_arrays(dataset))
    save_arrays(record.path / "arrays.npz", saved)
    bands = list(dataset.bands)
    record.history = history.to_dict()
    record.metrics = {
        "train_seconds": round(time.perf_counter() - started, 2),
        "n_objects": len(dataset), "n_kept": int(len(kept)), "n_test": int(test.sum()),
        "pretext_mae_per_band": dict(zip(bands, np.round(np.abs(residual[test]).mean(axis=0), 4).tolist())),
        "pretext_mae": float(np.abs(residual[test]).mean()),
        "photometric_error_per_band": dict(zip(bands, np.round(np.median(photometry["magnitude_error"][test], axis=0),
                                                               4).tolist())),
        "photometry_minus_true_per_band": dict(zip(bands, np.round(np.nanmedian(
            photometry["magnitude"][test] - photometry["true_magnitude"][test], axis=0), 4).tolist())),
        "device": str(pick_device(config.device)),
    }
    record.status = "done"
    record.write()
    return run


# ============================================================================ downstream
def downstream_split(target: np.ndarray, n_labels: int | None, val_objects: int, test_fraction: float,
                     seed: int) -> np.ndarray:
    """0 labelled training, 1 validation, 2 test, -1 unused training pool. Validation and test are
    drawn with :data:`SPLIT_SEED` (the same for every seed and label count); the ``n_labels``
    training objects with ``seed``, at least one of every class."""
    n = len(target)
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_test = int(round(test_fraction * n))
    n_val = min(val_objects, max(1, (n - n_test) // 4))
    split = np.full(n, -1, dtype=np.int8)
    split[order[:n_test]], split[order[n_test:n_test + n_val]] = 2, 1
    pool = order[n_test + n_val:]
    if n_labels is None or n_labels >= len(pool):
        split[pool] = 0
        return split
    rng = np.random.default_rng([seed, 101])
    chosen = list(rng.choice(pool, size=n_labels, replace=False))
    for label in np.unique(target[pool]):  # every class at least once
        if not np.any(target[chosen] == label):
            chosen[int(rng.integers(len(chosen)))] = rng.choice(pool[target[pool] == label])
    split[np.asarray(chosen)] = 0
    return split


def _classes(dataset: Dataset) -> list[str]:
    if "target" not in dataset.labels.colnames:
        raise DataError(f"A downstream run needs a 'target' label (class index); this dataset has "
                        f"{', '.join(dataset.labels.colnames)}.")
    classes = (dataset.provenance or {}).get("classes")
    target = np.asarray(dataset.labels["target"], dtype=np.int64)
    if not classes:
        classes = [str(i) for i in range(int(target.max()) + 1)]
        if "target_name" in dataset.labels.colnames:
            for index, name in zip(target, np.asarray(dataset.labels["target_name"])):
                classes[index] = str(name)
    if target.min() < 0 or target.max() >= len(classes):
        raise DataError(f"'target' must be class indices 0..{len(classes) - 1}.")
    return list(classes)


def _fit_downstream(dataset, config, progress, runs_root, run_id, data_source, should_stop, resume,
                    pretext_run) -> SSLRun:
    classes = _classes(dataset)
    target = np.asarray(dataset.labels["target"], dtype=np.int64)
    if config.uses_pretext_run:
        if pretext_run is None:
            raise DataError(f"Scheme {config.scheme!r} starts from a pre-trained run; give one (--pretext-run).")
        expected = "contrastive" if config.scheme == "frozen_contrastive" else None
        if expected and pretext_run.config.pretext == "magnitudes":
            raise DataError(f"Scheme {config.scheme!r} needs a contrastive pretext run; {pretext_run.id} learned "
                            "magnitudes only.")
        if tuple(pretext_run.bands) != tuple(dataset.bands):
            raise DataError(f"The pretext run {pretext_run.id} has bands {', '.join(pretext_run.bands)}; "
                            f"this dataset has {', '.join(dataset.bands)}.")
    split = downstream_split(target, config.n_labels, config.val_objects, config.test_fraction, config.seed)
    train_index, val_index = np.flatnonzero(split == 0), np.flatnonzero(split == 1)
    size = dataset.images.shape[-1]
    base = pretext_run.net.config if config.uses_pretext_run else config
    backbone = "resnet18" if config.scheme == "imagenet" else base.backbone
    # The network's shape follows the pretext run it starts from (its magnitude head included).
    net_config = SSLConfig.from_json({**config.to_json(), "backbone": backbone, "width": base.width,
                                      "fixed_apertures_arcsec": base.fixed_apertures_arcsec})
    net = CutoutNet(len(dataset.bands), net_config, n_classes=len(classes), size=size)
    if config.uses_pretext_run:
        state = {k: v for k, v in pretext_run.net.state_dict().items() if not k.startswith("classifier")}
        net.load_state_dict(state, strict=False)
    else:
        noise = pretext_targets(dataset.subset(train_index[:2000]), config.max_error)["noise"]
        with torch.no_grad():
            net.softening.copy_(torch.as_tensor(np.maximum(np.median(noise, axis=0), 1e-6), dtype=torch.float32))
        if config.scheme == "imagenet":
            load_imagenet_backbone(net)
    data = {**_source_of(dataset, data_source), "bands": list(dataset.bands), "size": int(size),
            "pixel_scale_arcsec": dataset.pixel_scale_arcsec, "classes": classes,
            "pretext_run": pretext_run.id if pretext_run is not None else None,
            "n_labels": int(len(train_index)),
            "pretext_config": pretext_run.config.to_json() if pretext_run is not None else None}
    record = _start_record(net_config, runs_root, run_id, data, resume)
    frozen = config.scheme in ("frozen_pretext", "frozen_contrastive", "imagenet")
    head_rows = len(train_index) * config.head_views  # every orientation of each labelled cutout
    min_steps = config.steps_at_least
    head_epochs = (_epochs(head_rows, 256, config.head_epochs, min_steps)
                   if frozen or config.scheme == "finetune_pretext" else 0)
    epoch_index = _repeated(train_index)
    image_steps = (3 * min_steps) // 4 if config.scheme == "finetune_pretext" else min_steps
    image_epochs = 0 if frozen else _epochs(len(epoch_index), config.batch_size, config.epochs, image_steps)
    steps = head_epochs * count_batches(head_rows, 256) + image_epochs * count_batches(len(epoch_index),
                                                                                       config.batch_size)
    reporter = _Reporter(record.path, steps, progress)
    started = time.perf_counter()
    run = SSLRun(record, net.eval(), pretext_net=pretext_run.net if pretext_run is not None else None)
    history = None
    with recording_outcome(record):
        if head_epochs:
            train_views = dihedral_views(dataset.images[train_index], config.head_views)
            arrays = {"features": np.concatenate([run.features(view) for view in train_views]
                                                 + [run.features(dataset.images[val_index])]),
                      "target": np.concatenate([target[train_index]] * len(train_views) + [target[val_index]])}
            n_train = head_rows
            settings = LoopSettings(epochs=head_epochs, batch_size=256, seed=config.seed, device=config.device,
                                    lr_schedule="cosine")
            history = train(HeadTask(net.classifier, config.head_learning_rate, config.head_weight_decay),
                            {k: v[:n_train] for k, v in arrays.items()}, {k: v[n_train:] for k, v in arrays.items()},
                            settings, progress=reporter.phase("head", head_epochs * count_batches(n_train, 256)),
                            should_stop=should_stop)
        if image_epochs:
            rate = config.finetune_learning_rate if config.scheme == "finetune_pretext" else config.learning_rate
            arrays = {"images": dataset.images, "target": target}
            history = train(ClassifierTask(net, rate, config.weight_decay),
                            {k: v[epoch_index] for k, v in arrays.items()}, {k: v[val_index] for k, v in arrays.items()},
                            _settings(config, image_epochs), progress=reporter.phase(
                                "all layers" if config.scheme == "finetune_pretext" else "scratch",
                                image_epochs * count_batches(len(epoch_index), config.batch_size)),
                            should_stop=should_stop)
    net.cpu().eval()
    if not is_main_process():
        return run
    modules = {"net": net}
    if pretext_run is not None:
        modules["pretext"] = pretext_run.net
    save_modules(record.path / "weights.safetensors", modules)
    features = run.features(dataset.images)
    proba = run.proba_from_features(features)
    predicted = proba.argmax(axis=1)
    test = split == 2
    saved = {"ids": np.asarray(dataset.labels["id"]), **_split_arrays(split), "features": features, "proba": proba,
             "predicted": predicted, "target": target}
    saved.update(_label_arrays(dataset))
    save_arrays(record.path / "arrays.npz", saved)
    record.history = history.to_dict() if history is not None else {}
    record.metrics = {
        "train_seconds": round(time.perf_counter() - started, 2),
        "scheme": config.scheme, "n_labels": int(len(train_index)), "n_test": int(test.sum()),
        "accuracy": float(accuracy_score(target[test], predicted[test])),
        "macro_f1": float(f1_score(target[test], predicted[test], average="macro", labels=range(len(classes)),
                                   zero_division=0)),
        "recall_per_class": {name: float(np.mean(predicted[test & (target == i)] == i)) if np.any(test & (target == i))
                             else None for i, name in enumerate(classes)},
        "device": str(pick_device(config.device)),
    }
    record.status = "done"
    record.write()
    return run


def _split_arrays(split: np.ndarray) -> dict[str, np.ndarray]:
    """``split`` (0 train, 1 validation, 2 held out) and ``role`` (0 train, 1 validation, 2 test, 3
    unused) from the internal split with -1 for unused objects."""
    split = np.asarray(split)
    return {"split": np.where(split < 0, 2, split).astype(np.int8), "role": np.where(split < 0, 3, split).astype(np.int8)}


def _label_arrays(dataset: Dataset) -> dict[str, np.ndarray]:
    saved = {}
    for name in dataset.labels.colnames:
        column = np.asarray(dataset.labels[name])
        if name != "id" and column.dtype.kind in "fiubUS":
            saved[f"label_{name}"] = column.astype(str) if column.dtype.kind in "US" else column
    return saved

