import numpy as np
import pytest
import torch

from astrocore.methods.disentangle import DisentanglerConfig, fit
from astrocore.runs import RunRecord, delete_run, zip_run
from astrocore.training import TrainingCancelled, device_description, pick_device, read_checkpoint_state


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
    checkpoint = read_checkpoint_state(tmp_path / "resumable")
    assert checkpoint["epoch"] >= 1
    run = fit(toy_dataset, config, runs_root=tmp_path, run_id="resumable", resume=True)
    assert run.record.status == "done"
    assert [e["epoch"] for e in run.record.history["epochs"]] == list(range(4 + config.decoder_refit_epochs))
    # Twin draws, input noise and dropout follow the epoch: the resumed run is the uninterrupted one.
    whole = fit(toy_dataset, config, runs_root=tmp_path, run_id="whole")
    flux = toy_dataset.spectra[:5]
    cp = np.column_stack([np.asarray(toy_dataset.labels[name][:5], float) for name in config.conditional])
    np.testing.assert_allclose(run.encode(flux, cp), whole.encode(flux, cp), atol=1e-5)


def test_cancel_during_the_decoder_refit_then_resume(toy_dataset, tmp_path):
    config = DisentanglerConfig.preset("fast", epochs=2, latent_dim=2, batch_size=16, decoder_refit_epochs=3,
                                       twin_code_steps=5)
    calls = {"n": 0}

    def stop_in_the_refit():
        calls["n"] += 1
        # 7 batches per epoch: 2 training epochs, 5 twin-code steps, then 2 refit epochs.
        return calls["n"] > 7 * (2 + 2) + 5 + 1

    with pytest.raises(TrainingCancelled):
        fit(toy_dataset, config, runs_root=tmp_path, run_id="refit", should_stop=stop_in_the_refit)
    assert RunRecord.read(tmp_path / "refit").status == "cancelled"
    assert read_checkpoint_state(tmp_path / "refit" / "decoder_refit") is not None
    run = fit(toy_dataset, config, runs_root=tmp_path, run_id="refit", resume=True)
    assert run.record.status == "done"
    epochs = run.record.history["epochs"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2, 3, 4]
    assert [e.get("phase") for e in epochs] == [None, None, "decoder refit", "decoder refit", "decoder refit"]


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


def test_cosine_schedule_decays_every_optimiser_to_its_floor():
    from astrocore.training import LoopSettings, train

    class RecordingTask:
        monitor = "val_loss"

        def __init__(self):
            self.layer = torch.nn.Linear(2, 1)
            self.modules = {"layer": self.layer}
            self.optimizers = {"sgd": torch.optim.SGD(self.layer.parameters(), lr=0.1)}
            self.rates = []

        def training_step(self, batch, epoch):
            self.rates.append(self.optimizers["sgd"].param_groups[0]["lr"])
            loss = ((self.layer(batch["x"]) - batch["y"]) ** 2).mean()
            self.optimizers["sgd"].zero_grad()
            loss.backward()
            self.optimizers["sgd"].step()
            return {"loss": float(loss.detach())}

        def validation_step(self, batch):
            return {"loss": float(((self.layer(batch["x"]) - batch["y"]) ** 2).mean())}

    arrays = {"x": np.ones((40, 2), np.float32), "y": np.zeros((40, 1), np.float32)}
    task = RecordingTask()
    train(task, arrays, arrays, LoopSettings(epochs=3, batch_size=10, lr_schedule="cosine", lr_final_fraction=0.01))
    assert len(task.rates) == 12
    assert task.rates[0] == pytest.approx(0.1) and task.rates[-1] == pytest.approx(0.001)
    assert all(later <= earlier for earlier, later in zip(task.rates, task.rates[1:]))
    constant = RecordingTask()
    train(constant, arrays, None, LoopSettings(epochs=2, batch_size=10))
    assert constant.rates == pytest.approx([0.1] * 8)
    with pytest.raises(ValueError, match="lr_schedule"):
        LoopSettings(lr_schedule="linear")


def test_cosine_run_resumes_on_the_same_schedule(toy_dataset, tmp_path):
    config = DisentanglerConfig.preset("fast", epochs=3, latent_dim=2, batch_size=32, lr_schedule="cosine")
    calls = {"n": 0}

    def stop_in_second_epoch():
        calls["n"] += 1
        return calls["n"] > 4 + 1  # 4 batches per epoch

    with pytest.raises(TrainingCancelled):
        fit(toy_dataset, config, runs_root=tmp_path, run_id="cosine", should_stop=stop_in_second_epoch)
    fit(toy_dataset, config, runs_root=tmp_path, run_id="cosine", resume=True)
    fit(toy_dataset, config, runs_root=tmp_path, run_id="straight")

    def final_rates(run_id):
        optimizers = read_checkpoint_state(tmp_path / run_id)["optimizers"]
        return {name: [(group["initial_lr"], group["lr"]) for group in state["param_groups"]]
                for name, state in optimizers.items()}

    # The resumed run kept each optimiser's initial rate, so it ends at the same decayed rate.
    assert final_rates("cosine") == final_rates("straight")
    initial, last = final_rates("straight")["autoencoder"][0]
    assert initial == pytest.approx(config.learning_rate) and last == pytest.approx(0.01 * initial)


