import json

import numpy as np
import pytest
import torch

from astrocore.models.disentangler import DisentanglerConfig, fit
from astrocore.runs import RunRecord, delete_run, zip_run
from astrocore.training import TrainingCancelled, device_description, pick_device


def test_device_is_cpu_or_cuda():
    assert pick_device("auto").type in ("cpu", "cuda")
    assert device_description()


def test_cancel_then_resume(toy_dataset, tmp_path):
    config = DisentanglerConfig.preset("fast", epochs=4, latent_dim=2, batch_size=16)
    calls = {"n": 0}

    def stop_after_two_epochs():
        calls["n"] += 1
        return calls["n"] > 2 * 7 + 1  # 7 batches per epoch for ~100 training spectra

    with pytest.raises(TrainingCancelled):
        fit(toy_dataset, config, runs_root=tmp_path, run_id="resumable", should_stop=stop_after_two_epochs)
    record = RunRecord.read(tmp_path / "resumable")
    assert record.status == "cancelled"
    checkpoint = json.loads((tmp_path / "resumable" / "checkpoint.json").read_text())
    assert checkpoint["epoch"] >= 1
    run = fit(toy_dataset, config, runs_root=tmp_path, run_id="resumable", resume=True)
    assert run.record.status == "done"
    assert [e["epoch"] for e in run.record.history["epochs"]] == [0, 1, 2, 3]


def test_same_seed_same_weights(toy_dataset, tmp_path):
    config = DisentanglerConfig.preset("fast", epochs=2, latent_dim=2, batch_size=32)
    first = fit(toy_dataset, config, runs_root=tmp_path / "a")
    second = fit(toy_dataset, config, runs_root=tmp_path / "b")
    cp = toy_dataset.label_array(("teff", "logg"))
    np.testing.assert_allclose(first.encode(toy_dataset.spectra, cp), second.encode(toy_dataset.spectra, cp), atol=1e-5)


def test_zip_and_delete(toy_dataset, tmp_path):
    run = fit(toy_dataset, DisentanglerConfig.preset("fast", epochs=1, latent_dim=2), runs_root=tmp_path)
    payload = zip_run(run.path)
    assert payload[:2] == b"PK" and b"weights.safetensors" in payload
    delete_run(run.path)
    assert not run.path.exists()
    with pytest.raises(FileNotFoundError):
        delete_run(tmp_path)
