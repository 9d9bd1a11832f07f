import json

import numpy as np
import pytest
import torch

from astrocore.data.dataset import DataError
from astrocore.methods.disentangle import DisentanglerConfig, DisentanglerRun, fit
from astrocore.methods.disentangle.fit import DisentanglerTask, split_indices
from astrocore.methods.disentangle.model import Disentangler
from astrocore.methods.registry import load_run
from astrocore.runs import list_runs, read_history


def test_config_validation_and_presets():
    with pytest.raises(ValueError, match="mode"):
        DisentanglerConfig(mode="gan")
    with pytest.raises(ValueError, match="lambdas"):
        DisentanglerConfig(conditional=("teff", "logg"), lambdas=(0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match="twin_latent_factor"):
        DisentanglerConfig(twin_latent_factor=-1.0)
    with pytest.raises(ValueError, match="preset"):
        DisentanglerConfig.preset("huge")
    with pytest.raises(ValueError, match="activation"):
        DisentanglerConfig(activation="relu6")
    with pytest.raises(ValueError, match="lr_schedule"):
        DisentanglerConfig(lr_schedule="step")
    assert DisentanglerConfig.preset("paper").latent_dim == 25
    config = DisentanglerConfig.preset("fast", mode="at", lambdas=[0.1])
    assert DisentanglerConfig.from_json(json.loads(json.dumps(config.to_json()))) == config


@pytest.mark.parametrize("mode,adversary,n_outputs", [
    ("noat", "classifier", []), ("at", "classifier", [100]), ("mdat", "classifier", [10, 10]),
    ("at", "regression", [2]), ("mdat", "regression", [1, 1]),
])
def test_shapes_and_adversaries(mode, adversary, n_outputs):
    config = DisentanglerConfig(mode=mode, adversary=adversary, latent_dim=6)
    model = Disentangler(50, config)
    assert model.adversary_outputs() == n_outputs
    flux, cp = torch.rand(7, 50), torch.rand(7, 2)
    latent = model.encode(flux, cp)
    assert latent.shape == (7, 6)
    assert model.decode(latent, cp).shape == (7, 50)
    assert len(model.adversary_losses(latent, cp)) == len(n_outputs)


@pytest.mark.parametrize("objective", ["paper", "bounded"])
def test_adversarial_gradient_reaches_encoder(objective):
    config = DisentanglerConfig(mode="mdat", adversary="regression", objective=objective, latent_dim=4,
                                latent_activation="batchnorm", scaling="standard", lambdas=(1.0,))
    model = Disentangler(20, config)
    task = DisentanglerTask(model)
    before = [p.detach().clone() for p in model.encoder.parameters()]
    metrics = task.training_step({"flux": torch.rand(16, 20), "cp": torch.rand(16, 2)}, epoch=0)
    assert {"recon", "adversary", "adv_teff", "adv_logg"} <= set(metrics)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.encoder.parameters()))


def test_activation_reaches_encoder_and_decoder_but_not_adversaries():
    model = Disentangler(20, DisentanglerConfig(mode="mdat", activation="silu", latent_dim=3))
    for part in (model.encoder, model.decoder):
        assert any(isinstance(layer, torch.nn.SiLU) for layer in part)
        assert not any(isinstance(layer, torch.nn.LeakyReLU) for layer in part)
    assert all(isinstance(adversary[1], torch.nn.LeakyReLU) for adversary in model.adversaries)


def test_split_keeps_fingerprints_together(toy_dataset):
    split = split_indices(toy_dataset.labels, 0.25, 0.1, seed=1)
    fingerprints = np.asarray(toy_dataset.labels["fingerprint"])
    for fingerprint in np.unique(fingerprints):
        assert len(set(split[fingerprints == fingerprint])) == 1
    assert set(split) == {0, 1, 2}


