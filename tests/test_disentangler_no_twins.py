"""The disentangler without twins: the switch that hides fingerprints, the dependence penalties and
the recipe for data without a fingerprint column (issue 21)."""
import importlib

import numpy as np
import pytest
import torch

from astrocore.data.dataset import Dataset
from astrocore.methods.disentangle import DisentanglerConfig, fit
from astrocore.methods.disentangle.config import preset_for_data
from astrocore.methods.disentangle.dependence import dependence, distance_correlation, normalised_hsic
from astrocore.methods.disentangle.fit import DisentanglerTask
from astrocore.methods.disentangle.model import Disentangler
from astrocore.methods.registry import load_run

# The module (the package rebinds the name ``fit`` to the function).
fit_module = importlib.import_module("astrocore.methods.disentangle.fit")
TINY = dict(epochs=2, encoder_components=8, decoder_refit_epochs=0, twin_code_steps=0)


def epochs_of(run) -> list[dict]:
    """The run's per-epoch training history (as saved in run.json)."""
    return load_run(run.path).record.history["epochs"]


def without_fingerprints(dataset: Dataset) -> Dataset:
    labels = dataset.labels.copy()
    labels.remove_column("fingerprint")
    return Dataset(dataset.spectra, dataset.wavelength, labels, provenance=dict(dataset.provenance))


@pytest.mark.parametrize("measure", [normalised_hsic, distance_correlation])
def test_dependence_is_small_for_independent_and_large_for_dependent_samples(measure):
    generator = torch.Generator().manual_seed(0)
    parameters = torch.randn(400, 2, generator=generator)
    independent = torch.randn(400, 3, generator=generator)
    # A nonlinear, non-monotonic function of the parameters (a linear probe would miss it).
    dependent = torch.stack([parameters[:, 0] ** 2, torch.cos(2 * parameters[:, 1]),
                             torch.randn(400, generator=generator)], dim=1)
    low, high = float(measure(independent, parameters)), float(measure(dependent, parameters))
    assert abs(low) < 0.03, low
    assert high > 0.1 and high > 8 * abs(low), (low, high)
    assert float(measure(parameters, parameters)) == pytest.approx(1.0, abs=1e-4)
    # Scale-free: the units of either side do not matter.
    assert float(measure(1e3 * dependent, parameters)) == pytest.approx(high, rel=1e-3)


def test_dependence_penalty_has_gradients_and_checks_its_inputs():
    latent = torch.randn(64, 3, requires_grad=True)
    dependence("hsic", latent, torch.randn(64, 2)).backward()
    assert latent.grad is not None and torch.isfinite(latent.grad).all() and latent.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="same n"):
        dependence("dcor", torch.randn(10, 2), torch.randn(9, 2))
    with pytest.raises(ValueError, match="dependence measure"):
        dependence("mutual", torch.randn(10, 2), torch.randn(10, 2))
    with pytest.raises(ValueError, match="dependence"):
        DisentanglerConfig(dependence="mutual")
    with pytest.raises(ValueError, match="needs a dependence measure"):
        DisentanglerConfig(dependence_weight=1.0)
    with pytest.raises(ValueError, match="adversary_refit_steps"):
        DisentanglerConfig(adversary_refit_steps=-1)


def test_dependence_term_reaches_the_encoder_and_is_reported():
    config = DisentanglerConfig(mode="mdat", adversary="regression", objective="bounded", latent_dim=3,
                                latent_activation="batchnorm", scaling="standard", lambdas=(0.0,),
                                dependence="dcor", dependence_weight=1.0)
    model = Disentangler(20, config)
    before = [p.detach().clone() for p in model.encoder.parameters()]
    metrics = DisentanglerTask(model).training_step({"flux": torch.rand(32, 20), "cp": torch.rand(32, 2)}, epoch=0)
    assert "dependence" in metrics and np.isfinite(metrics["dependence"])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.encoder.parameters()))
    # noat has no constraint at all: no penalty even when configured.
    noat = Disentangler(20, DisentanglerConfig(mode="noat", dependence="hsic", dependence_weight=1.0))
    assert "dependence" not in DisentanglerTask(noat).training_step(
        {"flux": torch.rand(8, 20), "cp": torch.rand(8, 2)}, epoch=0)


