"""A trained BATMM: calibrated BHB probabilities, attention (segment, band and cross-attention
weights) and the fused / per-modality tokens for the explorer; loaded without pickle."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...data.dataset import DataError, Dataset
from ...data.simulators.bhb import simulate_bhb
from ...runs import RunError, RunRecord, load_arrays
from ...training import load_modules
from .config import BatmmConfig
from .metrics import sigmoid
from .model import ImageEncoder, SpectrumEncoder, build_fusion, encoder_tokens, scale_images, scale_spectra

SPECTRUM_PIXELS = 3522
N_BANDS = 5


def source_of(dataset: Dataset) -> dict:
    """The ``source`` dict that rebuilds ``dataset``: the simulator call, or the file it came from."""
    provenance = dataset.provenance or {}
    if provenance.get("generator") == "bhb":
        return {"kind": "simulator", "generator": "bhb", "params": dict(provenance.get("params", {}))}
    if provenance.get("path"):
        return {"kind": "file", "path": str(provenance["path"])}
    return {"kind": "unknown", "note": "data passed in memory; not rebuildable"}


def dataset_from_source(source: dict) -> Dataset:
    """Rebuild a BATMM dataset from its ``source`` dict (the BHB simulator or a saved Dataset)."""
    if source.get("kind") == "simulator" and source.get("generator") == "bhb":
        return simulate_bhb(**source.get("params", {}))
    if source.get("kind") == "file":
        return Dataset.load(source["path"])
    raise DataError(f"Cannot rebuild the data of this run from {source!r}.")


class BatmmRun:
    """A trained BATMM: ``predict_proba``, ``attention``, ``representation``."""

    method = "batmm"

    def __init__(self, record: RunRecord, config: BatmmConfig, spectrum_encoder, image_encoder, fusion):
        self.record = record
        self.config = config
        self.spectrum_encoder = spectrum_encoder.eval()
        self.image_encoder = image_encoder.eval()
        self.fusion = fusion.eval()
        self.temperature = float(record.metrics.get("temperature", 1.0))

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def path(self) -> Path:
        return self.record.path

    @classmethod
    def load(cls, path) -> "BatmmRun":
        """Rebuild the three networks from run.json + weights.safetensors (no pickle)."""
        record = RunRecord.read(path)
        if record.status != "done":
            raise RunError(f"Run {record.id} is {record.shown_status}; only finished runs can be loaded.")
        config = BatmmConfig.from_json(record.config)
        spectrum_encoder, image_encoder = SpectrumEncoder(config), ImageEncoder(config, N_BANDS)
        fusion = build_fusion(config, config.n_segments + 1, ImageEncoder.grid**2 + 1)
        load_modules(Path(path) / "weights.safetensors",
                     {"spectrum_encoder": spectrum_encoder, "image_encoder": image_encoder, "fusion": fusion})
        return cls(record, config, spectrum_encoder, image_encoder, fusion)

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-object arrays saved with the run (ids, split, label, logit, probability, weights...)."""
        return load_arrays(self.path / "arrays.npz")

    def dataset(self) -> Dataset:
        return dataset_from_source(self.record.data)

    # ------------------------------------------------------------------ inference
    @staticmethod
    def _check(spectra, images):
        if spectra is not None:
            spectra = np.asarray(spectra, np.float32)
            spectra = spectra[None] if spectra.ndim == 1 else spectra
            if spectra.ndim != 2 or spectra.shape[1] != SPECTRUM_PIXELS:
                raise DataError(f"Expected spectra on the 3522-pixel SDSS grid (4000-9000 A), shape (n, 3522); "
                                f"got {spectra.shape}. Read files with astrocore.data.readers.sdss.")
            if not np.all(np.isfinite(spectra)):
                raise DataError("The spectrum contains NaN or infinite flux.")
        if images is not None:
            images = np.asarray(images, np.float32)
            images = images[None] if images.ndim == 3 else images
            if images.ndim != 4 or images.shape[1] != N_BANDS:
                raise DataError(f"Expected ugriz cutouts of shape (n, 5, h, w); got {images.shape}.")
            if min(images.shape[2:]) < 16:
                raise DataError(f"Cutouts must be at least 16 x 16 pixels; got {images.shape[2]} x {images.shape[3]}.")
            if not np.all(np.isfinite(images)):
                raise DataError("The cutout contains NaN or infinite pixels.")
        if spectra is not None and images is not None and len(spectra) != len(images):
            raise DataError(f"{len(spectra)} spectra but {len(images)} cutouts; they must match.")
        if spectra is None and images is None:
            raise DataError("Give a spectrum, a cutout or both.")
        return spectra, images

    @torch.no_grad()
    def infer(self, spectra=None, images=None, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Everything the run says about stars: ``probability`` (calibrated, BHB), ``logit``,
        ``cls`` / ``spectrum`` / ``image`` tokens, ``segment_weights`` (n, 7), ``band_weights``
        (n, 5), ``cross_attention`` (n, layers, heads, image tokens, spectral tokens), and the
        unimodal encoders' probabilities. Either modality may be None (its learned
        missing-modality token stands in)."""
        spectra, images = self._check(spectra, images)
        n = len(spectra) if spectra is not None else len(images)
        parts: dict[str, list] = {}
        scaled_spectra = scale_spectra(spectra) if spectra is not None else None
        scaled_images = scale_images(images) if images is not None else None
        n_spec, n_img = self.config.n_segments + 1, ImageEncoder.grid**2 + 1
        for start in range(0, n, batch_size):
            part = slice(start, min(start + batch_size, n))
            m = part.stop - part.start
            out = {}
            if scaled_spectra is not None:
                spectrum = self.spectrum_encoder(torch.as_tensor(scaled_spectra[part]))
                spectral_tokens = encoder_tokens(spectrum)
                out["spectrum"] = spectrum["pooled"]
                out["segment_weights"] = spectrum["weights"]
                out["spectrum_probability"] = torch.sigmoid(spectrum["logit"])
            else:
                spectral_tokens = torch.zeros(m, n_spec, self.config.encoder_dim)
            if scaled_images is not None:
                image = self.image_encoder(torch.as_tensor(scaled_images[part]))
                image_tokens = encoder_tokens(image)
                out["image"] = image["pooled"]
                out["band_weights"] = image["weights"]
                out["image_probability"] = torch.sigmoid(image["logit"])
            else:
                image_tokens = torch.zeros(m, n_img, self.config.encoder_dim)
            fused = self.fusion(spectral_tokens, image_tokens, torch.full((m,), scaled_spectra is not None),
                                torch.full((m,), scaled_images is not None))
            out["logit"] = fused["logit"]
            out["cls"] = fused["cls"]
            if fused["cross_attention"] and fused["cross_attention"][0] is not None:
                out["cross_attention"] = torch.stack(fused["cross_attention"], dim=1)
            for key, value in out.items():
                if value is not None:
                    parts.setdefault(key, []).append(value.numpy())
        result = {key: np.concatenate(value) for key, value in parts.items()}
        result["probability"] = sigmoid(result["logit"] / self.temperature)
        return result

    def predict_proba(self, spectra=None, images=None) -> np.ndarray:
        """Calibrated probability (n,) that each star is a BHB star."""
        return self.infer(spectra, images)["probability"]

    def attention(self, spectra=None, images=None) -> dict[str, np.ndarray]:
        """Segment weights (n, 7), band weights (n, 5) and cross-attention maps
        (n, layers, heads, 17 image tokens, 8 spectral tokens; the last token of each is the pooled one)."""
        result = self.infer(spectra, images)
        return {k: result[k] for k in ("segment_weights", "band_weights", "cross_attention") if k in result}

    def segment_edges_aa(self) -> np.ndarray:
        """Wavelength edges [Angstrom] of the spectral segments (equal in log wavelength, 4000-9000 A)."""
        return 10 ** np.linspace(np.log10(4000.0), np.log10(4000.0) + SPECTRUM_PIXELS * 1e-4, self.config.n_segments + 1)

    def representation(self, name: str, dataset: Dataset | None = None) -> np.ndarray:
        """``cls`` (fused token), ``spectrum`` or ``image`` (the encoders' pooled tokens), (n, d)."""
        if name not in ("cls", "spectrum", "image"):
            raise ValueError(f"BATMM offers the representations cls, spectrum and image; got {name!r}.")
        dataset = dataset if dataset is not None else self.dataset()
        return self.infer(dataset.spectra, dataset.images)[name]
