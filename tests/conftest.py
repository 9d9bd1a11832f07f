"""Shared fixtures: small datasets, a temporary runs folder and cache, the ../shared data path."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.table import Table

if os.environ.get("PYTEST_XDIST_WORKER"):
    # The default run uses two pytest-xdist workers on CI's two cores: one thread each (and in the
    # processes they start), or each worker's torch threads fight the other worker for the cores.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

from astrocore.data.dataset import Dataset

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache and runs folder, never the user's."""
    root = tmp_path_factory.mktemp("astrocore-home")
    monkeypatch.setenv("ASTROCORE_CACHE", str(root / "cache"))
    monkeypatch.setenv("ASTROCORE_RUNS", str(root / "runs"))
    # The app would copy its shipped models into the runs folder; tests that want them say so.
    monkeypatch.setenv("ASTROCORE_SHIPPED_RUNS", "0")
    return root


@pytest.fixture
def shared_data():
    if not SHARED_DATA.exists():
        pytest.skip("../shared/data is not present (a fresh clone without the reference data)")
    return SHARED_DATA


def toy_spectra(n_fingerprints=12, seed=0):
    """A small grid of Gaussian-line spectra where Teff/logg set line depth and width and
    [Fe/H] one weak line: enough structure for shape and round-trip tests."""
    rng = np.random.default_rng(seed)
    wavelength = np.linspace(8460.0, 8700.0, 240)
    rows, spectra = [], []
    for fingerprint in range(n_fingerprints):
        feh, afe = rng.uniform(-1, 0.3), rng.uniform(-0.1, 0.4)
        for teff in (4000.0, 4500.0, 5000.0, 5500.0):
            for logg in (1.0, 2.0, 3.0):
                depth = 0.6 - 0.08 * (teff - 4000) / 500
                width = 0.8 + 0.4 * logg
                flux = 1 - depth * np.exp(-0.5 * ((wavelength - 8542.1) / width) ** 2)
                flux -= (0.15 + 0.1 * feh) * np.exp(-0.5 * ((wavelength - 8621.6) / 0.6) ** 2)
                flux -= (0.1 + 0.1 * afe) * np.exp(-0.5 * ((wavelength - 8662.1) / width) ** 2)
                spectra.append(flux)
                rows.append((fingerprint, teff, logg, feh, afe))
    labels = Table(rows=rows, names=("fingerprint", "teff", "logg", "feh", "afe"))
    return Dataset(np.array(spectra, np.float32), wavelength, labels, provenance={"generator": "toy"})


@pytest.fixture
def toy_dataset():
    return toy_spectra()


def cancelled_then_resumed(fit, dataset, config, root, stop_after: int):
    """Train ``config`` on ``dataset`` twice under ``root``: once whole (run "whole"), once cancelled
    after ``stop_after`` cancel polls and resumed (run "cut"). Checks the cancelled run is marked
    so and the resumed one finished; returns (whole, resumed) for the caller to compare."""
    from astrocore.runs import RunRecord
    from astrocore.training import TrainingCancelled

    whole = fit(dataset, config, runs_root=root, run_id="whole")
    polls = iter(range(10**6))
    with pytest.raises(TrainingCancelled):
        fit(dataset, config, runs_root=root, run_id="cut", should_stop=lambda: next(polls) >= stop_after)
    assert RunRecord.read(root / "cut").status == "cancelled"
    resumed = fit(dataset, config, runs_root=root, run_id="cut", resume=True)
    assert resumed.record.status == "done"
    return whole, resumed