def test_fit_save_load_round_trip(toy_dataset, tmp_path):
    config = DisentanglerConfig.preset("fast", epochs=3, latent_dim=3, batch_size=32)
    seen = []
    run = fit(toy_dataset, config, runs_root=tmp_path, progress=lambda s, t, m: seen.append((s, t)))
    assert seen and seen[-1][0] == seen[-1][1]
    files = {p.name for p in run.path.iterdir()}
    assert {"run.json", "weights.safetensors", "arrays.npz", "progress.json", "history.jsonl"} <= files
    assert read_history(run.path)
    reloaded = load_run(run.path)
    assert isinstance(reloaded, DisentanglerRun)
    cp = toy_dataset.label_array(("teff", "logg"))
    np.testing.assert_allclose(reloaded.encode(toy_dataset.spectra[:5], cp[:5]),
                               run.encode(toy_dataset.spectra[:5], cp[:5]), rtol=1e-5, atol=1e-6)
    assert [r.id for r in list_runs(tmp_path)] == [run.id]
    arrays = reloaded.arrays()
    assert arrays["latent"].shape == (len(toy_dataset), 3)
    assert reloaded.training_range["teff"] == (4000.0, 5500.0)


def test_generation_flags_extrapolation(toy_dataset, tmp_path):
    run = fit(toy_dataset, DisentanglerConfig.preset("fast", epochs=1, latent_dim=2), runs_root=tmp_path)
    spectra, flags = run.generate(toy_dataset.spectra[0], [4000.0, 1.0], [[4500.0, 2.0], [6500.0, 2.0], [5000.0, 0.0]])
    assert spectra.shape == (3, toy_dataset.n_pixels)
    assert flags.tolist() == [False, True, True]


def test_bad_input_is_a_clear_error(toy_dataset, tmp_path):
    with pytest.raises(DataError, match="not labels"):
        fit(toy_dataset, DisentanglerConfig(conditional=("teff", "vsini")), runs_root=tmp_path)
    run = fit(toy_dataset, DisentanglerConfig.preset("fast", epochs=1, latent_dim=2), runs_root=tmp_path)
    with pytest.raises(DataError, match="240 pixels"):
        run.encode(np.ones((2, 100)), [[5000.0, 2.0]] * 2)
    with pytest.raises(DataError, match="NaN"):
        run.encode(np.full((1, 240), np.nan), [5000.0, 2.0])


def test_training_reduces_reconstruction_error(toy_dataset, tmp_path):
    config = DisentanglerConfig.preset("fast", mode="noat", epochs=15, latent_dim=3, batch_size=16)
    run = fit(toy_dataset, config, runs_root=tmp_path)
    epochs = run.record.history["epochs"]
    assert epochs[-1]["val_recon"] < 0.5 * epochs[0]["val_recon"]


def test_decoder_refit_keeps_the_latent_and_fits_the_decoder(toy_dataset, tmp_path):
    config = DisentanglerConfig.preset("fast", mode="mdat", epochs=3, latent_dim=3, batch_size=16,
                                       decoder_refit_epochs=0)
    plain = fit(toy_dataset, config, runs_root=tmp_path)
    seen = []
    refit = fit(toy_dataset, DisentanglerConfig.from_json({**config.to_json(), "decoder_refit_epochs": 4}),
                runs_root=tmp_path, progress=lambda s, t, m: seen.append((s, t, m.get("epoch"), m.get("phase"))))
    # The encoder is frozen during the refit: the same seed gives the same latent.
    np.testing.assert_allclose(refit.arrays()["latent"], plain.arrays()["latent"], rtol=1e-5, atol=1e-6)
    split = plain.arrays()["split"]
    train_error = [run.arrays()["recon_mse"][split == 0].mean() for run in (plain, refit)]
    assert train_error[1] < train_error[0]
    # One progress scale and one epoch count over both phases.
    steps = [s for s, _, _, _ in seen]
    assert steps == sorted(steps) and seen[-1][0] == seen[-1][1]
    assert max(e for _, _, e, _ in seen if e is not None) == 6
    assert {phase for _, _, e, phase in seen if e is not None and e >= 3} == {"decoder refit"}
    phases = [row.get("phase") for row in refit.record.history["epochs"]]
    assert phases == [None] * 3 + ["decoder refit"] * 4
    with pytest.raises(ValueError, match="decoder_refit_epochs"):
        DisentanglerConfig(decoder_refit_epochs=-1)


