"""Training a DANN (or its source-only / oracle baselines) with the shared loop, and :func:`fit`,
which splits the data, trains, picks the checkpoint and saves the run.

Rows: source rows (labelled models) split 0 train / 1 validation; target rows ("observed",
labels kept for evaluation only) split 0 adaptation pool (unlabelled in training) / 2 test.
The oracle trains on the labelled target pool instead (its validation: part of that pool).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from sklearn.metrics import confusion_matrix, f1_score
from torch.nn import functional as F

from ...data.dataset import DataError, Dataset
from ...runs import RunRecord, claim_run_folder, save_arrays, write_progress
from ...training import (LoopSettings, TrainingCancelled, atomic_save_tensors, is_main_process,
                         pick_device, read_checkpoint_state, save_modules, seed_everything, train)
from ...data.simulators.nebulae import CLASSES
from .config import DannConfig
from .model import DannNetwork, lambda_at
from .run import DannRun, source_from_dataset
from .shift import bbse_prior, censor, detection_limits, em_prior, line_levels
from .validation import pick, rank_correlations, validator_scores


# ============================================================================ data
def feature_matrix(labels, features) -> np.ndarray:
    """The log ratios ``features`` of a labels table as float32 (n, n_features), NaN kept."""
    return np.column_stack([np.asarray(labels[name], dtype=np.float32) for name in features])


def split_rows(labels, config: DannConfig) -> np.ndarray:
    """0 train / 1 validation (source) / 2 test (target), reproducible from ``config.seed``."""
    rng = np.random.default_rng(config.seed + 17)
    target = np.asarray(labels["domain"]) == "target"
    split = np.zeros(len(labels), np.int8)
    draw = rng.uniform(size=len(labels))
    split[~target & (draw < config.val_fraction)] = 1
    split[target & (draw < config.target_test_fraction)] = 2
    return split


def classification_metrics(true: np.ndarray, predicted: np.ndarray) -> dict:
    """Accuracy, macro-F1, per-class recall and the confusion matrix (rows: true HII, PN, SNR)."""
    true, predicted = np.asarray(true, int), np.asarray(predicted, int)
    confusion = confusion_matrix(true, predicted, labels=np.arange(len(CLASSES)))
    totals = confusion.sum(1)
    recall = {name: (float(confusion[i, i] / totals[i]) if totals[i] else None) for i, name in enumerate(CLASSES)}
    return {"accuracy": float((true == predicted).mean()) if len(true) else None,
            "macro_f1": float(f1_score(true, predicted, labels=np.arange(len(CLASSES)), average="macro",
                                       zero_division=0)),
            "recall": recall, "confusion": confusion.tolist(), "n": int(len(true))}


# ============================================================================ training task
class DannTask:
    """One optimiser step of the label loss (+ the domain loss through gradient reversal)."""

    monitor = "val_loss"

    def __init__(self, network: DannNetwork, target_x: np.ndarray | None, total_steps: int, steps_per_epoch: int = 1):
        self.network = network
        self.config = network.config
        self.modules = {"network": network}
        self.optimizers = {"network": torch.optim.Adam(network.parameters(), lr=self.config.learning_rate,
                                                       weight_decay=self.config.weight_decay)}
        self.target_x = None if target_x is None else torch.as_tensor(target_x)
        self.total_steps = max(1, total_steps)
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.step, self.epoch = 0, None
        self.source_prior = None  # class frequencies of the training rows (set by fit)
        self.target_prior = None  # estimated target class balance (class_weighting="estimated")
        self.prior_rows = None  # target rows (log ratios) the estimate reads
        self.prior_source = None  # held-out source rows (log ratios as seen, classes): the confusion matrix
        self.em_estimate = None  # the EM estimate, for comparison only
        self.limits = None  # detection limits of the target rows (detection_limits="target")
        self.rng = None  # numpy draws (detection limits), seeded per epoch by start_epoch

    def start_epoch(self, epoch: int) -> None:
        """Set the step count and the numpy draws from the epoch alone (the loop reseeds torch's),
        and (class weighting "estimated") estimate the target prior when none is known yet: so a
        run resumed at this epoch trains exactly as the uninterrupted run did."""
        self.epoch, self.step = epoch, epoch * self.steps_per_epoch
        self.rng = np.random.default_rng([self.config.seed + 11, epoch])
        if epoch > 0 and self.target_prior is None and self.config.class_weighting == "estimated":
            self.estimate_target_prior()  # what the end of the epoch before estimated (same weights)

    def estimate_target_prior(self) -> None:
        """BBSE estimate of the target class balance with the network as it is now (and EM's)."""
        if self.prior_rows is None or self.prior_source is None or self.source_prior is None:
            return
        was_training = self.network.training
        self.network.eval()
        with torch.no_grad():
            device = next(self.network.parameters()).device
            probability = torch.softmax(self.network(self.prior_rows.to(device)), -1).cpu().numpy()
            source_x, source_y = self.prior_source
            source_predicted = self.network(source_x.to(device)).argmax(1).cpu().numpy()
        self.network.train(was_training)
        prior = bbse_prior(probability.argmax(1), source_predicted, source_y.numpy())
        self.target_prior = torch.as_tensor(prior, dtype=torch.float32)
        self.em_estimate = em_prior(probability, self.source_prior.numpy())

    def _source_weights(self, y: torch.Tensor) -> torch.Tensor | None:
        """Per-row weights p_target(y) / p_source(y) of the source rows in the domain loss."""
        if self.config.class_weighting == "none" or self.source_prior is None:
            return None
        if self.config.class_weighting == "prior":
            prior = torch.as_tensor(self.config.target_prior, dtype=torch.float32)
            self.target_prior = prior / prior.sum()
        if self.target_prior is None:  # "estimated", before the first estimate
            return None
        weights = (self.target_prior / self.source_prior).to(y.device)[y]
        return weights / weights.mean()

    def observe_source(self, x: torch.Tensor, levels: torch.Tensor | None) -> torch.Tensor:
        """Source ratios as the target would record them: at a random target row's detection limits."""
        if self.limits is None or levels is None:
            return x
        picked = self.limits[self.rng.integers(0, len(self.limits), len(levels))]
        return torch.as_tensor(censor(levels.cpu().numpy(), picked, self.config.features)).to(x.device)

    def training_step(self, batch: dict[str, torch.Tensor], epoch: int) -> dict[str, float]:
        if epoch != self.epoch:
            self.start_epoch(epoch)
        network, config = self.network, self.config
        x, y = batch["x"], batch["y"]
        x = self.observe_source(x, batch.get("levels"))
        if config.noise_sigma > 0:  # noise injection into the (source) training features, dex
            x = x + config.noise_sigma * torch.randn(x.shape).to(x.device)
        features = network.features(x)
        label_loss = F.cross_entropy(network.classifier(features), y)
        loss, metrics = label_loss, {"label_loss": float(label_loss.detach())}
        if network.domain_head is not None and self.target_x is not None:
            strength = lambda_at(self.step / self.total_steps, config)
            pick_rows = torch.randint(len(self.target_x), (len(x),))
            target_features = network.features(self.target_x[pick_rows].to(x.device))
            logits = network.domain_logits(torch.cat([features, target_features]), strength)
            domain = torch.cat([torch.zeros(len(x)), torch.ones(len(x))]).to(x.device)
            weights = self._source_weights(y)
            if weights is not None:
                weights = torch.cat([weights, torch.ones(len(x), device=x.device)])
            domain_loss = F.binary_cross_entropy_with_logits(logits, domain, weight=weights)
            loss = loss + domain_loss
            accuracy = ((logits > 0).float() == domain).float().mean()
            metrics.update(domain_loss=float(domain_loss.detach()), domain_accuracy=float(accuracy), strength=strength)
        self.optimizers["network"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["network"].step()
        self.step += 1
        metrics["loss"] = float(loss.detach())
        return metrics

    def validation_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        logits = self.network(batch["x"])
        return {"loss": float(F.cross_entropy(logits, batch["y"])),
                "accuracy": float((logits.argmax(1) == batch["y"]).float().mean())}


EPOCHS_FILE = "epochs.safetensors"


def _snapshot(network: DannNetwork) -> dict:
    return {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}


def _write_epochs(folder, checkpoints: list[dict], snapshots: list[dict]) -> None:
    """Every epoch's validator row (JSON metadata) and weights so far, as one safetensors file."""
    tensors = {f"{index}.{key}": value.contiguous() for index, snapshot in enumerate(snapshots)
               for key, value in snapshot.items()}
    atomic_save_tensors(Path(folder) / EPOCHS_FILE, tensors, metadata={"rows": json.dumps(checkpoints)})


def _read_epochs(folder) -> tuple[list[dict], list[dict]]:
    """The rows and weights of the epochs a resumed run's checkpoint has passed (a kill between
    the checkpoint and this file loses the last epoch's row, not the run)."""
    path, state = Path(folder) / EPOCHS_FILE, read_checkpoint_state(Path(folder))
    if not path.exists() or state is None:
        return [], []
    with safe_open(str(path), framework="pt") as handle:
        rows = json.loads((handle.metadata() or {}).get("rows", "[]"))
    tensors = load_file(str(path))
    kept = [index for index, row in enumerate(rows) if row["epoch"] <= state["epoch"]]
    snapshots = [{key.split(".", 1)[1]: value for key, value in tensors.items() if key.split(".", 1)[0] == str(index)}
                 for index in kept]
    return [rows[index] for index in kept], snapshots


# ============================================================================ fit
def fit(dataset: Dataset, config: DannConfig, progress: Callable[[int, int, dict], None] | None = None,
        runs_root=None, run_id: str | None = None, data_source: dict | None = None,
        should_stop: Callable[[], bool] | None = None, resume: bool = False) -> DannRun:
    """Train ``config.mode`` on a nebula dataset (source + target rows; see
    :func:`astrocore.data.simulators.nebulae_observe.simulate_nebulae`) and save the run."""
    labels = dataset.labels
    missing = [name for name in ("domain", "class_index", *config.features) if name not in labels.colnames]
    if missing:
        raise DataError(f"A nebula dataset needs columns {missing}; it has {labels.colnames[:12]}...")
    seed_everything(config.seed)
    x = feature_matrix(labels, config.features)
    y = np.asarray(labels["class_index"], np.int64)
    target = np.asarray(labels["domain"]) == "target"
    finite = np.isfinite(x).all(1)
    split = split_rows(labels, config)
    source_train = np.flatnonzero(~target & (split == 0) & finite)
    source_val = np.flatnonzero(~target & (split == 1) & finite)
    target_pool = np.flatnonzero(target & (split == 0) & finite)
    target_test = np.flatnonzero(target & (split == 2) & finite)
    if min(len(source_train), len(target_pool), len(target_test)) < 10:
        raise DataError(f"Too few usable rows: {len(source_train)} source, {len(target_pool)} target pool, "
                        f"{len(target_test)} target test (need >= 10 each, with finite {', '.join(config.features)}).")
    if config.mode == "oracle":  # labelled target rows: 85 % train, 15 % validation
        order = np.random.default_rng(config.seed).permutation(target_pool)
        cut = int(0.85 * len(order))
        train_rows, val_rows = order[:cut], order[cut:]
    else:
        train_rows, val_rows = source_train, source_val
    # The source rows as the catalogue would record them (one fixed draw of target detection
    # limits: standardisation, validation, validators); training draws new limits every batch.
    x_seen, levels, limits = x, None, None
    if config.detection_limits == "target" and config.mode != "oracle":
        limits = detection_limits(labels, target_pool)
        levels = np.zeros((len(x), limits.shape[1]), np.float32)
        source_rows = np.concatenate([source_train, source_val])
        levels[source_rows] = line_levels(labels, source_rows)
        x_seen = x.copy()
        picked = limits[np.random.default_rng(config.seed + 13).integers(0, len(limits), len(source_rows))]
        x_seen[source_rows] = censor(levels[source_rows], picked, config.features)

    network = DannNetwork(config)
    with torch.no_grad():
        network.feature_mean.copy_(torch.as_tensor(x_seen[train_rows].mean(0)))
        network.feature_std.copy_(torch.as_tensor(np.maximum(x_seen[train_rows].std(0), 1e-3)))
    steps_per_epoch = int(np.ceil(len(train_rows) / config.batch_size))
    task = DannTask(network, x[target_pool] if config.mode == "dann" else None, config.epochs * steps_per_epoch,
                    steps_per_epoch)
    task.source_prior = torch.as_tensor(np.bincount(y[train_rows], minlength=3) / len(train_rows), dtype=torch.float32)
    task.limits = limits
    if config.mode == "dann" and config.class_weighting == "estimated":
        rows = np.random.default_rng(config.seed + 7).permutation(target_pool)[:4000]
        task.prior_rows = torch.as_tensor(x[rows])
        task.prior_source = (torch.as_tensor(x_seen[source_val]), torch.as_tensor(y[source_val]))

    folder = claim_run_folder(runs_root, run_id, "dann", config.mode, resume)
    run_id = folder.name
    record = RunRecord(id=run_id, path=folder, method="dann", config=config.to_json(),
                       data=data_source or source_from_dataset(dataset))
    if is_main_process() and not (resume and (folder / "run.json").exists()):
        record.write()

    rng = np.random.default_rng(config.seed + 3)
    validator_rows = rng.permutation(target_pool)[:config.validator_objects]
    # Each epoch's validator scores and weights, from which the run picks its epoch; kept on disk
    # as they grow, so a resumed run still picks among the epochs before the interruption.
    checkpoints, snapshots = _read_epochs(folder) if resume else ([], [])

    def report(step, total, metrics):
        if "seconds" in metrics:  # end of an epoch: score the checkpoint, keep its weights
            row = {"epoch": int(metrics["epoch"]), "val_loss": metrics.get("val_loss")}
            row.update(validator_scores(network, x_seen[source_val], y[source_val], x[validator_rows], config.seed))
            task.estimate_target_prior()  # for the next epoch's domain-loss weights
            if task.target_prior is not None:
                row["target_prior"] = [round(float(v), 4) for v in task.target_prior]
            if task.em_estimate is not None:
                row["target_prior_em"] = [round(float(v), 4) for v in task.em_estimate]
            with torch.no_grad():  # true target accuracy: for evaluating the validators only
                predicted = network(torch.as_tensor(x[target_test])).argmax(1).numpy()
            row["target_accuracy"] = float((predicted == y[target_test]).mean())
            checkpoints.append(row)
            snapshots.append(_snapshot(network))
            if is_main_process():
                _write_epochs(folder, checkpoints, snapshots)
            metrics = {**metrics, **{k: v for k, v in row.items() if k != "epoch"}}
        write_progress(folder, step, total, metrics)
        if progress is not None:
            progress(step, total, metrics)

    settings = LoopSettings(epochs=config.epochs, batch_size=config.batch_size, seed=config.seed,
                            device=config.device, lr_schedule=config.lr_schedule)
    started = time.perf_counter()
    # The networks are a few thousand weights: one thread is faster than several fighting
    # over shared cores (restored afterwards).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_arrays = {"x": x_seen[train_rows], "y": y[train_rows]}
        if levels is not None:
            train_arrays["levels"] = levels[train_rows]
        history = train(task, train_arrays, {"x": x_seen[val_rows], "y": y[val_rows]} if len(val_rows) else None,
                        settings, progress=report, checkpoint_dir=folder, resume=resume, should_stop=should_stop)
    except TrainingCancelled as error:
        record.status, record.message = "cancelled", str(error)
        record.write()
        raise
    except Exception as error:
        record.status, record.message = "failed", f"{type(error).__name__}: {error}"
        record.write()
        raise
    finally:
        torch.set_num_threads(threads)
    train_seconds = time.perf_counter() - started
    network.cpu()
    chosen = pick(checkpoints, config.selection) if checkpoints else None
    if chosen is not None:
        network.load_state_dict(snapshots[chosen])
    network.eval()
    run = DannRun(record, network)
    if not is_main_process():  # the other torchrun ranks have helped train; rank 0 saves the run
        return run
    save_modules(folder / "weights.safetensors", {"network": network})

    probability = run.predict_proba(np.nan_to_num(x, nan=0.0))
    predicted = probability.argmax(1)
    predicted[~finite] = -1
    save_arrays(folder / "arrays.npz", {
        "ids": np.asarray(labels["id"]), "split": split, "domain": target.astype(np.int8), "class_index": y,
        "predicted": predicted, "probability": probability.astype(np.float32), "usable": finite})
    record.history = {**history.to_dict(), "checkpoints": checkpoints}
    record.metrics = {
        "train_seconds": train_seconds,
        "device": str(pick_device(config.device)),
        "selected_epoch": None if chosen is None else checkpoints[chosen]["epoch"],
        "target": classification_metrics(y[target_test], predicted[target_test]),
        "source_validation": classification_metrics(y[source_val], run.predict_proba(x_seen[source_val]).argmax(1)),
        "target_prior_estimate": (None if task.target_prior is None
                                  else dict(zip(CLASSES, (float(v) for v in task.target_prior)))),
        "target_prior_em": (None if task.em_estimate is None
                            else dict(zip(CLASSES, (float(v) for v in task.em_estimate)))),
        "validators": None if chosen is None else {k: checkpoints[chosen][k] for k in checkpoints[chosen]
                                                    if k not in ("epoch",)},
        "validator_rank_correlation": rank_correlations(checkpoints),
        "n_rows": {"source_train": len(source_train), "source_val": len(source_val),
                   "target_pool": len(target_pool), "target_test": len(target_test)},
    }
    record.status = "done"
    record.write()
    (folder / EPOCHS_FILE).unlink(missing_ok=True)  # the chosen epoch is saved; the history keeps the rows
    return run
