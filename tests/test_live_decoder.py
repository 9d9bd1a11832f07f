"""The decoder file the Generate view's browser decoder reads (astrocore.app.live_decoder): every
decoder configuration a Disentangler builds round-trips through the file, and the numpy reference
of the browser's computation equals ``Disentangler.decode``. (The JavaScript itself is compared with
torch in Chromium in tests/test_live_browser.py.)"""
import numpy as np
import pytest
import torch

from astrocore.app import live_decoder
from astrocore.methods.disentangle.config import DisentanglerConfig
from astrocore.methods.disentangle.model import Disentangler

CONFIGS = {
    "paper: leaky_relu, linear cp, sigmoid output": dict(),
    "fast: silu, fourier cp, standard scaling": dict(activation="silu", cp_features="fourier", scaling="standard",
                                                     latent_activation="batchnorm"),
    "film decoder, leaky_relu, fourier": dict(conditioning="film", cp_features="fourier", cp_frequencies=3),
    "film decoder, silu, three conditions": dict(conditioning="film", activation="silu",
                                                 conditional=("teff", "logg", "feh"), scaling="standard"),
    "film encoder only": dict(conditioning="film-encoder"),
    "no hidden layer": dict(decoder_hidden=()),
}


def random_model(n_pixels: int = 97, seed: int = 0, **overrides) -> Disentangler:
    """A Disentangler with random weights everywhere (FiLM modulation included) and buffers set."""
    torch.manual_seed(seed)
    config = DisentanglerConfig(latent_dim=5, encoder_hidden=(16,), decoder_hidden=overrides.pop("decoder_hidden", (24, 32)),
                                adversary_hidden=(8,), **overrides)
    model = Disentangler(n_pixels, config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.3)
        n_cp = len(config.conditional)
        model.cp_mean.copy_(torch.linspace(4000, 5, n_cp))
        model.cp_std.copy_(torch.linspace(500, 0.5, n_cp))
        model.cp_min.copy_(model.cp_mean - 2 * model.cp_std)
        model.cp_max.copy_(model.cp_mean + 2 * model.cp_std)
        model.flux_offset.copy_(torch.rand(n_pixels) * 0.2 + 0.8)
        model.flux_scale.copy_(torch.rand(n_pixels) * 0.1 + 0.05)
    return model


def conditions(model, n: int = 6, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    fraction = torch.rand(n, len(model.config.conditional), generator=generator) * 1.6 - 0.3  # some outside the range
    return model.cp_min + fraction * (model.cp_max - model.cp_min)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_reference_decoder_equals_torch(name):
    model = random_model(**dict(CONFIGS[name]))
    header, arrays = live_decoder.decode_file(live_decoder.decoder_file(model))
    latent = torch.randn(6, model.config.latent_dim)
    cp = conditions(model)
    with torch.no_grad():
        expected = model.decode(latent, cp).numpy()
    for i in range(len(latent)):
        got = live_decoder.reference_decode(header, arrays, latent[i].numpy(), cp[i].numpy())
        scale = np.abs(expected[i]).max()
        assert np.allclose(got, expected[i], atol=1e-5 * scale, rtol=0), (name, np.abs(got - expected[i]).max())
    assert header["film"] is not None if model.config.conditioning == "film" else header["film"] is None


def test_file_keeps_float16_only_where_exact():
    model = random_model()
    with torch.no_grad():
        model.decoder[-1].weight.copy_(model.decoder[-1].weight.half().float())  # as a shipped model's big layer
    blob = live_decoder.decoder_file(model)
    header, arrays = live_decoder.decode_file(blob)
    length = int.from_bytes(blob[4:8], "little")
    import json
    table = json.loads(blob[8:8 + length])["arrays"]
    last = header["layers"][-1][0]
    assert table[last]["dtype"] == "f16" and table[header["layers"][0][0]]["dtype"] == "f32"
    assert np.array_equal(arrays[last], model.decoder[-1].weight.detach().numpy())
    assert all(entry["offset"] % 8 == 0 for entry in table.values()) and (8 + length) % 8 == 0
    assert live_decoder.file_digest(blob) == live_decoder.file_digest(live_decoder.decoder_file(model))


def test_models_without_a_disentangler_decoder_are_refused():
    with pytest.raises(live_decoder.UnsupportedDecoder):
        live_decoder.decoder_arrays(torch.nn.Linear(3, 3))
    model = random_model()
    model.decoder = torch.nn.Sequential(torch.nn.Linear(7, 9), torch.nn.Tanh(), torch.nn.Linear(9, 97))
    with pytest.raises(live_decoder.UnsupportedDecoder, match="Tanh"):
        live_decoder.decoder_arrays(model)