def test_no_twin_switch_hides_the_fingerprints(toy_dataset, tmp_path, monkeypatch):
    common = dict(TINY, latent_dim=2)
    with_twins = fit(toy_dataset, DisentanglerConfig.preset("fast", **common), runs_root=tmp_path)
    assert with_twins.record.metrics["twins"] == "on" and with_twins.record.metrics["twin_consistency"]
    assert "train_twin" in epochs_of(with_twins)[0]

    # With use_twins off the twin sampler is never built, so no training step can see a twin.
    def refuse(*args, **kwargs):
        raise AssertionError("the twin sampler was built although twins are off")

    monkeypatch.setattr(fit_module, "TwinSampler", refuse)
    hidden = fit(toy_dataset, DisentanglerConfig.preset("fast", use_twins=False, twin_code_steps=40,
                                                        **{k: v for k, v in common.items() if k != "twin_code_steps"}),
                 runs_root=tmp_path)
    metrics = hidden.record.metrics
    assert metrics["twins"] == "off: disabled"
    assert not metrics["twin_consistency"] and not metrics["twin_codes"] and metrics["twin_code_recon"] is None
    assert not any(key.startswith("train_twin") for row in epochs_of(hidden) for key in row)
    # The split still keeps each chemistry in one part, so probes score unseen chemistries.
    split, fingerprint = hidden.arrays()["split"], np.asarray(toy_dataset.labels["fingerprint"])
    assert all(len(set(split[fingerprint == f])) == 1 for f in np.unique(fingerprint))

    survey = fit(without_fingerprints(toy_dataset), DisentanglerConfig.preset("fast", **common), runs_root=tmp_path)
    assert survey.record.metrics["twins"] == "off: no fingerprint column"


def test_preset_for_data_without_fingerprints(toy_dataset):
    assert preset_for_data("fast", toy_dataset.labels.colnames) == "fast"
    assert preset_for_data("fast", without_fingerprints(toy_dataset).labels.colnames) == "fast-no-twins"
    assert preset_for_data("paper", ["teff", "logg"]) == "paper"  # the paper's discriminators stay
    config = DisentanglerConfig.preset("fast-no-twins")
    assert not config.use_twins and config.twin_weight == 0 and config.dependence == "hsic"
    assert config.latent_candidates == (4, 8, 12)  # the size is chosen on validation
    assert DisentanglerConfig.preset("fast-no-twins", latent_dim=6).latent_candidates == ()  # unless given
    with pytest.raises(ValueError, match="fit_run"):
        fit(without_fingerprints(toy_dataset), config)
    assert DisentanglerConfig.preset("paper").adversary == "classifier"


def test_no_twin_recipe_trains_with_fresh_adversaries_and_round_trips(toy_dataset, tmp_path):
    survey = without_fingerprints(toy_dataset)
    config = DisentanglerConfig.preset("fast-no-twins", epochs=2, encoder_components=8, decoder_refit_epochs=1,
                                       adversary_refit_steps=5, batch_size=32, latent_candidates=())
    run = fit(survey, config, runs_root=tmp_path)
    assert run.record.metrics["twins"] == "off: no fingerprint column"
    history = epochs_of(run)
    assert {"train_dependence", "val_dependence", "train_adversary_refit"} <= set(history[0])
    assert all(np.isfinite(row["train_dependence"]) for row in history if "train_dependence" in row)
    reloaded = load_run(run.path)
    assert reloaded.config == config
    cp = survey.label_array(("teff", "logg"))[:5]
    latent = reloaded.encode(survey.spectra[:5], cp)
    np.testing.assert_allclose(latent, run.encode(survey.spectra[:5], cp), atol=1e-5)
    assert reloaded.decode(latent, cp).shape == (5, survey.n_pixels)


def test_cli_picks_the_no_twin_preset_for_data_without_fingerprints(tmp_path, capsys):
    from astrocore.cli import main

    code = main(["train", "disentangle", "--data", "rvs", "--n-stars", "40", "--epochs", "1", "--out", str(tmp_path),
                 "--set", "encoder_components=8", "decoder_refit_epochs=0"])
    assert code == 0
    captured = capsys.readouterr()
    assert "fast-no-twins" in captured.err
    assert '"twins": "off: no fingerprint column"' in captured.out
    assert '"latent_choice"' in captured.out  # one model per candidate size, one kept


def test_random_label_payne_set_has_no_twins(shared_data):
    from astrocore.methods.disentangle.bench import GRIDS, NO_TWIN_GRIDS, PAYNE_RANDOM_RANGES, load_grid

    assert "payne_random" in NO_TWIN_GRIDS
    dataset, source = load_grid(GRIDS["fast"]["payne_random"][0], 30)
    assert len(dataset) == 30 and "fingerprint" not in dataset.labels.colnames
    teff, logg = dataset.label_array(("teff", "logg")).T
    assert PAYNE_RANDOM_RANGES["teff"][0] <= teff.min() and teff.max() <= PAYNE_RANDOM_RANGES["teff"][1]
    assert PAYNE_RANDOM_RANGES["logg"][0] <= logg.min() and logg.max() <= PAYNE_RANDOM_RANGES["logg"][1]
    assert len(np.unique(np.round(teff, 3))) == 30  # not gridded: every star at its own Teff
    assert source["params"]["n_random"] == 30  # rebuildable from the run's record


