"""Training BATMM with the paper's transfer strategy, through the shared loop
(:func:`astrocore.training.train`): the spectrum encoder and the image encoder are trained alone
first (each is also the spectrum-only and image-only baseline), then the fusion transformer on their
frozen tokens; optionally (``joint_epochs`` > 0) a joint phase then trains encoders and fusion
end to end at a low rate. A temperature fitted on the validation split calibrates the
probabilities. :func:`fit` runs the phases in order and saves the run. The cutouts are randomly
flipped / turned in training (:func:`augment_cutouts`)."""
from __future__ import annotations

import copy
import time
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from ...data.dataset import DataError, Dataset
from ...runs import RunRecord, claim_run_folder, recording_outcome, save_arrays, write_progress
from ...training import LoopSettings, count_batches, is_main_process, pick_device, save_modules, seed_everything, train
from .config import BatmmConfig
from .metrics import classification_metrics, fit_temperature, reliability, sigmoid
from .model import ImageEncoder, SpectrumEncoder, build_fusion, encoder_tokens, scale_images, scale_spectra
from .run import BatmmRun, source_of

BANDS = ("u", "g", "r", "i", "z")
JOINT_AUXILIARY_WEIGHT = 0.5  # weight of the encoders' own BHB losses in the joint phase


def augment_cutouts(images: torch.Tensor) -> torch.Tensor:
    """A random one of the 8 flips / quarter turns per cutout (B, bands, h, w): the sky has no
    preferred orientation and the PSF is round, so these are free extra training images; the
    same transform applies to all five bands of a star (its colours are untouched)."""
    n = images.shape[0]
    for dim in (-1, -2):
        flip = torch.rand(n, device=images.device) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(dim), images)
    if images.shape[-1] == images.shape[-2]:
        turn = torch.rand(n, device=images.device) < 0.5
        images = torch.where(turn[:, None, None, None], images.transpose(-1, -2), images)
    return images


# ============================================================================ tasks
class ClassifierTask:
    """Binary cross-entropy on a module's ``logit`` for :func:`astrocore.training.train`.

    ``inputs(batch, training)`` turns a batch into the module's positional arguments.
    """

    monitor = "val_loss"

    def __init__(self, module: torch.nn.Module, inputs: Callable, learning_rate: float, weight_decay: float):
        self.module = module
        self.inputs = inputs
        self.modules = {"model": module}
        self.optimizers = {"model": torch.optim.AdamW(module.parameters(), lr=learning_rate, weight_decay=weight_decay)}

    def _loss(self, batch, training: bool):
        out = self.module(*self.inputs(batch, training))
        logit = out["logit"]
        loss = F.binary_cross_entropy_with_logits(logit, batch["label"])
        accuracy = ((logit > 0).float() == batch["label"]).float().mean()
        metrics = {"loss": float(loss.detach()), "accuracy": float(accuracy)}
        if training and out.get("auxiliary_logits"):  # the joint phase keeps the encoders' own heads trained
            auxiliary = sum(F.binary_cross_entropy_with_logits(a, batch["label"]) for a in out["auxiliary_logits"])
            loss = loss + JOINT_AUXILIARY_WEIGHT * auxiliary / len(out["auxiliary_logits"])
        return loss, metrics

    def training_step(self, batch, epoch):
        loss, metrics = self._loss(batch, True)
        self.optimizers["model"].zero_grad()
        loss.backward()
        self.optimizers["model"].step()
        return metrics

    def validation_step(self, batch):
        return self._loss(batch, False)[1]


def _presence(batch, training: bool, missing_rate: float):
    """Which stars keep their spectrum and their image: in training each star loses one of them
    (never both) with probability ``missing_rate`` each."""
    n = len(batch["label"])
    has_spectrum = torch.ones(n, dtype=torch.bool, device=batch["label"].device)
    has_image = has_spectrum.clone()
    if training and missing_rate > 0:
        draw = torch.rand(n, device=has_image.device)
        has_spectrum = draw >= missing_rate
        has_image = (draw < missing_rate) | (draw >= 2 * missing_rate)
    return has_spectrum, has_image


