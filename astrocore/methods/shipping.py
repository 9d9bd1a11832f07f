"""Trained runs shipped with astrocore (``astrocore/shipped/<id>/``), so the app opens a working
model on a first visit instead of training one.

A shipped run is an ordinary run folder made small (big weight matrices in float16, the biggest
in int8 with one scale per row, no checkpoints or logs) plus ``sample.fits``, a few held-out objects, and ``sample_check.json``, the
run's default representation of them when it was made. :func:`check_sample` recomputes that
representation with the current code, which is what ``tests/test_shipped.py`` asserts, so a change
that silently alters a shipped model's behaviour fails CI. ``assets/make_default_models.py``
remakes every shipped run from the project's own simulators and ``fit``.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..data.dataset import Dataset
from . import registry

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "shipped"
# Files a shipped run keeps; checkpoints, progress, history, logs and job folders are dropped.
KEPT_FILES = ("run.json", "weights.safetensors", "arrays.npz", "evaluation.json", "sample.fits",
              "sample_check.json", "sample_metrics.json")
HALF_PRECISION_MIN_ELEMENTS = 65_536
# Layer weights bigger than this (a decoder's output layer) are shipped as int8 codes with one
# float32 scale per row (``int8:<name>``, ``scale:<name>``) and expanded back to float16 when the run
# is installed (:func:`join_weights`): a quarter of the float32 size. Only ``*.weight`` matrices:
# buffers such as an encoder's principal axes (scaled by 1/spread) amplify the rounding.
INT8_MIN_ELEMENTS = 1_000_000
_INT8, _SCALE = "int8", "scale"
# The repository keeps files under 5 MiB: bigger weights are shipped in parts
# (``weights.part<k>.safetensors``, a matrix cut into row blocks if need be) and joined back into
# ``weights.safetensors`` when the run is installed (:func:`join_weights`).
PART_BYTES = 4 * 2**20
PART_PATTERN = "weights.part*.safetensors"
_PIECE = "piece"


def quantise_rows(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 codes of ``matrix`` (rows, columns) and one float32 scale per row
    (the row's largest absolute value / 127)."""
    values = matrix.float()
    scale = values.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / 127
    codes = torch.round(values / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return codes, scale


def dequantise_rows(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The float16 matrix that :func:`quantise_rows`'s codes and scales stand for."""
    return (codes.float() * scale[:, None]).half()


def shrink_run_folder(folder, int8_min_elements: int = INT8_MIN_ELEMENTS) -> None:
    """Make a finished run folder small enough to ship: matrices with more than 65,536 elements
    stored as float16 (the decoded outputs change by < 1e-3 relative) and layer weights with more
    than ``int8_min_elements`` as int8 codes with a scale per row (the shipped disentangler's
    reconstruction MSE grows by 0.6%; the folder then needs
    :func:`join_weights` before it loads), ``arrays.npz`` compressed, everything but
    :data:`KEPT_FILES` removed. Vectors and buffers (wavelength axes, scalings) keep float32."""
    folder = Path(folder)
    weights = folder / "weights.safetensors"
    packed = {}
    for name, value in load_file(str(weights)).items():
        if not value.is_floating_point() or value.ndim < 2 or value.numel() <= HALF_PRECISION_MIN_ELEMENTS:
            packed[name] = value
        elif name.endswith(".weight") and value.ndim == 2 and value.numel() > int8_min_elements:
            packed[f"{_INT8}:{name}"], packed[f"{_SCALE}:{name}"] = quantise_rows(value)
        else:
            packed[name] = value.half()
    save_file(packed, str(weights))
    # Per-object arrays compressed (lossless; labels on a grid repeat a lot): np.load reads both.
    arrays = folder / "arrays.npz"
    if arrays.exists():
        with np.load(arrays, allow_pickle=False) as stored:
            values = {key: stored[key] for key in stored.files}
        np.savez_compressed(arrays, **values)
    for child in list(folder.iterdir()):
        if child.is_dir():
            shutil.rmtree(child)
        elif child.name not in KEPT_FILES and not child.match(PART_PATTERN):
            child.unlink()


def held_out_sample(run, dataset: Dataset, size: int = 24) -> Dataset:
    """``size`` held-out (test split) objects of ``run``'s data, spread evenly over them."""
    split = run.arrays()["split"]
    held_out = np.flatnonzero(split == 2)
    if len(held_out) == 0:
        raise ValueError(f"Run {run.id} has no held-out objects to ship as a sample.")
    rows = held_out[np.linspace(0, len(held_out) - 1, min(size, len(held_out))).astype(int)]
    sample = dataset.subset(rows)
    sample.provenance = {**dataset.provenance, "sample_of": run.id, "rows": rows.tolist()}
    return sample


def sample_representation(run, sample: Dataset) -> dict:
    """The run's default representation of ``sample`` (what ``sample_check.json`` stores)."""
    name = registry.get(run.record.method).default_representation
    values = np.asarray(run.representation(name, sample), dtype=np.float64)
    return {"representation": name, "values": values.round(6).tolist()}


def write_sample(run, sample: Dataset) -> None:
    """Store ``sample`` and its representation in the run folder."""
    sample.save(Path(run.path) / "sample.fits")
    (Path(run.path) / "sample_check.json").write_text(json.dumps(sample_representation(run, sample)))


def check_sample(folder) -> float:
    """Load the shipped run in ``folder`` with the current code and return the largest difference
    between its representation of the stored sample and the stored one, relative to the stored
    values' spread (0 = identical)."""
    folder = Path(folder)
    with tempfile.TemporaryDirectory() as scratch:
        run = registry.load_run(materialise(folder, scratch))
        stored = json.loads((folder / "sample_check.json").read_text())
        sample = Dataset.load(folder / "sample.fits")
        now = np.asarray(sample_representation(run, sample)["values"])
    before = np.asarray(stored["values"])
    if now.shape != before.shape:
        raise ValueError(f"{folder.name}: representation shape {now.shape}, stored {before.shape}.")
    spread = float(np.std(before)) or 1.0
    return float(np.max(np.abs(now - before)) / spread)


def split_weights(folder, part_bytes: int = PART_BYTES) -> int:
    """Replace ``weights.safetensors`` by parts of at most ``part_bytes`` of tensor data each
    (matrices larger than that cut into blocks of rows); returns the number of parts (1: the file
    was small enough and is kept as it is)."""
    folder = Path(folder)
    weights = folder / "weights.safetensors"
    if weights.stat().st_size <= part_bytes:
        return 1
    pieces = {}
    for name, value in load_file(str(weights)).items():
        if value.ndim == 0 or value.numel() * value.element_size() <= part_bytes:
            pieces[name] = value
            continue
        rows_per_piece = max(1, part_bytes // (value[0].numel() * value.element_size()))
        blocks = value.split(rows_per_piece)
        for index, block in enumerate(blocks):
            pieces[f"{_PIECE}:{name}:{index}:{len(blocks)}"] = block.contiguous()
    parts, current, size = [], {}, 0
    for name, value in pieces.items():
        nbytes = value.numel() * value.element_size()
        if current and size + nbytes > part_bytes:
            parts.append(current)
            current, size = {}, 0
        current[name], size = value, size + nbytes
    parts.append(current)
    for index, part in enumerate(parts, start=1):
        save_file(part, str(folder / f"weights.part{index}.safetensors"))
    weights.unlink()
    return len(parts)


def join_weights(folder) -> None:
    """Make a shipped run folder loadable: join the parts written by :func:`split_weights` back
    into ``weights.safetensors`` and expand int8 matrices to float16 (nothing to do for a run
    shipped in one plain file)."""
    folder = Path(folder)
    parts = sorted(folder.glob(PART_PATTERN))
    weights = folder / "weights.safetensors"
    if not parts:
        if not weights.exists():
            return
        parts = [weights]
    tensors, blocks = {}, {}
    for part in parts:
        for name, value in load_file(str(part)).items():
            if name.startswith(f"{_PIECE}:"):
                original, index, _count = name[len(_PIECE) + 1:].rsplit(":", 2)
                blocks.setdefault(original, {})[int(index)] = value
            else:
                tensors[name] = value
    for name, by_index in blocks.items():
        tensors[name] = torch.cat([by_index[index] for index in sorted(by_index)])
    quantised = [name for name in tensors if name.startswith(f"{_INT8}:")]
    if parts == [weights] and not quantised:
        return
    for name in quantised:
        original = name[len(_INT8) + 1:]
        tensors[original] = dequantise_rows(tensors.pop(name), tensors.pop(f"{_SCALE}:{original}"))
    save_file(tensors, str(weights))
    for part in parts:
        if part != weights:
            part.unlink()


def materialise(folder, target_root) -> Path:
    """A loadable copy of the shipped run ``folder`` under ``target_root`` (its weights joined)."""
    target = Path(target_root) / Path(folder).name
    shutil.copytree(folder, target)
    join_weights(target)
    return target


def install(folder, target_root=SHIPPED_DIR) -> Path:
    """Copy a shrunk run folder into ``astrocore/shipped/`` (replacing an older one)."""
    folder = Path(folder)
    target = Path(target_root) / folder.name
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(folder, target)
    return target