def test_fourier_conditional_features(toy_dataset, tmp_path):
    with pytest.raises(ValueError, match="cp_features"):
        DisentanglerConfig(cp_features="spline")
    with pytest.raises(ValueError, match="cp_frequencies"):
        DisentanglerConfig(cp_frequencies=0)
    config = DisentanglerConfig(latent_dim=3, cp_features="fourier", cp_frequencies=4)
    model = Disentangler(30, config)
    n_inputs = 2 * (1 + 2 * 4)  # per parameter: the standardised value, 4 sines, 4 cosines
    assert model.encoder[0].in_features == 30 + n_inputs
    assert model.decoder[0].in_features == 3 + n_inputs
    model.cp_min.copy_(torch.tensor([4000.0, 1.0]))
    model.cp_max.copy_(torch.tensor([5000.0, 3.0]))
    model.cp_mean.copy_(torch.tensor([4500.0, 2.0]))
    model.cp_std.copy_(torch.tensor([300.0, 0.6]))
    at_low_edge = model.cp_inputs(torch.tensor([[4000.0, 1.0]]))
    assert at_low_edge.shape == (1, n_inputs)
    sines, cosines = at_low_edge[0, 2:10], at_low_edge[0, 10:]
    assert torch.allclose(sines, torch.zeros(8), atol=1e-6) and torch.allclose(cosines, torch.ones(8))
    # Smooth through the edge of the training range, so extrapolation one grid step out is sane.
    inside, outside = model.cp_inputs(torch.tensor([[4999.5, 2.999], [5000.5, 3.001]]))
    assert (inside - outside).abs().max() < 0.05

    run = fit(toy_dataset, DisentanglerConfig.preset("fast", epochs=2, latent_dim=2, cp_features="fourier"),
              runs_root=tmp_path)
    reloaded = load_run(run.path)
    assert reloaded.config.cp_features == "fourier"
    spectra, flags = reloaded.generate(toy_dataset.spectra[0], [4000.0, 1.0], [[4500.0, 2.0], [6000.0, 2.0]])
    np.testing.assert_allclose(spectra, run.generate(toy_dataset.spectra[0], [4000.0, 1.0],
                                                     [[4500.0, 2.0], [6000.0, 2.0]])[0], atol=1e-5)
    assert np.isfinite(spectra).all() and flags.tolist() == [False, True]


def test_film_conditioning(toy_dataset, tmp_path):
    from astrocore.methods.disentangle.model import FiLMMLP, hidden_features, mlp

    with pytest.raises(ValueError, match="conditioning"):
        DisentanglerConfig(conditioning="attention")
    # Untrained, the modulation is zero: the network equals a plain MLP with the same weights.
    film, plain = FiLMMLP([12, 16, 8, 5], n_conditions=2), mlp([12, 16, 8, 5])
    for index, layer in enumerate(film.layers):
        plain[2 * index].load_state_dict(layer.state_dict())
    inputs = torch.randn(9, 12)
    torch.testing.assert_close(film(inputs), plain(inputs))
    torch.testing.assert_close(hidden_features(film, inputs), hidden_features(plain, inputs))
    # The conditions (the last two inputs) reach every hidden layer through the modulation, which
    # learns: a gradient step makes the output depend on them beyond the first layer.
    target = torch.randn(9, 5)
    optimiser = torch.optim.Adam(film.parameters(), lr=1e-2)
    for _ in range(5):
        optimiser.zero_grad()
        torch.nn.functional.mse_loss(film(inputs), target).backward()
        optimiser.step()
    assert film.modulation[-1].weight.abs().sum() > 0
    shifted = inputs.clone()
    shifted[:, -2:] += 1.0
    assert not torch.allclose(film.hidden(shifted) - plain[:-1](shifted), torch.zeros(9, 8), atol=1e-4)

    run = fit(toy_dataset, DisentanglerConfig.preset("fast", epochs=2, latent_dim=2, conditioning="film",
                                                        encoder="mlp"),
              runs_root=tmp_path)
    assert isinstance(run.model.encoder, FiLMMLP) and isinstance(run.model.decoder, FiLMMLP)
    encoder_only = Disentangler(30, DisentanglerConfig(latent_dim=3, conditioning="film-encoder"))
    assert isinstance(encoder_only.encoder, FiLMMLP) and not isinstance(encoder_only.decoder, FiLMMLP)
    reloaded = load_run(run.path)
    assert reloaded.config.conditioning == "film"
    cp = toy_dataset.label_array(("teff", "logg"))[:4]
    np.testing.assert_allclose(reloaded.encode(toy_dataset.spectra[:4], cp), run.encode(toy_dataset.spectra[:4], cp),
                               atol=1e-5)
    h = reloaded.encoder_features(toy_dataset.spectra[:4], cp)
    assert h.shape == (4, reloaded.config.encoder_hidden[-1]) and np.isfinite(h).all()


