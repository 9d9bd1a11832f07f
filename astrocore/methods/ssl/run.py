"""A trained SSL run: backbone features, predicted magnitudes, class probabilities, neighbours.

Loaded from ``runs/<id>/`` without pickle (run.json + weights.safetensors). A downstream run also
carries the pretext network it started from (``pretext``), so one run answers "what is this cutout
and how bright is it in every band".
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from ...data.dataset import DataError, Dataset
from ...data.readers.images import fit_to_size
from ...runs import RunError, RunRecord, load_arrays
from ...training import load_modules
from .config import SSLConfig
from .data import dataset_from_source
from .model import MAGNITUDE_SCALE, CutoutNet

MAX_BATCH = 512


def batched(function, array: np.ndarray, batch_size: int = MAX_BATCH) -> np.ndarray:
    """``function`` (numpy batch -> numpy) over ``array`` in batches, concatenated."""
    parts = [function(array[start:start + batch_size]) for start in range(0, len(array), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0,), np.float32)


class SSLRun:
    """A pretext run (features, magnitudes) or a downstream run (plus class probabilities)."""

    method = "ssl"

    def __init__(self, record: RunRecord, net: CutoutNet, pretext_net: CutoutNet | None = None):
        self.record = record
        self.net = net.eval()
        self.pretext_net = pretext_net.eval() if pretext_net is not None else None
        self.config = SSLConfig.from_json(record.config)

    # ------------------------------------------------------------------ identity
    @property
    def id(self) -> str:
        return self.record.id

    @property
    def path(self) -> Path:
        return self.record.path

    @property
    def bands(self) -> tuple:
        return tuple(self.record.data.get("bands", ()))

    @property
    def classes(self) -> list[str]:
        return list(self.record.data.get("classes", []))

    @property
    def size(self) -> int:
        return int(self.net.image_size)

    @property
    def stage(self) -> str:
        return self.config.stage

    @classmethod
    def load(cls, path) -> "SSLRun":
        """Rebuild the networks from run.json + weights.safetensors (no pickle)."""
        record = RunRecord.read(path)
        if record.status != "done":
            raise RunError(f"Run {record.id} is {record.shown_status}; only finished runs can be loaded.")
        config = SSLConfig.from_json(record.config)
        n_bands, size = len(record.data["bands"]), int(record.data.get("size", 32))
        weights = Path(path) / "weights.safetensors"
        with safe_open(str(weights), framework="pt") as handle:
            keys = list(handle.keys())
        net = CutoutNet(n_bands, config, n_classes=len(record.data.get("classes", [])), size=size)
        modules = {"net": net}
        pretext = None
        if any(key.startswith("pretext.") for key in keys):
            pretext_config = SSLConfig.from_json(record.data.get("pretext_config", record.config))
            pretext = CutoutNet(n_bands, pretext_config, size=size)
            modules["pretext"] = pretext
        load_modules(weights, modules)
        return cls(record, net, pretext)

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-object arrays saved with the run (ids, split, features, magnitudes or proba, labels)."""
        return load_arrays(self.path / "arrays.npz")

    def dataset(self) -> Dataset:
        """The cutouts the run was trained and evaluated on, rebuilt from run.json's source."""
        return dataset_from_source(self.record.data)

    # ------------------------------------------------------------------ inference
    def check_images(self, images) -> np.ndarray:
        """Cutouts as (n, n_bands, size, size) float32 for this run: the band count must match;
        larger cutouts are centre-cropped, smaller ones refused (DataError)."""
        images = np.asarray(images, dtype=np.float32)
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4:
            raise DataError(f"Expected cutouts (n, bands, height, width); got an array of shape {images.shape}.")
        if images.shape[1] != len(self.bands):
            raise DataError(f"This run expects {len(self.bands)} bands ({', '.join(self.bands)}); the cutout has "
                            f"{images.shape[1]}.")
        if images.shape[2:] != (self.size, self.size):
            images = fit_to_size(images, self.size)
        if not np.all(np.isfinite(images)):
            raise DataError("The cutout has NaN or infinite pixels.")
        return images

    @torch.no_grad()
    def _apply(self, net: CutoutNet, images: np.ndarray, what) -> np.ndarray:
        device = next(net.parameters()).device
        return batched(lambda batch: what(net, torch.as_tensor(batch, device=device)).float().cpu().numpy(), images)

    def features(self, images) -> np.ndarray:
        """Backbone features (n, n_features) of cutouts (image units, zero point 30)."""
        images = self.check_images(images)
        return self._apply(self.net, images, lambda net, x: net.features(x)).reshape(len(images), -1)

    def predict_magnitudes(self, images) -> np.ndarray:
        """Magnitudes (n, n_bands) [AB mag] predicted from the cutouts by the pretext network."""
        net = self.pretext_net if self.pretext_net is not None else self.net
        if self.stage == "downstream" and self.pretext_net is None:
            raise DataError(f"Run {self.id} was trained without a pretext network ({self.config.scheme}); "
                            "it predicts classes, not magnitudes.")
        images = self.check_images(images)
        scaled = self._apply(net, images, lambda n, x: n.magnitudes_scaled(n.features(x)))
        # Only the Kron magnitudes: the fixed-aperture ones, when trained, follow them.
        return scaled.reshape(len(images), -1)[:, :net.n_bands] * MAGNITUDE_SCALE

    @torch.no_grad()
    def proba_from_features(self, features: np.ndarray) -> np.ndarray:
        if self.net.classifier is None:
            raise DataError(f"Run {self.id} is a pretext run; classes come from a downstream run.")
        logits = self.net.classifier(torch.as_tensor(np.asarray(features, np.float32)))
        return torch.softmax(logits, dim=1).numpy()

    def predict_proba(self, images) -> np.ndarray:
        """Class probabilities (n, n_classes), columns in the order of :attr:`classes`."""
        return self.proba_from_features(self.features(images))

    def neighbours(self, features: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` objects of the run's own data nearest to ``features`` (n, d) in feature space
        (Euclidean): (indices into :meth:`dataset`, distances), each (n, k)."""
        reference = np.asarray(self.arrays()["features"], np.float32)
        features = np.atleast_2d(np.asarray(features, np.float32))
        distance = (np.sum(features ** 2, 1)[:, None] - 2 * features @ reference.T + np.sum(reference ** 2, 1)[None])
        order = np.argsort(distance, axis=1)[:, :k]
        return order, np.sqrt(np.clip(np.take_along_axis(distance, order, 1), 0, None))

    # ------------------------------------------------------------------ the explorer's view
    def representation(self, name: str, dataset: Dataset | None = None) -> np.ndarray:
        """``features`` (backbone) or ``magnitudes`` (predicted, AB mag) per object of ``dataset``
        (default: the run's own data; its features are stored with the run)."""
        if name == "features":
            arrays = self.arrays()
            own = dataset is None or (len(dataset) == len(arrays["ids"]) and np.array_equal(
                np.asarray(dataset.labels["id"]).astype(str), arrays["ids"].astype(str)))
            return np.asarray(arrays["features"], np.float32) if own else self.features(dataset.images)
        if name == "magnitudes":
            dataset = self.dataset() if dataset is None else dataset
            return self.predict_magnitudes(dataset.images).astype(np.float32)
        raise DataError(f"An SSL run offers the representations features and magnitudes; got {name!r}.")