def test_chosen_latent_is_the_best_reconstruction_among_the_unleaky():
    from astrocore.methods.disentangle.choose_latent import chosen_index

    scores = [{"latent_dim": 4, "max_leakage": 0.05, "val_recon_mse": 3e-5},
              {"latent_dim": 8, "max_leakage": 0.12, "val_recon_mse": 1e-5},
              {"latent_dim": 12, "max_leakage": 0.40, "val_recon_mse": 5e-6}]
    assert chosen_index(scores, 0.15) == 1  # 12 reconstructs best but reads Teff
    assert chosen_index(scores, 0.5) == 2
    assert chosen_index(scores, 0.01) == 0  # none is below: the least leaky
    with pytest.raises(ValueError, match="latent_candidates"):
        DisentanglerConfig(latent_candidates=(4, 4))
    with pytest.raises(ValueError, match="val_fraction"):
        DisentanglerConfig(latent_candidates=(2, 4), val_fraction=0.0)


def test_latent_size_chosen_on_validation_and_resumed(toy_dataset, tmp_path):
    from astrocore.methods.disentangle import fit_run
    from astrocore.methods.disentangle.choose_latent import CANDIDATES_FOLDER, chosen_index
    from astrocore.runs import RunRecord
    from astrocore.training import TrainingCancelled

    survey = without_fingerprints(toy_dataset)
    config = DisentanglerConfig.preset("fast-no-twins", batch_size=32, latent_candidates=(2, 3), **TINY)
    polls = iter(range(10**6))
    # Cancelled inside the second candidate; the resume keeps the first one as it was.
    first_batches = -(-int(0.6 * len(survey)) // 32) * config.epochs
    with pytest.raises(TrainingCancelled):
        fit_run(survey, config, runs_root=tmp_path, run_id="chosen",
                should_stop=lambda: next(polls) >= first_batches + 2)
    assert RunRecord.read(tmp_path / "chosen").status == "cancelled"
    first = tmp_path / "chosen" / CANDIDATES_FOLDER / "z2"
    assert RunRecord.read(first).status == "done"
    first_weights = (first / "weights.safetensors").read_bytes()
    run = fit_run(survey, config, runs_root=tmp_path, run_id="chosen", resume=True)
    assert (first / "weights.safetensors").read_bytes() == first_weights

    choice = run.record.metrics["latent_choice"]
    assert [c["latent_dim"] for c in choice["candidates"]] == [2, 3]
    for candidate in choice["candidates"]:
        assert set(candidate["leakage"]) == {"teff", "logg"} and candidate["val_recon_mse"] > 0
    kept = [2, 3][chosen_index(choice["candidates"], config.max_leakage)]
    assert choice["kept"] == kept and run.config.latent_dim == kept
    assert run.config.latent_candidates == (2, 3)
    # The kept run is the chosen candidate's model, loadable on its own.
    reloaded = load_run(run.path)
    candidate = load_run(tmp_path / "chosen" / CANDIDATES_FOLDER / f"z{kept}")
    cp = survey.label_array(("teff", "logg"))[:4]
    np.testing.assert_allclose(reloaded.encode(survey.spectra[:4], cp), candidate.encode(survey.spectra[:4], cp),
                               atol=1e-6)
    assert reloaded.encode(survey.spectra[:4], cp).shape == (4, kept)
    # The Evaluate tab's table of the choice, with astronomers' names.
    from astrocore.app.spectra_evaluate import latent_choice_table

    table = latent_choice_table(run.record)
    assert list(table["Latent dimensions"]) == [2, 3] and table["Kept"].sum() == 1
    assert "Teff [K] R² (validation)" in table.columns or any(c.startswith("Teff") for c in table.columns)
    assert latent_choice_table(candidate.record) is None


def test_too_few_stars_for_validation_train_the_preset_latent_and_say_so(toy_dataset, tmp_path):
    from astrocore.methods.disentangle import fit_run

    config = DisentanglerConfig.preset("fast-no-twins", batch_size=32, val_fraction=0.001, **TINY)
    run = fit_run(without_fingerprints(toy_dataset), config, runs_root=tmp_path)
    choice = load_run(run.path).record.metrics["latent_choice"]
    assert "validation split" in choice["skipped"] and run.config.latent_dim == config.latent_dim == choice["kept"]
