"""Training the disentangler: the tasks for the shared loop (:func:`astrocore.training.train`), the
twin sampler, the twin codes, the decoder refit and :func:`fit`, which runs them in order and saves
the run."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...data.dataset import DataError, Dataset
from ...data.store import MappedRows, is_lazy, iter_chunks, take_rows
from ...runs import RunRecord, claim_run_folder, recording_outcome, save_arrays, write_progress
from ...training import (LoopSettings, TrainingCancelled, count_batches, is_main_process, pick_device,
                         save_modules, seed_everything, train)
from .config import DisentanglerConfig
from .dependence import dependence
from .model import Disentangler, PolynomialReader
from .run import DisentanglerRun


# ============================================================================ training task
class DisentanglerTask:
    """The per-batch optimisation of a :class:`Disentangler` for :func:`astrocore.training.train`."""

    monitor = "val_objective"

    def __init__(self, model: Disentangler, twins: "TwinSampler | None" = None,
                 training_arrays: dict[str, np.ndarray] | None = None):
        """``training_arrays`` ({"flux", "cp"} of the training objects) is needed only for the
        adversaries' refit at each epoch (``adversary_refit_steps``)."""
        self.model = model
        self.twins = twins if model.config.twin_weight > 0 else None
        self.training_arrays = training_arrays
        self.refitted_epoch: int | None = None
        self.refit_loss = float("nan")  # the refitted adversaries' last loss (this epoch)
        config = model.config
        self.modules = {"model": model}
        autoencoder = [p for name, p in model.named_parameters() if not name.startswith("adversaries")]
        self.optimizers = {"autoencoder": torch.optim.Adam(autoencoder, lr=config.learning_rate)}
        if model.adversaries:
            self.optimizers["adversary"] = torch.optim.Adam(
                model.adversaries.parameters(), lr=config.adversary_learning_rate
            )

    def _lambda_scale(self, epoch: int) -> float:
        warmup = self.model.config.lambda_warmup_epochs
        return 1.0 if warmup <= 0 else min(1.0, (epoch + 1) / warmup)

    def _adversarial_term(self, losses: list[torch.Tensor], scale: float) -> torch.Tensor:
        config = self.model.config
        term = torch.zeros((), device=self.model.flux_offset.device)
        for index, loss in enumerate(losses):
            weight = scale * config.lambda_for(index if config.mode == "mdat" else 0)
            if config.objective == "paper":
                term = term - weight * loss
            else:  # bounded: no reward for pushing an adversary beyond a constant guess
                term = term + weight * F.relu(self.model.chance_loss[index] - loss)
        return term

    def training_step(self, batch: dict[str, torch.Tensor], epoch: int) -> dict[str, float]:
        model, config = self.model, self.model.config
        flux, cp = batch["flux"], batch["cp"]
        scaled_flux, cp_inputs = model.scale_flux(flux), model.cp_inputs(cp)
        metrics = {}
        if (config.adversary_refit_steps > 0 and model.adversaries and self.training_arrays is not None
                and self.refitted_epoch != epoch):
            self.refit_loss = self._refit_adversaries(epoch)
            self.refitted_epoch = epoch
        if self.refitted_epoch is not None:
            metrics["adversary_refit"] = self.refit_loss  # every step: the loop averages per epoch
        # One encoder pass serves both players: the adversaries train on a detached copy first
        # (the encoder's weights do not change meanwhile), then the autoencoder steps against them.
        latent = model.encode_scaled(model.with_input_noise(scaled_flux), cp_inputs)
        if model.adversaries:
            fixed_latent = latent.detach()
            for _ in range(config.adversary_steps):
                adversary_loss = sum(model.adversary_losses(fixed_latent, cp))
                self.optimizers["adversary"].zero_grad(set_to_none=True)
                adversary_loss.backward()
                self.optimizers["adversary"].step()
            metrics["adversary"] = float(adversary_loss.detach())
        reconstruction = F.mse_loss(model.decode_scaled(latent, cp_inputs), scaled_flux)
        loss = reconstruction
        if self.twins is not None:
            # The twin's spectrum from this star's latent, and the same latent for both: the
            # second term removes variation along Teff/logg that the decoder would ignore.
            twin_flux, twin_cp = self.twins.sample(batch["index"], flux.device)
            scaled_twin, twin_cp_inputs = model.scale_flux(twin_flux), model.cp_inputs(twin_cp)
            twin = F.mse_loss(model.decode_scaled(latent, twin_cp_inputs), scaled_twin)
            twin_latent = F.mse_loss(model.encode_scaled(model.with_input_noise(scaled_twin), twin_cp_inputs), latent)
            loss = loss + config.twin_weight * (twin + config.twin_latent_factor * twin_latent)
            metrics.update(twin=float(twin.detach()), twin_latent=float(twin_latent.detach()))
        if self._uses_dependence():
            penalty = dependence(config.dependence, latent, model.scale_cp(cp))
            loss = loss + self._lambda_scale(epoch) * config.dependence_weight * penalty
            metrics["dependence"] = float(penalty.detach())
        if model.adversaries:
            losses = model.adversary_losses(latent, cp)
            loss = loss + self._adversarial_term(losses, self._lambda_scale(epoch))
            for name, value in zip(self._adversary_names(), losses):
                metrics[f"adv_{name}"] = float(value.detach())
        self.optimizers["autoencoder"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["autoencoder"].step()
        metrics.update(recon=float(reconstruction.detach()), loss=float(loss.detach()))
        return metrics

    def _uses_dependence(self) -> bool:
        config = self.model.config
        return config.mode != "noat" and config.dependence != "none" and config.dependence_weight > 0

    def _refit_adversaries(self, epoch: int) -> float:
        """Reinitialise the adversaries and fit them to the frozen latent of every training
        spectrum (``adversary_refit_steps`` batches); returns their last batch loss."""
        model, config = self.model, self.model.config
        device = model.flux_offset.device
        cp = torch.as_tensor(self.training_arrays["cp"])
        model.eval()  # the batch-normalised latent with its running statistics, as probes see it
        with torch.no_grad():  # chunk by chunk: the flux may be on disk
            latent = torch.cat([
                model.encode_scaled(model.scale_flux(torch.as_tensor(flux).to(device)),
                                    model.cp_inputs(cp[start:start + len(flux)].to(device)))
                for start, flux in iter_chunks(self.training_arrays["flux"], 4096)])
        model.train()
        cp = cp.to(device)
        for module in model.adversaries.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        optimizer = self.optimizers["adversary"]
        optimizer.state.clear()
        generator = torch.Generator().manual_seed(config.seed * 7919 + epoch)
        loss = torch.zeros(())
        for _ in range(config.adversary_refit_steps):
            batch = torch.randint(len(latent), (config.batch_size,), generator=generator).to(device)
            loss = sum(model.adversary_losses(latent[batch], cp[batch]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return float(loss.detach())

    def _adversary_names(self) -> list[str]:
        config = self.model.config
        return list(config.conditional) if config.mode == "mdat" else ["joint"]

    def validation_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        model = self.model
        flux, cp = batch["flux"], batch["cp"]
        scaled_flux, cp_inputs = model.scale_flux(flux), model.cp_inputs(cp)
        latent = model.encode_scaled(scaled_flux, cp_inputs)
        decoded = model.decode_scaled(latent, cp_inputs)
        reconstruction = F.mse_loss(decoded, scaled_flux)
        metrics = {
            "recon": float(reconstruction),
            "recon_flux_mse": float(F.mse_loss(model.unscale_flux(decoded), flux)),
        }
        objective = reconstruction
        if self._uses_dependence():
            penalty = dependence(model.config.dependence, latent, model.scale_cp(cp))
            metrics["dependence"] = float(penalty)
            objective = objective + model.config.dependence_weight * penalty
        if model.adversaries:
            losses = model.adversary_losses(latent, cp)
            for name, value in zip(self._adversary_names(), losses):
                metrics[f"adv_{name}"] = float(value)
            bounded = sum(
                model.config.lambda_for(i if model.config.mode == "mdat" else 0)
                * F.relu(model.chance_loss[i] - loss)
                for i, loss in enumerate(losses)
            )
            objective = objective + bounded
        metrics["objective"] = float(objective)
        return metrics


class DecoderFitTask:
    """Fit a decoder alone: mean squared error of ``decoder(batch["inputs"])`` against
    ``batch["target"]`` (both in network units). Used to refit a disentangler's decoder on its
    frozen latents, to train the label emulator and the regressor that estimates its labels."""

    monitor = "val_recon"

    def __init__(self, decoder: nn.Module, learning_rate: float):
        self.decoder = decoder
        self.modules = {"decoder": decoder}
        self.optimizers = {"decoder": torch.optim.Adam(decoder.parameters(), lr=learning_rate)}

    def training_step(self, batch: dict[str, torch.Tensor], epoch: int) -> dict[str, float]:
        loss = F.mse_loss(self.decoder(batch["inputs"]), batch["target"])
        self.optimizers["decoder"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["decoder"].step()
        return {"recon": float(loss.detach())}

    def validation_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        return {"recon": float(F.mse_loss(self.decoder(batch["inputs"]), batch["target"]))}


class TwinSampler:
    """Draws, for each training object, another object of the same chemical fingerprint."""

    def __init__(self, flux: np.ndarray, cp: np.ndarray, fingerprint: np.ndarray):
        self.flux = flux if is_lazy(flux) else torch.as_tensor(flux)  # on disk: read the twins' rows
        self.cp = torch.as_tensor(cp)
        order = np.argsort(fingerprint, kind="stable")
        _, starts, counts = np.unique(fingerprint[order], return_index=True, return_counts=True)
        position = np.empty(len(fingerprint), dtype=np.int64)
        position[order] = np.arange(len(fingerprint))
        group_of = np.repeat(np.arange(len(starts)), counts)[position]
        self.order = torch.as_tensor(order)
        self.group_start = torch.as_tensor(starts[group_of])
        self.group_size = torch.as_tensor(counts[group_of])

    def sample(self, index: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
        index = index.cpu()
        # One draw per training object at every call, taken at this batch's rows: under torchrun
        # each rank then picks the twins one process would pick for its share of the global batch.
        # torch's generator: the loop reseeds it every epoch, so a resumed run draws the same twins
        draws = torch.rand(len(self.group_size))
        offset = (draws[index] * self.group_size[index]).long()
        twin = self.order[self.group_start[index] + offset]
        flux = torch.as_tensor(self.flux.take(twin.numpy())) if is_lazy(self.flux) else self.flux[twin]
        return flux.to(device), self.cp[twin].to(device)


# ============================================================================ fit
def split_indices(labels, test_fraction: float, val_fraction: float, seed: int) -> np.ndarray:
    """0 = train, 1 = validation, 2 = test for each object.

    Objects sharing a ``fingerprint`` (the same star rendered at several Teff/logg) stay in one
    split, so held-out stars are really unseen.
    """
    rng = np.random.default_rng(seed)
    n = len(labels)
    groups = np.asarray(labels["fingerprint"]) if "fingerprint" in labels.colnames else np.arange(n)
    unique = rng.permutation(np.unique(groups))
    n_test = max(1, int(round(test_fraction * len(unique))))
    n_val = int(round(val_fraction * len(unique)))
    split_of_group = {g: 2 for g in unique[:n_test]}
    split_of_group.update({g: 1 for g in unique[n_test:n_test + n_val]})
    return np.array([split_of_group.get(g, 0) for g in groups], dtype=np.int8)


def flux_scaling(training_flux: np.ndarray, scaling: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel offset and scale taking training flux to network units, ``(flux - offset) / scale``:
    ``minmax`` maps each pixel to [0, 1] (the paper); ``standard`` removes the per-pixel mean and
    divides by one global std, which keeps the relative depths of lines. On-disk flux is read in
    chunks."""
    if is_lazy(training_flux):
        return _streamed_flux_scaling(training_flux, scaling)
    flux = np.asarray(training_flux, dtype=np.float64)
    if scaling == "minmax":
        low, high = flux.min(axis=0), flux.max(axis=0)
        return low, np.maximum(high - low, 1e-6)
    offset = flux.mean(axis=0)
    return offset, np.full_like(offset, max(float((flux - offset).std()), 1e-6))


def _streamed_flux_scaling(training_flux, scaling: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`flux_scaling` of on-disk flux, one chunk in memory at a time."""
    n, low, high, total, squares = 0, None, None, None, None
    for _, chunk in iter_chunks(training_flux, 1024):  # 1024 rows: ~60 MB in float64
        chunk = np.asarray(chunk, dtype=np.float64)
        n += len(chunk)
        low = chunk.min(axis=0) if low is None else np.minimum(low, chunk.min(axis=0))
        high = chunk.max(axis=0) if high is None else np.maximum(high, chunk.max(axis=0))
        total = chunk.sum(axis=0) if total is None else total + chunk.sum(axis=0)
        squares = (chunk ** 2).sum(axis=0) if squares is None else squares + (chunk ** 2).sum(axis=0)
    if scaling == "minmax":
        return low, np.maximum(high - low, 1e-6)
    offset = total / n
    variance = max(float((squares / n - offset ** 2).mean()), 0.0)
    return offset, np.full_like(offset, max(np.sqrt(variance), 1e-6))


def _prepare_model(dataset: Dataset, config: DisentanglerConfig, train_index: np.ndarray) -> Disentangler:
    model = Disentangler(dataset.n_pixels, config)
    offset, scale = flux_scaling(take_rows(dataset.spectra, train_index), config.scaling)
    cp = dataset.label_array(config.conditional)[train_index]
    with torch.no_grad():
        model.wavelength.copy_(torch.as_tensor(dataset.wavelength))
        model.flux_offset.copy_(torch.as_tensor(offset, dtype=torch.float32))
        model.flux_scale.copy_(torch.as_tensor(scale, dtype=torch.float32))
        model.cp_mean.copy_(torch.as_tensor(cp.mean(axis=0), dtype=torch.float32))
        model.cp_std.copy_(torch.as_tensor(np.maximum(cp.std(axis=0), 1e-6), dtype=torch.float32))
        model.cp_min.copy_(torch.as_tensor(cp.min(axis=0), dtype=torch.float32))
        model.cp_max.copy_(torch.as_tensor(cp.max(axis=0), dtype=torch.float32))
        if isinstance(model.encoder, PolynomialReader):
            sample = np.random.default_rng(config.seed).permutation(train_index)[:8000]  # as set_components
            training_flux = torch.as_tensor(dataset.spectra[np.sort(sample)], dtype=torch.float32)
            model.encoder.set_components(model.scale_flux(training_flux), seed=config.seed)
        # The loss of the best constant guess: 1 for standardised regression targets, the entropy
        # of the bin frequencies for classifiers.
        if config.mode != "noat" and config.adversary == "classifier":
            bins = model.cp_bins(torch.as_tensor(cp, dtype=torch.float32)).numpy()
            if config.mode == "at":
                joint = np.zeros(len(bins), dtype=np.int64)
                for i in range(bins.shape[1]):
                    joint = joint * config.n_bins + bins[:, i]
                columns = [joint]
            else:
                columns = [bins[:, i] for i in range(bins.shape[1])]
            entropies = []
            for column in columns:
                frequency = np.bincount(column) / len(column)
                frequency = frequency[frequency > 0]
                entropies.append(float(-(frequency * np.log(frequency)).sum()))
            model.chance_loss.copy_(torch.as_tensor(entropies, dtype=torch.float32))
    return model


def fit(
    dataset: Dataset,
    config: DisentanglerConfig,
    progress: Callable[[int, int, dict], None] | None = None,
    runs_root=None,
    run_id: str | None = None,
    data_source: dict | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = False,
) -> "DisentanglerRun":
    """Train a disentangler on ``dataset`` and save it as a run under ``runs_root/<id>/``.

    ``data_source`` records how to rebuild the dataset (e.g. {"kind": "simulator", "generator":
    "apogee", "params": {...}}) so the app can show the original spectra later. Progress is also
    written to the run folder, so another process can follow it.
    """
    if config.latent_candidates:
        raise ValueError("This config chooses its latent size among latent_candidates: train it with "
                         "choose_latent.fit_run, which trains one model per size.")
    missing = [name for name in config.conditional if name not in dataset.labels.colnames]
    if missing:
        raise DataError(
            f"Conditional parameters {missing} are not labels of this dataset "
            f"(it has {', '.join(dataset.labels.colnames)})."
        )
    if len(dataset) < 20:
        raise DataError(f"{len(dataset)} spectra are too few to train on; give at least 20.")
    seed_everything(config.seed)
    split = split_indices(dataset.labels, config.test_fraction, config.val_fraction, config.seed)
    train_index = np.flatnonzero(split == 0)
    val_index = np.flatnonzero(split == 1)
    model = _prepare_model(dataset, config, train_index)
    cp = dataset.label_array(config.conditional).astype(np.float32)
    twins = None
    # Twin consistency needs the same chemistry at several Teff/logg (a 'fingerprint' label);
    # without it, or with use_twins off, the term is switched off and the run says so.
    twin_status = twins_setting(dataset, config)
    if twin_status == "on":
        twins = TwinSampler(take_rows(dataset.spectra, train_index), cp[train_index],
                            np.asarray(dataset.labels["fingerprint"])[train_index])
    refit_arrays = ({"flux": take_rows(dataset.spectra, train_index), "cp": cp[train_index]}
                    if config.adversary_refit_steps > 0 else None)
    task = DisentanglerTask(model, twins, refit_arrays)

    folder = claim_run_folder(runs_root, run_id, "disentangle", config.mode, resume)
    run_id = folder.name
    record = RunRecord(
        id=run_id, path=folder, method="disentangle", config=config.to_json(),
        data=data_source or source_from_provenance(dataset),
    )
    if is_main_process() and not (resume and (folder / "run.json").exists()):
        record.write()

    # One progress scale over all phases; the twin codes' steps and the refit's epochs continue
    # the training's.
    batches_per_epoch = count_batches(len(train_index), config.batch_size)
    # The codes are distilled into a linear read-out, which only the cp-polynomial encoder has.
    code_steps = config.twin_code_steps if twins is not None and config.encoder == "cp-polynomial" else 0
    total_steps = (config.epochs + config.decoder_refit_epochs) * batches_per_epoch + code_steps

    def reporter(first_epoch: int, phase: str | None = None, extra_steps: int = 0):
        def report(step, total, metrics):
            if not is_main_process():  # under torchrun only rank 0 writes the run
                return
            step = step + first_epoch * batches_per_epoch + extra_steps
            if "epoch" in metrics:
                metrics = {**metrics, "epoch": metrics["epoch"] + first_epoch}
            if phase:
                metrics = {**metrics, "phase": phase}
            write_progress(folder, step, total_steps, metrics)
            if progress is not None:
                progress(step, total_steps, metrics)
        return report

    arrays = {"flux": dataset.spectra, "cp": cp}
    settings = LoopSettings(
        epochs=config.epochs, batch_size=config.batch_size, seed=config.seed,
        patience=config.patience, device=config.device, lr_schedule=config.lr_schedule,
    )
    started = time.perf_counter()
    with recording_outcome(record):
        history = train(
            task,
            {**{k: take_rows(v, train_index) for k, v in arrays.items()}, "index": np.arange(len(train_index))},
            {k: take_rows(v, val_index) for k, v in arrays.items()} if len(val_index) else None,
            settings, progress=reporter(0), checkpoint_dir=folder, resume=resume, should_stop=should_stop,
        )
        code_recon = None
        if code_steps > 0:
            fingerprint = np.asarray(dataset.labels["fingerprint"])[train_index]
            code_recon = _fit_twin_codes(model, arrays, train_index, fingerprint, config,
                                         reporter(config.epochs, TWIN_CODE_PHASE), should_stop)
        if config.decoder_refit_epochs > 0:
            refit = _refit_decoder(model, arrays, train_index, val_index, config,
                                   reporter(config.epochs, REFIT_PHASE, code_steps), folder / "decoder_refit",
                                   resume, should_stop)
            history.epochs.extend({**row, "epoch": row["epoch"] + config.epochs, "phase": REFIT_PHASE}
                                  for row in refit.epochs)
    model.cpu()
    run = DisentanglerRun(record, model)
    if not is_main_process():  # the other torchrun ranks have helped train; rank 0 saves the run
        return run
    save_modules(folder / "weights.safetensors", {"model": model})
    latent, per_object_mse = _encode_and_score(run, dataset.spectra, cp)
    saved = {"split": split, "latent": latent, "recon_mse": per_object_mse}
    saved.update(_label_arrays(dataset))
    save_arrays(folder / "arrays.npz", saved)
    record.history = history.to_dict()
    record.metrics = {
        "train_seconds": time.perf_counter() - started,
        "recon_mse_test": float(per_object_mse[split == 2].mean()),
        "recon_mse_train": float(per_object_mse[split == 0].mean()),
        "best_epoch": history.best_epoch,
        "device": str(pick_device(config.device)),
        "twins": twin_status,
        "twin_consistency": twins is not None,
        "twin_codes": code_steps > 0,
        "twin_code_recon": code_recon,
    }
    record.status = "done"
    record.write()
    return run


def _encode_and_score(run: DisentanglerRun, spectra, cp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Latents and per-object reconstruction MSE, a chunk of spectra at a time (they may be on disk)."""
    latents, errors = [], []
    for start, chunk in iter_chunks(spectra, 1024):
        latent = run.encode(chunk, cp[start:start + len(chunk)])
        errors.append(((run.decode(latent, cp[start:start + len(chunk)]) - chunk) ** 2).mean(axis=1))
        latents.append(latent)
    return np.concatenate(latents), np.concatenate(errors)


def twins_setting(dataset: Dataset, config: DisentanglerConfig) -> str:
    """Whether a run on ``dataset`` uses twins (spectra sharing a chemistry): ``"on"``,
    ``"off: no fingerprint column"`` (the data cannot say which spectra are twins) or
    ``"off: disabled"`` (``use_twins`` is False or ``twin_weight`` is 0)."""
    if "fingerprint" not in dataset.labels.colnames:
        return "off: no fingerprint column"
    if not config.use_twins or config.twin_weight <= 0:
        return "off: disabled"
    return "on"


# The names of the phases after training in progress reports (and the refit's in the run's
# per-epoch history).
REFIT_PHASE = "decoder refit"
TWIN_CODE_PHASE = "twin codes"
# Spectra per optimisation step of the twin codes, their learning rate, and the ridge penalty of
# the read-out refit relative to the mean diagonal of the features' Gram matrix.
TWIN_CODE_BATCH, TWIN_CODE_LEARNING_RATE, TWIN_CODE_RIDGE = 3000, 0.02, 1e-3


def _fit_twin_codes(model: Disentangler, arrays: dict, train_index, fingerprint: np.ndarray,
                    config: DisentanglerConfig, report, should_stop) -> float:
    """Optimise one latent per training chemistry through the frozen decoder, then refit the
    encoder's read-out to it (see ``twin_code_steps``). Returns the codes' last batch
    reconstruction MSE (network units)."""
    device = pick_device(config.device)
    model.to(device).eval()
    _, chemistry = np.unique(fingerprint, return_inverse=True)
    chemistry = torch.as_tensor(chemistry.ravel(), device=device)
    with torch.no_grad():
        cp_inputs = model.cp_inputs(torch.as_tensor(arrays["cp"][train_index], device=device))
        scaled_flux = model.scale_flux(torch.as_tensor(arrays["flux"][train_index], device=device))
        latent = torch.cat([model.encode_scaled(scaled_flux[start:start + 4096], cp_inputs[start:start + 4096])
                            for start in range(0, len(train_index), 4096)])
    # Each chemistry starts from the mean of its spectra's latents.
    n_chemistries = int(chemistry.max()) + 1
    codes = torch.zeros(n_chemistries, latent.shape[1], device=device).index_add_(0, chemistry, latent)
    codes = (codes / torch.bincount(chemistry, minlength=n_chemistries)[:, None]).requires_grad_(True)
    frozen = [parameter for parameter in model.decoder.parameters() if parameter.requires_grad]
    for parameter in frozen:
        parameter.requires_grad_(False)
    optimizer = torch.optim.Adam([codes], lr=TWIN_CODE_LEARNING_RATE)
    generator = torch.Generator().manual_seed(config.seed + 2)
    try:
        for step in range(config.twin_code_steps):
            if should_stop is not None and should_stop():
                raise TrainingCancelled("Training was cancelled during the twin codes.")
            batch = torch.randperm(len(train_index), generator=generator)[:TWIN_CODE_BATCH].to(device)
            loss = F.mse_loss(model.decode_scaled(codes[chemistry[batch]], cp_inputs[batch]), scaled_flux[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            report(step + 1, config.twin_code_steps, {"code_recon": float(loss.detach())})
    finally:
        for parameter in frozen:
            parameter.requires_grad_(True)
    # The read-out sees the spectra with the training input noise, as the encoder did in training.
    _refit_readout(model, model.with_input_noise(scaled_flux), cp_inputs, codes.detach()[chemistry])
    return float(loss.detach())


@torch.no_grad()
def _refit_readout(model: Disentangler, scaled_flux: torch.Tensor, cp_inputs: torch.Tensor,
                   target_latent: torch.Tensor) -> None:
    """Ridge regression of the cp-polynomial encoder's read-out so that the encoder maps each
    spectrum to ``target_latent`` (after the model's latent activation, with its current statistics)."""
    from sklearn.linear_model import Ridge

    if model.config.latent_activation == "batchnorm":
        norm = model.latent_norm
        target = target_latent * torch.sqrt(norm.running_var + norm.eps) + norm.running_mean
    elif model.config.latent_activation == "sigmoid":
        target = torch.logit(target_latent.clamp(1e-4, 1 - 1e-4))
    else:
        target = target_latent
    encoder = model.encoder
    features = encoder.all_features(torch.cat([scaled_flux, cp_inputs], dim=1)).cpu().numpy()
    # The penalty relative to the mean diagonal of the centred features' Gram matrix.
    alpha = TWIN_CODE_RIDGE * len(features) * float(features.var(axis=0).mean())
    ridge = Ridge(alpha=alpha).fit(features, target.double().cpu().numpy())
    encoder.readout.weight.copy_(torch.as_tensor(ridge.coef_, dtype=encoder.readout.weight.dtype))
    encoder.readout.bias.copy_(torch.as_tensor(ridge.intercept_, dtype=encoder.readout.bias.dtype))


def _refit_decoder(model: Disentangler, arrays: dict, train_index, val_index, config: DisentanglerConfig,
                   report, checkpoint_dir: Path, resume: bool, should_stop):
    """Refit ``model.decoder`` on the frozen encoder's latents (see ``decoder_refit_epochs``)."""
    device = pick_device(config.device)
    model.to(device).eval()  # eval: the batch-normalised latent uses its running statistics

    def network_units(index) -> dict[str, np.ndarray]:
        inputs, targets = [], []
        with torch.no_grad():
            for start in range(0, len(index), 2048):
                part = index[start:start + 2048]
                flux = torch.as_tensor(arrays["flux"][part], device=device)
                cp_inputs = model.cp_inputs(torch.as_tensor(arrays["cp"][part], device=device))
                scaled_flux = model.scale_flux(flux)
                inputs.append(torch.cat([model.encode_scaled(scaled_flux, cp_inputs), cp_inputs], 1).cpu())
                if not is_lazy(arrays["flux"]):
                    targets.append(scaled_flux.cpu())
        if is_lazy(arrays["flux"]):  # on disk: the targets are scaled as their batches are read
            offset, scale = model.flux_offset.cpu().numpy(), model.flux_scale.cpu().numpy()
            target = MappedRows(take_rows(arrays["flux"], index), lambda rows: (rows - offset) / scale)
            return {"inputs": torch.cat(inputs).numpy(), "target": target}
        return {"inputs": torch.cat(inputs).numpy(), "target": torch.cat(targets).numpy()}

    decoder = model.decoder if config.scaling != "minmax" else nn.Sequential(model.decoder, nn.Sigmoid())
    task = DecoderFitTask(decoder, config.learning_rate)
    settings = LoopSettings(epochs=config.decoder_refit_epochs, batch_size=config.batch_size,
                            seed=config.seed + 1, device=config.device, lr_schedule="cosine")
    checkpoint_dir.mkdir(exist_ok=True)
    return train(task, network_units(train_index), network_units(val_index) if len(val_index) else None,
                 settings, progress=report, checkpoint_dir=checkpoint_dir, resume=resume,
                 should_stop=should_stop)


def source_from_provenance(dataset: Dataset) -> dict:
    """A rebuildable source for built-in simulator output, else a description of the data."""
    provenance = dataset.provenance
    if provenance.get("generator") in ("rvs", "apogee") and "params" in provenance:
        return {"kind": "simulator", "generator": provenance["generator"], "params": provenance["params"]}
    return {"kind": "dataset", "provenance": provenance, "n_objects": len(dataset)}


def _label_arrays(dataset: Dataset) -> dict[str, np.ndarray]:
    saved = {}
    for name in dataset.labels.colnames:
        column = np.asarray(dataset.labels[name])
        if column.dtype.kind in "fiub":
            saved[f"label_{name}"] = column
        elif column.dtype.kind in "US":
            saved[f"label_{name}"] = column.astype(str)
    return saved


