"""A disentangler's decoder as a file the browser evaluates (``live_static/live.js``), so the
Generate view redraws a slider move without asking the server.

The file: the 4 bytes ``ACD1``, a little-endian uint32 header length, the JSON header (padded with
spaces to 8 bytes), then the arrays, each at an 8-byte aligned offset, row-major, as float16 when
the float32 values are all exactly float16 (the shipped models' big layers) and float32 otherwise,
so the browser's decoder reproduces ``Disentangler.decode`` to float32 rounding.

What it covers is every decoder a :class:`~astrocore.methods.disentangle.model.Disentangler` builds:
inputs ``[z, cp_inputs(cp)]`` (standardised conditions, optionally with Fourier features), a plain
MLP or a FiLM MLP with leaky ReLU or SiLU, an optional output sigmoid (min-max scaling), then
the per-pixel unscaling. :func:`reference_decode` is the same computation in numpy (what the
JavaScript does, step by step), tested against torch.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
from torch import nn

from ..methods.disentangle.model import Disentangler, FiLMMLP

MAGIC = b"ACD1"
FORMAT_VERSION = 1


class UnsupportedDecoder(ValueError):
    """The model's decoder is not one the browser can evaluate (the view then uses the server)."""


def _activation(module: nn.Module) -> dict:
    if isinstance(module, nn.LeakyReLU):
        return {"kind": "leaky_relu", "slope": float(module.negative_slope)}
    if isinstance(module, nn.SiLU):
        return {"kind": "silu"}
    raise UnsupportedDecoder(f"activation {type(module).__name__} is not supported in the browser")


def _linears(modules) -> list[nn.Linear]:
    layers = list(modules)
    if not layers or not all(isinstance(layer, nn.Linear) for layer in layers):
        raise UnsupportedDecoder("the decoder's layers are not all linear maps")
    return layers


def decoder_arrays(model) -> tuple[dict, dict[str, np.ndarray]]:
    """The decoder of ``model`` (a Disentangler) as a header and named float32 arrays."""
    if not isinstance(model, Disentangler):
        raise UnsupportedDecoder(f"{type(model).__name__} has no disentangler decoder")
    config, decoder = model.config, model.decoder
    arrays: dict[str, np.ndarray] = {}

    def put(name: str, tensor) -> str:
        arrays[name] = tensor.detach().cpu().float().numpy().astype(np.float32, copy=False)
        return name

    if isinstance(decoder, FiLMMLP):
        layers = _linears(decoder.layers)
        activation = _activation(decoder.activation)
        first, act, last = decoder.modulation
        if _activation(act) != activation:
            raise UnsupportedDecoder("the modulation network's activation differs from the decoder's")
        film = {"widths": [int(w) for w in decoder.widths],
                "modulation": [[put("mod0.w", first.weight), put("mod0.b", first.bias)],
                               [put("mod1.w", last.weight), put("mod1.b", last.bias)]]}
    elif isinstance(decoder, nn.Sequential):
        layers = _linears(m for m in decoder if isinstance(m, nn.Linear))
        between = [m for m in decoder if not isinstance(m, nn.Linear)]
        kinds = [_activation(m) for m in between]
        if len(between) != len(layers) - 1 or any(k != kinds[0] for k in kinds):
            raise UnsupportedDecoder("the decoder is not linear layers with one activation between them")
        activation = kinds[0] if kinds else {"kind": "silu"}
        film = None
    else:
        raise UnsupportedDecoder(f"decoder {type(decoder).__name__} is not supported in the browser")
    shapes = [[int(layer.out_features), int(layer.in_features)] for layer in layers]
    header = {
        "format": FORMAT_VERSION,
        "latent_dim": int(config.latent_dim),
        "conditional": list(config.conditional),
        "n_pixels": int(model.flux_offset.numel()),
        "cp_features": config.cp_features,
        "cp_frequencies": int(config.cp_frequencies),
        "activation": activation,
        "sigmoid": config.scaling == "minmax",
        "layers": [[put(f"layer{i}.w", layer.weight), put(f"layer{i}.b", layer.bias)] for i, layer in enumerate(layers)],
        "shapes": shapes,
        "film": film,
    }
    for name in ("cp_mean", "cp_std", "cp_min", "cp_max", "flux_offset", "flux_scale"):
        put(name, getattr(model, name))
    if shapes[0][1] != header["latent_dim"] + len(cp_input_vector(header, arrays, arrays["cp_mean"])):
        raise UnsupportedDecoder("the decoder's input width does not match latent + conditions")
    return header, arrays


