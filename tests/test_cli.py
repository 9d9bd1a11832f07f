import json

import numpy as np
import pytest

from astrocore.cli import main
from astrocore.data.dataset import Dataset


def test_make_train_evaluate_list_embed(tmp_path, capsys, toy_dataset):
    data_path = tmp_path / "toy.fits"
    toy_dataset.save(data_path)
    runs = tmp_path / "runs"
    assert main(["train", "disentangle", "--data", str(data_path), "--mode", "mdat", "--conditional", "teff,logg",
                 "--epochs", "2", "--set", "latent_dim=3", "twin_weight=0.5", "conditioning=film-encoder", "encoder=mlp",
                 "--out", str(runs), "--run-id", "cli-run"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["run"] == "cli-run" and (runs / "cli-run" / "weights.safetensors").exists()
    assert json.loads((runs / "cli-run" / "run.json").read_text())["config"]["conditioning"] == "film-encoder"

    assert main(["evaluate", str(runs / "cli-run"), "--json", "--max-objects", "100"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {"r2", "r2_knn", "recon_mse", "decode_ms"} <= set(metrics)

    assert main(["runs", "list", "--dir", str(runs)]) == 0
    assert "cli-run" in capsys.readouterr().out

    assert main(["embed", str(runs / "cli-run"), "--method", "pca", "--out", str(tmp_path / "pca.npz")]) == 0
    assert np.load(tmp_path / "pca.npz")["coordinates"].shape == (len(toy_dataset), 2)


def test_data_make_rvs(tmp_path):
    out = tmp_path / "rvs.fits"
    assert main(["data", "make", "rvs", "--n-stars", "30", "--seed", "4", "--snr", "50", "--out", str(out)]) == 0
    dataset = Dataset.load(out)
    assert dataset.spectra.shape == (30, 2400) and dataset.errors is not None
    assert dataset.provenance["generator"] == "rvs"


def test_errors_are_messages_not_tracebacks(tmp_path, capsys):
    assert main(["train", "disentangle", "--data", str(tmp_path / "missing.fits"), "--out", str(tmp_path)]) == 2
    assert "neither a built-in simulator" in capsys.readouterr().err
    bad = tmp_path / "bad.fits"
    bad.write_text("not fits at all")
    assert main(["train", "disentangle", "--data", str(bad), "--out", str(tmp_path)]) == 2
    with pytest.raises(SystemExit):
        main(["train", "disentangle", "--mode", "wgan"])


def test_user_mistakes_are_named_not_tracebacks(tmp_path, capsys):
    assert main(["train", "disentangle", "--set", "latent_dimm=6", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "latent_dimm" in err and "latent_dim" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["data", "make", "apogee", "--n-stars", "0", "--out", str(tmp_path / "x.fits")])
    assert "--n-stars: must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "x.fits").exists()