def fusion_inputs(missing_rate: float):
    """Batch -> fusion arguments; in training each star loses its spectrum or its image (never
    both) with probability ``missing_rate`` each, replaced by the learned missing-modality tokens."""

    def inputs(batch, training):
        return (batch["spectral_tokens"], batch["image_tokens"], *_presence(batch, training, missing_rate))

    return inputs


def joint_inputs(missing_rate: float, augment: bool):
    """Batch -> :class:`JointModel` arguments (raw scaled spectra and cutouts)."""

    def inputs(batch, training):
        image = augment_cutouts(batch["image"]) if training and augment else batch["image"]
        return (batch["spectrum"], image, *_presence(batch, training, missing_rate))

    return inputs


class JointModel(torch.nn.Module):
    """Both encoders and the fusion as one network, for the joint (end-to-end) phase after the
    transfer phase. The encoders' batch-norm statistics stay those of the transfer phase (the
    fusion was trained on them; small batches would make them noisy)."""

    def __init__(self, spectrum_encoder, image_encoder, fusion):
        super().__init__()
        self.spectrum_encoder, self.image_encoder, self.fusion = spectrum_encoder, image_encoder, fusion

    def train(self, mode: bool = True):
        super().train(mode)
        for encoder in (self.spectrum_encoder, self.image_encoder):
            for module in encoder.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def forward(self, spectrum, image, has_spectrum=None, has_image=None) -> dict:
        spectral, visual = self.spectrum_encoder(spectrum), self.image_encoder(image)
        out = self.fusion(encoder_tokens(spectral), encoder_tokens(visual), has_spectrum, has_image)
        return {**out, "auxiliary_logits": [spectral["logit"], visual["logit"]]}


# ============================================================================ helpers
def split_indices(labels, test_fraction: float, val_fraction: float, seed: int) -> np.ndarray:
    """0 = train, 1 = validation, 2 = test per object, stratified by class (the paper's 70/20/10)."""
    rng = np.random.default_rng(seed)
    label = np.asarray(labels["label"]).astype(int)
    split = np.zeros(len(label), np.int8)
    for value in np.unique(label):
        members = rng.permutation(np.flatnonzero(label == value))
        n_test = max(1, int(round(test_fraction * len(members))))
        n_val = max(1, int(round(val_fraction * len(members))))
        split[members[:n_test]] = 2
        split[members[n_test:n_test + n_val]] = 1
    return split


def check_dataset(dataset: Dataset) -> None:
    """A BATMM dataset has spectra, 5-band cutouts and a 0/1 ``label`` column (1 = BHB)."""
    if dataset.spectra is None or dataset.images is None:
        raise DataError("BATMM needs both spectra and cutouts; this dataset has "
                        f"{'spectra' if dataset.spectra is not None else 'no spectra'} and "
                        f"{'cutouts' if dataset.images is not None else 'no cutouts'}.")
    if dataset.images.shape[1] != len(BANDS):
        raise DataError(f"BATMM expects {len(BANDS)}-band ugriz cutouts; got {dataset.images.shape[1]} bands "
                        f"({', '.join(dataset.bands) or 'unnamed'}).")
    if "label" not in dataset.labels.colnames:
        raise DataError(f"BATMM needs a 'label' column (1 = BHB, 0 = other); the labels have "
                        f"{', '.join(dataset.labels.colnames)}.")
    values = set(np.unique(np.asarray(dataset.labels["label"])).tolist())
    if not values <= {0, 1} or len(values) < 2:
        raise DataError(f"'label' must hold both classes 0 and 1; got {sorted(values)}.")
    if len(dataset) < 40:
        raise DataError(f"{len(dataset)} stars are too few to train on; give at least 40.")


def model_inputs(dataset: Dataset) -> dict[str, np.ndarray]:
    """Scaled spectra, scaled images and float labels of a dataset."""
    arrays = {"spectrum": scale_spectra(dataset.spectra), "image": scale_images(dataset.images)}
    if "label" in dataset.labels.colnames:
        arrays["label"] = np.asarray(dataset.labels["label"], np.float32)
    return arrays


