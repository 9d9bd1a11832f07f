"""The method registry: runs, the CLI, evaluation and the explorer find a method only through it."""
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from astrocore.app import explore
from astrocore.app.common import finished_runs
from astrocore.cli import main
from astrocore.data.dataset import Dataset
from astrocore.methods import registry
from astrocore.methods.spec import MethodSpec
from astrocore.runs import RunRecord, load_arrays, save_arrays


@dataclass(frozen=True)
class FakeConfig:
    width: int = 3

    def to_json(self) -> dict:
        return asdict(self)


class FakeRun:
    """A 'method' whose representation is a fixed random projection of made-up labels."""

    def __init__(self, record: RunRecord):
        self.record = record
        self.config = FakeConfig(**record.config)

    id = property(lambda self: self.record.id)
    path = property(lambda self: self.record.path)

    @classmethod
    def load(cls, path):
        return cls(RunRecord.read(path))

    def arrays(self):
        return load_arrays(self.path / "arrays.npz")

    def dataset(self) -> Dataset:
        n = int(self.record.data["n"])
        values = np.linspace(0.0, 1.0, n)
        return Dataset(None, None, Table({"id": [f"obj{i}" for i in range(n)], "value": values}))

    def representation(self, name, dataset=None):
        dataset = self.dataset() if dataset is None else dataset
        if name != "features":
            raise ValueError(name)
        values = np.asarray(dataset.labels["value"], float)
        return np.stack([values * (k + 1) + np.sin(3 * values * k) for k in range(self.config.width)], axis=1)


def fake_fit(dataset, config, runs_root=None, run_id="fake-run", **_):
    folder = Path(runs_root) / run_id
    folder.mkdir(parents=True)
    save_arrays(folder / "arrays.npz", {"ids": np.arange(len(dataset)), "split": np.zeros(len(dataset), int)})
    record = RunRecord(id=run_id, path=folder, method="fake", status="done", config=config.to_json(),
                       data={"n": len(dataset)}, metrics={"quality": 1.0})
    record.write()
    return FakeRun(record)


@pytest.fixture()
def fake_method():
    spec = MethodSpec(name="fake", title="A fake method", config_class=FakeConfig, fit=fake_fit, run_class=FakeRun,
                      representations={"features": "fake features"}, default_representation="features",
                      evaluate=lambda run, max_objects=0: {"quality": run.record.metrics["quality"]})
    registry.register(spec)
    yield spec
    registry.unregister("fake")


def test_a_registered_method_is_listed_loaded_evaluated_embedded_and_explored(fake_method, tmp_path, capsys):
    runs = tmp_path / "runs"
    dataset = Dataset(None, None, Table({"value": np.linspace(0, 1, 40)}))
    fake_fit(dataset, FakeConfig(), runs_root=runs)

    assert "fake" in registry.methods()
    loaded = registry.load_run(runs / "fake-run")
    assert isinstance(loaded, FakeRun) and loaded.id == "fake-run"
    assert [r.id for r in finished_runs(runs, method=None)] == ["fake-run"]

    assert main(["runs", "list", "--dir", str(runs)]) == 0
    assert "fake-run" in capsys.readouterr().out and True
    assert main(["evaluate", str(runs / "fake-run"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"run": "fake-run", "quality": 1.0}
    out = tmp_path / "pca.npz"
    assert main(["embed", str(runs / "fake-run"), "--method", "pca", "--out", str(out)]) == 0
    assert np.load(out)["coordinates"].shape == (40, 2)
    with pytest.raises(SystemExit):  # a representation the method does not offer
        main(["embed", str(runs / "fake-run"), "--representation", "z", "--out", str(out)])

    data = explore.load_explore_data(loaded)
    assert len(data) == 40 and data.spectra is None and data.available() == ["features"]
    assert data.values("features").shape == (40, 3)
    assert list(data.table["id"][:2]) == ["obj0", "obj1"]


def test_unknown_methods_are_named_clearly(tmp_path):
    with pytest.raises(ValueError, match="Unknown method 'nope'.*disentangle"):
        registry.get("nope")
    with pytest.raises(TypeError, match="MethodSpec"):
        registry.register(object())


def test_a_run_saved_before_the_reshape_still_loads_and_decodes_the_same():
    """tests/fixtures/legacy-rvs-run was written by astrocore.models.disentangler (before the method
    packages); with it are the latents and spectra that code computed for two of its stars."""
    folder = Path(__file__).parent / "fixtures" / "legacy-rvs-run"
    run = registry.load_run(folder)
    dataset = run.dataset()  # rebuilt from the simulator source stored in run.json
    cp = dataset.label_array(run.conditional)[:2]
    expected = np.load(folder / "expected.npz")
    latent = run.encode(dataset.spectra[:2], cp)
    np.testing.assert_allclose(latent, expected["latent"], atol=1e-5)
    np.testing.assert_allclose(run.decode(latent, cp), expected["decoded"], atol=1e-5)
