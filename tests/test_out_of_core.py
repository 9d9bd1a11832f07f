"""Out-of-core data: the .npy-shard store, a Dataset backed by it, training and encoding that read
only the rows of each batch, and the CLI's ``data make --out X.shards`` and ``encode``."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from astrocore.data import load_source, make_store
from astrocore.data.dataset import Dataset, write_store
from astrocore.data.store import RowView, ShardedArray, StoreWriter, is_lazy, open_store
from astrocore.methods.disentangle.config import DisentanglerConfig
from astrocore.methods.disentangle.fit import fit

ROOT = Path(__file__).resolve().parents[1]


def test_sharded_array_reads_the_rows_asked_for(tmp_path):
    values = np.random.default_rng(0).normal(size=(103, 5)).astype(np.float32)
    writer = StoreWriter(tmp_path / "a.shards", rows_per_shard=10)
    for start in range(0, 103, 7):
        writer.append(x=values[start:start + 7])
    writer.close()
    _, arrays = open_store(tmp_path / "a.shards")
    stored = arrays["x"]
    assert isinstance(stored, ShardedArray) and stored.shape == (103, 5) and len(stored.files) == 11
    index = np.random.default_rng(1).integers(0, 103, 50)  # any order, repeats, across shards
    np.testing.assert_array_equal(stored[index], values[index])
    np.testing.assert_array_equal(stored[5:95:3], values[5:95:3])
    np.testing.assert_array_equal(stored[-1], values[-1])
    view = stored.rows(np.arange(20, 80))
    assert isinstance(view, RowView) and len(view) == 60
    np.testing.assert_array_equal(view.rows([3, 1])[[1]], values[[21]])
    np.testing.assert_array_equal(np.asarray(stored), values)


def test_store_dataset_round_trip_and_parts(tmp_path):
    dataset, _ = load_source("rvs", n_stars=40)
    path = write_store(tmp_path / "rvs.shards", [dataset.subset(np.arange(20)), dataset.subset(np.arange(20, 40))],
                       rows_per_shard=15)
    loaded = Dataset.load(path)
    assert is_lazy(loaded.spectra) and len(loaded) == 40
    np.testing.assert_array_equal(np.asarray(loaded.spectra), dataset.spectra)
    np.testing.assert_array_equal(np.asarray(loaded.labels["teff"]), np.asarray(dataset.labels["teff"]))
    parts = Dataset.load(make_store("rvs", tmp_path / "parts.shards", n_stars=100, rows_per_part=40))
    assert len(parts) == 100 and len(parts.spectra.files) == 1  # 3 parts of at most 40, one shard
    np.testing.assert_array_equal(np.asarray(parts.labels["id"]), np.arange(100))
    np.testing.assert_array_equal(parts.spectra[:40], dataset.spectra)  # parts simulate what one call does


def test_training_from_a_store_matches_training_in_memory(tmp_path):
    dataset, _ = load_source("apogee", n_stars=3)  # with twins (a fingerprint column)
    stored = Dataset.load(write_store(tmp_path / "grid.shards", [dataset], rows_per_shard=64))
    config = DisentanglerConfig.preset("fast", epochs=2, batch_size=32, decoder_refit_epochs=1, twin_code_steps=0,
                                       adversary_refit_steps=2)
    in_memory = fit(dataset, config, runs_root=tmp_path / "runs", run_id="memory")
    on_disk = fit(stored, config, runs_root=tmp_path / "runs", run_id="disk")
    for a, b in zip(in_memory.record.history["epochs"], on_disk.record.history["epochs"]):
        assert a.keys() == b.keys()
        np.testing.assert_allclose([a[k] for k in a if k != "seconds" and not isinstance(a[k], str)],
                                   [b[k] for k in a if k != "seconds" and not isinstance(a[k], str)], rtol=1e-5)
    np.testing.assert_allclose(on_disk.arrays()["latent"], in_memory.arrays()["latent"], rtol=1e-4, atol=1e-6)


def test_cli_makes_a_store_and_encodes_it(tmp_path):
    data = tmp_path / "rvs.shards"
    made = subprocess.run([sys.executable, "-m", "astrocore", "data", "make", "rvs", "--n-stars", "120", "--out",
                           str(data)], cwd=ROOT, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert (data / "store.json").exists() and (data / "spectra" / "00000.npy").exists()
    config = DisentanglerConfig.preset("fast", epochs=1, decoder_refit_epochs=0, twin_code_steps=0,
                                       use_twins=False)
    run = fit(Dataset.load(data), config, runs_root=tmp_path / "runs", run_id="r")
    out = tmp_path / "latent.shards"
    encoded = subprocess.run([sys.executable, "-m", "astrocore", "encode", str(run.path), "--data", str(data),
                              "--rows", "50", "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert encoded.returncode == 0, encoded.stderr
    meta, arrays = open_store(out)
    assert meta["representation"] == "z" and len(arrays["z"].files) == 3
    np.testing.assert_allclose(np.asarray(arrays["z"]), run.arrays()["latent"], rtol=1e-4, atol=1e-4)  # float32 sums in other batch sizes
    assert json.loads((out / "store.json").read_text())["rows"] == 120
    # Under torchrun the two ranks encode half the rows each into one store.
    split = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                            "-m", "astrocore", "encode", str(run.path), "--data", str(data), "--rows", "40", "--out",
                            str(tmp_path / "split.shards")], cwd=ROOT, capture_output=True, text=True)
    assert split.returncode == 0, split.stderr[-2000:]
    meta, halves = open_store(tmp_path / "split.shards")
    assert [shard["rows"] for shard in meta["arrays"]["z"]["shards"]] == [40, 20, 40, 20]
    np.testing.assert_allclose(np.asarray(halves["z"]), np.asarray(arrays["z"]), rtol=1e-4, atol=1e-4)  # and thread counts