@torch.no_grad()
def run_encoder(encoder: torch.nn.Module, values: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
    """An encoder's outputs over all objects: tokens (segments/spatial + pooled), weights, logit."""
    encoder.eval()
    device = next(encoder.parameters()).device
    parts = {"tokens": [], "weights": [], "logit": [], "pooled": []}
    for start in range(0, len(values), batch_size):
        out = encoder(torch.as_tensor(values[start:start + batch_size], device=device))
        parts["tokens"].append(encoder_tokens(out).cpu().numpy())
        parts["pooled"].append(out["pooled"].cpu().numpy())
        parts["logit"].append(out["logit"].cpu().numpy())
        if out["weights"] is not None:
            parts["weights"].append(out["weights"].cpu().numpy())
    return {k: np.concatenate(v) for k, v in parts.items() if v}


def _loop(config: BatmmConfig, epochs: int, patience) -> LoopSettings:
    return LoopSettings(epochs=epochs, batch_size=config.batch_size, seed=config.seed, patience=patience,
                        device=config.device, lr_schedule="cosine")


def train_encoder(kind: str, arrays: dict, split: np.ndarray, config: BatmmConfig, progress=None,
                  checkpoint_dir=None, resume=False, should_stop=None, attention: bool | None = None):
    """Train the ``spectrum`` or ``image`` encoder alone on the BHB label; returns (encoder, history)."""
    seed_everything(config.seed)
    encoder = SpectrumEncoder(config, attention=attention) if kind == "spectrum" else ImageEncoder(config)
    augment = kind == "image" and config.augment_cutouts

    def inputs(batch, training):
        return (augment_cutouts(batch["x"]) if training and augment else batch["x"],)

    task = ClassifierTask(encoder, inputs, config.learning_rate, config.weight_decay)
    data = {"x": arrays[kind], "label": arrays["label"]}
    history = train(task, {k: v[split == 0] for k, v in data.items()}, {k: v[split == 1] for k, v in data.items()},
                    _loop(config, config.encoder_epochs, config.patience), progress=progress,
                    checkpoint_dir=checkpoint_dir, resume=resume, should_stop=should_stop)
    return encoder.cpu().eval(), history


def train_fusion(spectral_tokens: np.ndarray, image_tokens: np.ndarray, label: np.ndarray, split: np.ndarray,
                 config: BatmmConfig, progress=None, checkpoint_dir=None, resume=False, should_stop=None):
    """Train the fusion (``config.fusion``) on frozen encoder tokens; returns (fusion, history)."""
    seed_everything(config.seed + 1)
    fusion = build_fusion(config, spectral_tokens.shape[1], image_tokens.shape[1])
    if config.fusion != "batmm" and spectral_tokens.shape[2] != config.encoder_dim:
        raise DataError("spectral tokens do not match encoder_dim")
    task = ClassifierTask(fusion, fusion_inputs(config.missing_modality_rate), config.fusion_learning_rate,
                          config.weight_decay)
    data = {"spectral_tokens": spectral_tokens.astype(np.float32), "image_tokens": image_tokens.astype(np.float32),
            "label": label.astype(np.float32)}
    history = train(task, {k: v[split == 0] for k, v in data.items()}, {k: v[split == 1] for k, v in data.items()},
                    _loop(config, config.fusion_epochs, config.patience), progress=progress,
                    checkpoint_dir=checkpoint_dir, resume=resume, should_stop=should_stop)
    return fusion.cpu().eval(), history


def train_joint(spectrum_encoder, image_encoder, fusion, arrays: dict, split: np.ndarray, config: BatmmConfig,
                progress=None, checkpoint_dir=None, resume=False, should_stop=None):
    """The joint phase: after the transfer phase, both encoders and the fusion are trained together
    at the low ``joint_learning_rate`` for ``joint_epochs`` (the fused loss plus the encoders' own
    losses, weighted ``JOINT_AUXILIARY_WEIGHT``, so that their unimodal heads stay valid). The modules are
    updated in place and left at the epoch of lowest validation loss; returns the history."""
    seed_everything(config.seed + 2)
    joint = JointModel(spectrum_encoder, image_encoder, fusion)
    task = ClassifierTask(joint, joint_inputs(config.missing_modality_rate, config.augment_cutouts),
                          config.joint_learning_rate, config.weight_decay)
    data = {"spectrum": arrays["spectrum"], "image": arrays["image"], "label": arrays["label"]}
    history = train(task, {k: v[split == 0] for k, v in data.items()}, {k: v[split == 1] for k, v in data.items()},
                    _loop(config, config.joint_epochs, config.patience), progress=progress,
                    checkpoint_dir=checkpoint_dir, resume=resume, should_stop=should_stop)
    for module in (spectrum_encoder, image_encoder, fusion):
        module.cpu().eval()
    return history


@torch.no_grad()
def fusion_logits(fusion, spectral_tokens, image_tokens, has_spectrum=None, has_image=None, batch_size=512):
    """The fusion's logits (n,) over all objects; ``has_*`` (n,) bool marks present modalities."""
    fusion.eval()
    out = []
    for start in range(0, len(spectral_tokens), batch_size):
        part = slice(start, start + batch_size)
        mask = [None if m is None else torch.as_tensor(m[part]) for m in (has_spectrum, has_image)]
        out.append(fusion(torch.as_tensor(spectral_tokens[part]), torch.as_tensor(image_tokens[part]), *mask)
                   ["logit"].numpy())
    return np.concatenate(out)


# ============================================================================ fit
def fit(dataset: Dataset, config: BatmmConfig, progress: Callable[[int, int, dict], None] | None = None,
        runs_root=None, run_id: str | None = None, data_source: dict | None = None,
        should_stop: Callable[[], bool] | None = None, resume: bool = False, encoders: tuple | None = None) -> BatmmRun:
    """Train BATMM on ``dataset`` (spectra + ugriz cutouts + ``label``) and save the run under
    ``runs_root/<id>/``. ``data_source`` records how to rebuild the data (default: the dataset's
    provenance). Progress (one scale over the phases) also goes to the run folder.

    ``encoders``: (spectrum encoder, image encoder) already trained alone on this config's split
    (the bench trains them once per seed and reuses them for every fusion); they are copied, not
    changed, and the unimodal phases are skipped."""
    check_dataset(dataset)
    split = split_indices(dataset.labels, config.test_fraction, config.val_fraction, config.seed)
    arrays = model_inputs(dataset)
    folder = claim_run_folder(runs_root, run_id, "batmm", "", resume)
    run_id = folder.name
    record = RunRecord(id=run_id, path=folder, method="batmm", config=config.to_json(),
                       data=data_source or source_of(dataset))
    if is_main_process() and not (resume and (folder / "run.json").exists()):
        record.write()
    per_epoch = count_batches(int((split == 0).sum()), config.batch_size)
    encoder_epochs = 0 if encoders is not None else config.encoder_epochs
    phases = {"spectrum encoder": 0, "image encoder": encoder_epochs, "fusion": 2 * encoder_epochs,
              "joint": 2 * encoder_epochs + config.fusion_epochs}
    total = (2 * encoder_epochs + config.fusion_epochs + config.joint_epochs) * per_epoch

    def reporter(phase: str):
        offset = phases[phase] * per_epoch

        def report(step, _total, metrics):
            if not is_main_process():
                return
            metrics = {**metrics, "phase": phase}
            write_progress(folder, offset + step, total, metrics)
            if progress is not None:
                progress(offset + step, total, metrics)
        return report

    started = time.perf_counter()
    histories = {}
    with recording_outcome(record):
        if encoders is not None:
            spectrum_encoder, image_encoder = (copy.deepcopy(e) for e in encoders)
        else:
            spectrum_encoder, histories["spectrum_encoder"] = train_encoder(
                "spectrum", arrays, split, config, reporter("spectrum encoder"), folder / "checkpoint_spectrum",
                resume, should_stop)
            image_encoder, histories["image_encoder"] = train_encoder(
                "image", arrays, split, config, reporter("image encoder"), folder / "checkpoint_image", resume,
                should_stop)
        # The unimodal baselines are the encoders as trained alone (before the joint phase).
        spectrum_out = run_encoder(spectrum_encoder, arrays["spectrum"])
        image_out = run_encoder(image_encoder, arrays["image"])
        unimodal = {"spectrum": spectrum_out["logit"], "image": image_out["logit"]}
        fusion, histories["fusion"] = train_fusion(spectrum_out["tokens"], image_out["tokens"], arrays["label"], split,
                                                   config, reporter("fusion"), folder / "checkpoint_fusion", resume,
                                                   should_stop)
        if config.joint_epochs:
            histories["joint"] = train_joint(spectrum_encoder, image_encoder, fusion, arrays, split, config,
                                             reporter("joint"), folder / "checkpoint_joint", resume, should_stop)
            spectrum_out = run_encoder(spectrum_encoder, arrays["spectrum"])
            image_out = run_encoder(image_encoder, arrays["image"])
    train_seconds = time.perf_counter() - started
    if not is_main_process():  # the other torchrun ranks have helped train; rank 0 saves the run
        return BatmmRun(record, config, spectrum_encoder, image_encoder, fusion)
    save_modules(folder / "weights.safetensors",
                 {"spectrum_encoder": spectrum_encoder, "image_encoder": image_encoder, "fusion": fusion})

    label = arrays["label"].astype(int)
    logit = fusion_logits(fusion, spectrum_out["tokens"], image_out["tokens"])
    temperature = fit_temperature(logit[split == 1], label[split == 1])
    probability = sigmoid(logit / temperature)
    test = split == 2
    n = len(label)
    no_spectrum = fusion_logits(fusion, spectrum_out["tokens"], image_out["tokens"], np.zeros(n, bool), np.ones(n, bool))
    no_image = fusion_logits(fusion, spectrum_out["tokens"], image_out["tokens"], np.ones(n, bool), np.zeros(n, bool))
    metrics = {
        "train_seconds": train_seconds, "device": str(pick_device(config.device)), "temperature": temperature,
        "n_train": int((split == 0).sum()), "n_val": int((split == 1).sum()), "n_test": int(test.sum()),
        "test": classification_metrics(label[test], probability[test]),
        "test_uncalibrated_ece": reliability(label[test], sigmoid(logit[test]))["ece"],
        "test_ece": reliability(label[test], probability[test])["ece"],
        "spectrum_only_attention": classification_metrics(label[test], sigmoid(unimodal["spectrum"][test])),
        "image_only": classification_metrics(label[test], sigmoid(unimodal["image"][test])),
        "missing_spectrum": classification_metrics(label[test], sigmoid(no_spectrum[test])),
        "missing_image": classification_metrics(label[test], sigmoid(no_image[test])),
        "segment_weights": spectrum_out["weights"][test].mean(axis=0).tolist() if "weights" in spectrum_out else None,
        "band_weights": dict(zip(BANDS, image_out["weights"][test].mean(axis=0).tolist())),
    }
    saved = {"ids": np.asarray(dataset.labels["id"]).astype(str) if "id" in dataset.labels.colnames
             else np.array([f"star-{i}" for i in range(n)]),
             "split": split, "label": label, "logit": logit, "probability": probability,
             "spectrum_logit": unimodal["spectrum"], "image_logit": unimodal["image"],
             "band_weights": image_out["weights"]}
    if "weights" in spectrum_out:
        saved["segment_weights"] = spectrum_out["weights"]
    for column in ("snr", "g_true", "mag_g", "teff", "logg", "feh"):
        if column in dataset.labels.colnames:
            saved[f"label_{column}"] = np.asarray(dataset.labels[column], float)
    save_arrays(folder / "arrays.npz", saved)
    record.history = {name: history.to_dict() for name, history in histories.items()}
    record.metrics = metrics
    record.status = "done"
    record.write()
    return BatmmRun.load(folder)