def test_polynomial_reader_encoder(toy_dataset, tmp_path):
    from astrocore.methods.disentangle.model import PolynomialReader, hidden_features

    with pytest.raises(ValueError, match="encoder"):
        DisentanglerConfig(encoder="transformer")
    with pytest.raises(ValueError, match="conditioning"):
        DisentanglerConfig(encoder="cp-polynomial", conditioning="film")
    reader = PolynomialReader(n_pixels=40, n_conditions=2, n_components=6, n_out=3)
    # phi(c) = [1, c1, c2, c1^2, c1 c2, c2^2]; 6 components x 6 monomials plus the 5 non-constant ones.
    assert reader.readout.in_features == 6 * 6 + 5
    torch.testing.assert_close(reader.monomials(torch.tensor([[2.0, 3.0]])),
                               torch.tensor([[1.0, 2.0, 3.0, 4.0, 6.0, 9.0]]))
    generator = torch.Generator().manual_seed(0)
    training_flux = torch.randn(500, 6, generator=generator) @ torch.randn(6, 40, generator=generator)
    reader.set_components(training_flux + 5.0)
    projection = hidden_features(reader, torch.cat([training_flux + 5.0, torch.zeros(500, 2)], dim=1))
    # Unit-variance, uncorrelated principal components of the training spectra.
    torch.testing.assert_close(torch.cov(projection.T), torch.eye(6), atol=1e-3, rtol=0)
    # At fixed conditions z is affine in the spectrum; the conditions change its weights.
    spectra = torch.randn(3, 40, generator=generator)
    conditions = torch.tensor([[0.5, -1.0]]).expand(3, 2)
    def latent(flux, c):
        return reader(torch.cat([flux, c], dim=1))
    mixed = latent(0.3 * spectra[:1] + 0.7 * spectra[1:2], conditions[:1])
    torch.testing.assert_close(mixed, 0.3 * latent(spectra[:1], conditions[:1]) + 0.7 * latent(spectra[1:2], conditions[:1]))
    assert not torch.allclose(latent(spectra, conditions) - latent(spectra, conditions + 1.0),
                              latent(2 * spectra, conditions) - latent(2 * spectra, conditions + 1.0))

    config = DisentanglerConfig.preset("fast", epochs=2, latent_dim=2, encoder="cp-polynomial", encoder_components=8)
    run = fit(toy_dataset, config, runs_root=tmp_path)
    assert isinstance(run.model.encoder, PolynomialReader) and run.model.encoder.components.abs().sum() > 0
    reloaded = load_run(run.path)
    assert reloaded.config.encoder == "cp-polynomial"
    cp = toy_dataset.label_array(("teff", "logg"))[:4]
    np.testing.assert_allclose(reloaded.encode(toy_dataset.spectra[:4], cp), run.encode(toy_dataset.spectra[:4], cp),
                               atol=1e-5)
    assert reloaded.encoder_features(toy_dataset.spectra[:4], cp).shape == (4, 8)