def encode_file(header: dict, arrays: dict[str, np.ndarray]) -> bytes:
    """The decoder file: magic, header length, JSON header, aligned arrays (float16 where exact)."""
    chunks, table, offset = [], {}, 0
    for name, values in arrays.items():
        values = np.ascontiguousarray(values, dtype=np.float32)
        half = values.astype(np.float16)
        exact = bool(np.all(np.isfinite(half) == np.isfinite(values))) and np.array_equal(
            half.astype(np.float32), values)
        data = (half if exact else values).astype("<f2" if exact else "<f4").tobytes()
        table[name] = {"dtype": "f16" if exact else "f32", "shape": list(values.shape), "offset": offset}
        padding = (-len(data)) % 8
        chunks.append(data + b"\0" * padding)
        offset += len(data) + padding
    text = json.dumps({**header, "arrays": table}).encode()
    text += b" " * ((-len(text) - 8) % 8)
    return MAGIC + len(text).to_bytes(4, "little") + text + b"".join(chunks)


def decode_file(blob: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """Header and float32 arrays of a decoder file (the inverse of :func:`encode_file`)."""
    if blob[:4] != MAGIC:
        raise ValueError("not an astrocore decoder file")
    length = int.from_bytes(blob[4:8], "little")
    header = json.loads(blob[8:8 + length].decode())
    base, arrays = 8 + length, {}
    for name, entry in header.pop("arrays").items():
        dtype = np.dtype("<f2" if entry["dtype"] == "f16" else "<f4")
        count = int(np.prod(entry["shape"])) if entry["shape"] else 1
        start = base + entry["offset"]
        arrays[name] = np.frombuffer(blob, dtype, count, start).astype(np.float32).reshape(entry["shape"])
    return header, arrays


def decoder_file(model) -> bytes:
    return encode_file(*decoder_arrays(model))


def file_digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()[:20]


# ---------------------------------------------------------------------------- the browser's computation, in numpy
def cp_input_vector(header: dict, arrays: dict, cp) -> np.ndarray:
    """``Disentangler.cp_inputs`` of one set of conditions (in the header's order)."""
    cp = np.asarray(cp, np.float32)
    scaled = (cp - arrays["cp_mean"]) / arrays["cp_std"]
    if header["cp_features"] != "fourier":
        return scaled
    fraction = (cp - arrays["cp_min"]) / np.maximum(arrays["cp_max"] - arrays["cp_min"], np.float32(1e-12))
    angles = np.float32(np.pi) * fraction[:, None] * np.arange(1, header["cp_frequencies"] + 1, dtype=np.float32)
    return np.concatenate([scaled, np.sin(angles).ravel(), np.cos(angles).ravel()]).astype(np.float32)


def _act(x: np.ndarray, activation: dict) -> np.ndarray:
    if activation["kind"] == "leaky_relu":
        return np.where(x > 0, x, activation["slope"] * x)
    return x / (1 + np.exp(-x))


def reference_decode(header: dict, arrays: dict, latent, cp) -> np.ndarray:
    """Flux (physical units) of one latent vector at one set of conditions, as ``live.js`` computes it."""
    conditions = cp_input_vector(header, arrays, cp).astype(np.float64)
    h = np.concatenate([np.asarray(latent, np.float64), conditions])
    layers, activation = header["layers"], header["activation"]
    pieces = None
    if header["film"]:
        (w0, b0), (w1, b1) = header["film"]["modulation"]
        pieces = arrays[w1] @ _act(arrays[w0] @ conditions + arrays[b0], activation) + arrays[b1]
    offset = 0
    for index, (w, b) in enumerate(layers):
        h = arrays[w] @ h + arrays[b]
        if index < len(layers) - 1:
            h = _act(h, activation)
            if pieces is not None:
                width = header["film"]["widths"][index]
                h = h * (1 + pieces[offset:offset + width]) + pieces[offset + width:offset + 2 * width]
                offset += 2 * width
    if header["sigmoid"]:
        h = 1 / (1 + np.exp(-h))
    return (h * arrays["flux_scale"] + arrays["flux_offset"]).astype(np.float32)
