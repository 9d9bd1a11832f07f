"""The bench's JSON shape and the sweep, on a tiny grid (the real sizes live in bench.GRIDS)."""
import pytest

from astrocore.methods.disentangle import bench


@pytest.fixture
def tiny_grids(monkeypatch):
    monkeypatch.setitem(bench.GRIDS, "fast", {"apogee": ("apogee", 4, ("teff", "logg"))})
    real_preset = bench.DisentanglerConfig.preset.__func__

    def quick(cls, name="fast", **overrides):
        # One epoch and no refits: the shape of the report is under test here, not its numbers.
        return real_preset(cls, name, **{**overrides, "epochs": 1, "decoder_refit_epochs": 0, "twin_code_steps": 0})

    monkeypatch.setattr(bench.DisentanglerConfig, "preset", classmethod(quick))


def test_bench_reports_every_mode_in_the_issue_shape(tiny_grids, tmp_path):
    result = bench.bench_disentangle("fast", grids=("apogee",), runs_root=tmp_path, paper_recipe=False)
    apogee = result["apogee"]
    assert set(apogee["r2"]) == {"X", "noat", "at", "mdat"}
    assert set(apogee["r2_knn"]) == set(apogee["r2_poly2"]) == set(apogee["r2"])
    assert set(apogee["r2"]["mdat"]) == {"teff", "logg", "feh", "afe"}
    for key in ("gen_rmse", "gen_rmse_extrap", "decode_ms"):
        assert set(apogee[key]) == {"noat", "at", "mdat"}, key
    # recon_mse and train_s add the label emulator given the true labels and given the
    # unconditioned labels estimated from the spectra: the references for disentangled decoders
    references = {"labels", "labels_estimated"}
    assert set(apogee["recon_mse"]) == set(apogee["train_s"]) == {*references, "noat", "at", "mdat"}
    assert set(apogee["estimate_r2"]) == {"feh", "afe", "c_fe", "n_fe", "o_fe", "mg_fe", "al_fe", "si_fe",
                                          "ca_fe", "ti_fe", "mn_fe", "ni_fe"}
    assert set(apogee["twins_top10"]) == {"X", "noat", "at", "mdat"}
    assert apogee["r2"]["X"]["teff"] > 0.9  # the spectra themselves know Teff
    assert result["total_s"] > 0


def test_sweep_points_cover_lambda_steps_and_twins():
    points = bench.sweep_points(lambdas=(0.1, 1.0), adversary_steps=(1, 5), twin_latent_factors=(0.0, 10.0))
    assert len(points) == 6
    assert {"twin_weight": 0.0} in points and {"twin_latent_factor": 10.0} in points


def test_sweep_runs_each_point(tiny_grids, tmp_path):
    lines = []
    points = bench.sweep_disentangle("fast", points=[{"lambdas": (0.5,)}, {"twin_weight": 0.0}],
                                     runs_root=tmp_path, progress=lines.append)
    assert [p["lambda"] for p in points] == [0.5, 0.1] and points[1]["twin_weight"] == 0.0
    assert len(lines) == 2 and set(points[0]["r2"]) == {"teff", "logg", "feh", "afe"}


def test_grid_overrides_reach_every_mode_but_noat_keeps_its_latent(tiny_grids, monkeypatch, tmp_path):
    from astrocore.methods.disentangle import DisentanglerRun

    monkeypatch.setitem(bench.GRIDS, "fast", {"apogee": ("apogee", 4, ("teff", "logg"), {"latent_dim": 3})})
    monkeypatch.setattr(bench, "evaluate_disentangler", lambda run, dataset, render=None: {})  # sizes only
    result = bench.bench_disentangle("fast", grids=("apogee",), runs_root=tmp_path, paper_recipe=False,
                                     tracks=("twins",))
    latent = {mode: DisentanglerRun.load(tmp_path / run_id).config.latent_dim
              for mode, run_id in result["apogee"]["runs"].items()}
    assert latent == {"noat": 25, "at": 3, "mdat": 3}


def test_no_twin_track_chooses_mdat_latent_on_validation_noat_keeps_25_and_a_same_size_noat(tiny_grids, monkeypatch, tmp_path):
    from astrocore.methods.disentangle import DisentanglerRun

    monkeypatch.setitem(bench.GRIDS, "fast", {"apogee": ("apogee", 12, ("teff", "logg"))})
    monkeypatch.setattr(bench, "evaluate_disentangler", lambda run, dataset, render=None: {})  # sizes only
    monkeypatch.setattr(bench, "representation_scores", lambda *args, **kwargs: {key: {} for key in bench.PROBE_KEYS})
    real_preset = bench.DisentanglerConfig.preset

    def with_candidates(name="fast", **overrides):
        return real_preset(name, **{"latent_candidates": (2, 3), "encoder_components": 8, **overrides})

    monkeypatch.setattr(bench.DisentanglerConfig, "preset", with_candidates)
    result = bench.bench_disentangle("fast", grids=("apogee",), runs_root=tmp_path, paper_recipe=False,
                                     tracks=("no_twins",))
    entry = result["apogee"]["no_twins"]
    assert set(result["apogee"]) == {"no_twins"}  # the twin track did not run
    latent = {mode: DisentanglerRun.load(tmp_path / run_id).config.latent_dim for mode, run_id in entry["runs"].items()}
    assert latent["noat"] == 25 and latent["mdat"] in (2, 3)
    # The second reference: noAT at the size mdat kept, with mdat's batch-normalised latent.
    same = DisentanglerRun.load(tmp_path / entry["runs"]["noat_same_latent"]).config
    assert same.mode == "noat" and same.latent_dim == latent["mdat"] and same.latent_activation == "batchnorm"
    assert set(entry["train_s"]) == {"noat", "mdat", "noat_same_latent"}
    # The reference a chemistry-only latent is read against: the true abundances, not Teff or log g.
    assert {"feh", "afe"} <= set(entry["true_chemistry_labels"]) and not {"teff", "logg"} & set(entry["true_chemistry_labels"])
    assert set(entry["latent_choice"]) == {"mdat"} and entry["latent_choice"]["mdat"]["kept"] == latent["mdat"]


def test_paper_recipe_has_none_of_the_fast_presets_additions():
    paper, fast = bench._paper_recipe_fields(), bench.DisentanglerConfig.preset("fast")
    assert paper["decoder_refit_epochs"] == 0 and fast.decoder_refit_epochs > 0
    assert paper["encoder"] == "mlp" and paper["twin_code_steps"] == 0 and paper["activation"] == "leaky_relu" and paper["twin_weight"] == 0
    assert paper["cp_features"] == "linear" and paper["conditioning"] == "concat"