class CountingTask:
    """A task whose single weight counts its training steps and whose validation loss follows a
    fixed per-epoch script, so the best epoch is known in advance."""

    monitor = "val_loss"

    def __init__(self, val_losses):
        self.weight = torch.nn.Linear(1, 1, bias=False)
        torch.nn.init.zeros_(self.weight.weight)
        self.modules = {"counter": self.weight}
        self.optimizers = {"sgd": torch.optim.SGD(self.weight.parameters(), lr=1.0)}
        self.val_losses, self.epoch = val_losses, 0

    def training_step(self, batch, epoch):
        self.epoch = epoch
        with torch.no_grad():
            self.weight.weight += 1.0
        return {"loss": 0.0}

    def validation_step(self, batch):
        return {"loss": self.val_losses[self.epoch]}


def test_resumed_training_still_ends_at_the_best_epoch(tmp_path):
    from astrocore.training import LoopSettings, train

    arrays = {"x": np.ones((20, 1), np.float32)}
    settings = LoopSettings(epochs=4, batch_size=10)  # 2 steps per epoch
    val_losses = [1.0, 0.5, 2.0, 3.0]  # best after epoch 1, i.e. after 4 steps
    straight = CountingTask(val_losses)
    train(straight, arrays, arrays, settings)
    assert straight.weight.weight.item() == 4.0

    interrupted, calls = CountingTask(val_losses), {"n": 0}

    def stop_in_epoch_three():
        calls["n"] += 1
        return calls["n"] > 2 * 3 + 1

    with pytest.raises(TrainingCancelled):
        train(interrupted, arrays, arrays, settings, checkpoint_dir=tmp_path, should_stop=stop_in_epoch_three)
    resumed = CountingTask(val_losses)
    history = train(resumed, arrays, arrays, settings, checkpoint_dir=tmp_path, resume=True)
    assert history.best_epoch == 1
    # The best epoch came before the interruption; its weights came back with the checkpoint.
    assert resumed.weight.weight.item() == 4.0

    # Early stopping counts the epochs since the best one across the interruption too: with a
    # patience of 2 and the best at epoch 1, the resumed run stops after epoch 3.
    settings = LoopSettings(epochs=6, batch_size=10, patience=2)
    val_losses = [1.0, 0.5, 2.0, 3.0, 4.0, 5.0]
    calls["n"] = 0
    with pytest.raises(TrainingCancelled):
        train(CountingTask(val_losses), arrays, arrays, settings, checkpoint_dir=tmp_path / "patient",
              should_stop=stop_in_epoch_three)
    patient = CountingTask(val_losses)
    history = train(patient, arrays, arrays, settings, checkpoint_dir=tmp_path / "patient", resume=True)
    assert history.stopped_early and [e["epoch"] for e in history.epochs] == [0, 1, 2, 3]
    assert patient.weight.weight.item() == 4.0


def test_cancelled_inside_an_epoch_resumes_from_that_epochs_start(tmp_path):
    """A cancel after some of an epoch's steps keeps the checkpoint of the epoch before: the
    resumed run takes exactly the uninterrupted run's steps, none twice."""
    from astrocore.training import LoopSettings, train

    arrays = {"x": np.ones((20, 1), np.float32)}
    settings = LoopSettings(epochs=4, batch_size=10)  # 2 steps per epoch
    val_losses = [1.0, 0.9, 0.8, 0.7]  # the last epoch is the best
    calls = {"n": 0}

    def stop_after_the_first_step_of_epoch_two():
        calls["n"] += 1
        return calls["n"] > 2 * 2 + 1

    interrupted = CountingTask(val_losses)
    with pytest.raises(TrainingCancelled):
        train(interrupted, arrays, arrays, settings, checkpoint_dir=tmp_path, should_stop=stop_after_the_first_step_of_epoch_two)
    assert interrupted.weight.weight.item() == 5.0  # one step of epoch 2 was taken before the cancel
    resumed = CountingTask(val_losses)
    train(resumed, arrays, arrays, settings, checkpoint_dir=tmp_path, resume=True)
    assert resumed.weight.weight.item() == 8.0