def test_twin_codes_make_the_encoder_read_one_latent_per_chemistry(toy_dataset, tmp_path):
    with pytest.raises(ValueError, match="twin_code_steps"):
        DisentanglerConfig(encoder="cp-polynomial", twin_code_steps=-1)
    reports = []

    def within_to_between(run):
        # Spread of the training latents within a chemistry over their spread between chemistries.
        split = run.arrays()["split"]
        train = split == 0
        latent = run.arrays()["latent"][train]
        chemistry = np.asarray(toy_dataset.labels["fingerprint"])[train]
        means = np.stack([latent[chemistry == c].mean(0) for c in np.unique(chemistry)])
        within = np.mean([latent[chemistry == c].var(0).sum() for c in np.unique(chemistry)])
        return within / means.var(0).sum()

    common = dict(epochs=2, latent_dim=2, encoder_components=8, decoder_refit_epochs=1)
    plain = fit(toy_dataset, DisentanglerConfig.preset("fast", twin_code_steps=0, **common), runs_root=tmp_path)
    coded = fit(toy_dataset, DisentanglerConfig.preset("fast", twin_code_steps=40, **common), runs_root=tmp_path,
                progress=lambda step, total, metrics: reports.append((step, total, metrics)))
    assert coded.record.metrics["twin_codes"] and np.isfinite(coded.record.metrics["twin_code_recon"])
    assert not plain.record.metrics["twin_codes"]
    # The MLP encoder has no linear read-out to distil the codes into: the phase is skipped.
    mlp = fit(toy_dataset, DisentanglerConfig.preset("fast", encoder="mlp", twin_code_steps=40, **common),
              runs_root=tmp_path)
    assert not mlp.record.metrics["twin_codes"]
    assert within_to_between(coded) < 0.05 < within_to_between(plain)
    phases = [metrics.get("phase") for _, _, metrics in reports]
    assert phases.count("twin codes") == 40 and phases[-1] == "decoder refit"
    steps = [step for step, _, _ in reports]
    assert steps == sorted(steps) and steps[-1] == reports[-1][1]  # one scale over all three phases
    reloaded = load_run(coded.path)
    cp = toy_dataset.label_array(("teff", "logg"))[:4]
    np.testing.assert_allclose(reloaded.encode(toy_dataset.spectra[:4], cp), coded.encode(toy_dataset.spectra[:4], cp),
                               atol=1e-5)


def test_input_noise_reaches_the_encoder_only(toy_dataset):
    with pytest.raises(ValueError, match="input_noise"):
        DisentanglerConfig(input_noise=-0.01)
    config = DisentanglerConfig(mode="noat", latent_dim=2, scaling="standard", input_noise=0.05)
    model = Disentangler(toy_dataset.n_pixels, config)
    task = DisentanglerTask(model)
    flux = torch.as_tensor(toy_dataset.spectra[:16])
    torch.manual_seed(0)
    noisy = model.with_input_noise(model.scale_flux(flux))
    # 0.05 in flux units is 0.05 / flux_scale in network units (flux_scale is 1 before fitting).
    assert float((noisy - model.scale_flux(flux)).std()) == pytest.approx(0.05, rel=0.1)
    quiet = Disentangler(toy_dataset.n_pixels, DisentanglerConfig(latent_dim=2))
    assert torch.equal(quiet.with_input_noise(flux), flux)
    # The reconstruction target stays the clean spectrum: a step still runs and reports it.
    batch = {"flux": flux, "cp": torch.as_tensor(toy_dataset.label_array(("teff", "logg"))[:16], dtype=torch.float32),
             "index": torch.arange(16)}
    assert np.isfinite(task.training_step(batch, epoch=0)["recon"])
