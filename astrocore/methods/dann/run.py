"""A trained DANN run: class probabilities of nebulae, its feature layer; loaded without pickle."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from astropy.table import Table

from ...data.cache import cached_dataset
from ...data.dataset import DataError, Dataset
from ...data.simulators.nebulae import CLASSES
from ...data.simulators.nebulae_observe import VERSION, simulate_nebulae
from ...runs import RunError, RunRecord, load_arrays
from ...training import load_modules
from .config import DannConfig
from .model import DannNetwork


def source_from_dataset(dataset: Dataset) -> dict:
    """How to rebuild ``dataset`` later: the simulator call, or the file it came from."""
    provenance = dataset.provenance or {}
    if provenance.get("generator") == "nebulae":
        return {"kind": "simulator", "generator": "nebulae", "params": dict(provenance.get("params", {}))}
    if provenance.get("path"):
        return {"kind": "file", "path": str(provenance["path"])}
    return {"kind": "unknown"}


def nebula_dataset(source: dict) -> Dataset:
    """Rebuild a nebula dataset from a run's ``data`` record (simulator calls are cached on disk)."""
    if source.get("kind") == "simulator" and source.get("generator") == "nebulae":
        params = dict(source.get("params", {}))
        return cached_dataset("nebulae", VERSION, params, lambda: simulate_nebulae(**params))
    if source.get("kind") == "file":
        return Dataset.load(source["path"])
    raise DataError(f"Cannot rebuild the nebula data of this run from {source!r}.")


class DannRun:
    """A trained DANN / source-only / oracle network."""

    method = "dann"

    def __init__(self, record: RunRecord, network: DannNetwork):
        self.record = record
        self.network = network.eval()
        self.config: DannConfig = network.config

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def path(self) -> Path:
        return self.record.path

    @property
    def features(self) -> tuple[str, ...]:
        return self.config.features

    @classmethod
    def load(cls, path) -> "DannRun":
        """Rebuild the network from run.json + weights.safetensors (no pickle)."""
        record = RunRecord.read(path)
        if record.status != "done":
            raise RunError(f"Run {record.id} is {record.shown_status}; only finished runs can be loaded.")
        network = DannNetwork(DannConfig.from_json(record.config))
        load_modules(Path(path) / "weights.safetensors", {"network": network})
        return cls(record, network)

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-row arrays saved with the run (ids, split, domain, class_index, predicted, probability)."""
        return load_arrays(self.path / "arrays.npz")

    def dataset(self) -> Dataset:
        return nebula_dataset(self.record.data)

    def _ratios(self, ratios) -> torch.Tensor:
        ratios = np.asarray(ratios, np.float32)
        if ratios.ndim != 2 or ratios.shape[1] != len(self.features):
            raise DataError(f"Expected log ratios of shape (n, {len(self.features)}) for {', '.join(self.features)}; "
                            f"got {ratios.shape}.")
        return torch.as_tensor(ratios)

    def predict_proba(self, ratios, batch: int = 65536) -> np.ndarray:
        """Probabilities (n, 3) of HII, PN, SNR for log ratios (n, n_features) in dex."""
        x = self._ratios(ratios)
        with torch.no_grad():
            return np.concatenate([torch.softmax(self.network(x[i:i + batch]), -1).numpy()
                                   for i in range(0, max(len(x), 1), batch)])[:len(x)]

    def encode(self, ratios, batch: int = 65536) -> np.ndarray:
        """The feature layer h (n, feature_dim)."""
        x = self._ratios(ratios)
        with torch.no_grad():
            return np.concatenate([self.network.features(x[i:i + batch]).numpy()
                                   for i in range(0, max(len(x), 1), batch)])[:len(x)]

    def classify_table(self, table: Table) -> Table:
        """Add ``predicted_class`` and ``probability_<class>`` columns to a table of log ratios;
        rows with a missing ratio get class "" and probability NaN (see the table's ``reason``)."""
        missing = [name for name in self.features if name not in table.colnames]
        if missing:
            raise DataError(f"The table lacks the ratio columns {missing} this run reads.")
        x = np.column_stack([np.asarray(table[name], dtype=np.float32) for name in self.features])
        usable = np.isfinite(x).all(1)
        probability = np.full((len(table), len(CLASSES)), np.nan, np.float32)
        if usable.any():
            probability[usable] = self.predict_proba(x[usable])
        out = table.copy(copy_data=False)
        best = np.where(usable, np.nan_to_num(probability).argmax(1), -1)
        out["predicted_class"] = np.array([CLASSES[i] if i >= 0 else "" for i in best])
        out["probability"] = np.where(usable, np.nanmax(np.where(usable[:, None], probability, 0), 1), np.nan)
        for k, name in enumerate(CLASSES):
            out[f"probability_{name}"] = probability[:, k]
        return out

    def representation(self, name: str, dataset: Dataset | None = None) -> np.ndarray:
        """``features``: the feature layer h; ``ratios``: the input log ratios (dex). Rows in the
        order of ``dataset`` (default :meth:`dataset`: source then target, column ``domain``);
        rows with a missing ratio are filled with the training mean."""
        dataset = dataset if dataset is not None else self.dataset()
        x = np.column_stack([np.asarray(dataset.labels[f], dtype=np.float32) for f in self.features])
        x = np.where(np.isfinite(x), x, self.network.feature_mean.numpy()[None, :])
        if name == "features":
            return self.encode(x)
        if name == "ratios":
            return x.astype(np.float64)
        raise ValueError(f"A dann run offers the representations 'features' and 'ratios'; got {name!r}.")
