"""Probes and metrics.

The disentangling protocol of the GANDALF paper (R^2 of MLP regressors predicting each label from
the spectra X and from the latents z), made fair to the latent: probe inputs are standardised,
the MLP is tuned to converge, and a k-NN probe and a ridge regression on degree-2 polynomial
features are reported beside it (on held-out chemistries the smooth ridge probe sometimes reads a
global trend that the MLP, early-stopped on training chemistries, misses). A latent counts as having
lost a parameter only when every probe fails to recover it.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from astropy.table import Table
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.neighbors import KNeighborsRegressor
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, PolynomialFeatures, StandardScaler
from threadpoolctl import threadpool_limits

# Inputs wider than this (raw spectra) go through PCA first, so the probe converges in seconds.
MAX_PROBE_DIMS = 128
PROBE_LABELS = ("teff", "logg", "feh", "afe")
# Result key of each probe kind (see probe_r2).
PROBE_KEYS = {"r2": "mlp", "r2_knn": "knn", "r2_poly2": "poly2"}
# The fitted probes (and the shared input transform) see at most this many training objects, so
# they converge in seconds; the k-NN probe sees every training object up to MAX_KNN_OBJECTS, since
# a neighbour regression is only as good as the density of its reference set (on the APOGEE-like
# grid a latent's log g R^2 rises from .91 with 4000 references to .96 with 15,000).
MAX_FIT_OBJECTS = 4000
MAX_KNN_OBJECTS = 20000


class GlobalScaler(TransformerMixin, BaseEstimator):
    """Divide all columns by one number: the root-mean-square of the (centred) training data."""

    def fit(self, values, target=None):
        values = np.asarray(values, dtype=np.float64)
        self.scale_ = float(np.sqrt(((values - values.mean(axis=0)) ** 2).sum(axis=1).mean())) or 1.0
        return self

    def transform(self, values):
        return np.asarray(values, dtype=np.float64) / self.scale_


def _clip_standardised(values):
    # A saturated sigmoid unit has a training spread near zero; standardised, its test values
    # would be astronomically large. Clipping at 10 sigma keeps the probe finite and fair.
    return np.clip(values, -10.0, 10.0)


def _probe_inputs(n_features: int, n_samples: int, seed: int):
    """The input transform every probe shares: standardise, clip, and PCA-reduce wide inputs."""
    steps = [StandardScaler(), FunctionTransformer(_clip_standardised)]
    if n_features > MAX_PROBE_DIMS:
        # One scale for all components keeps their relative variance: standardising each PCA
        # component would blow numerical-noise components up to the size of real signal.
        steps += [PCA(n_components=min(MAX_PROBE_DIMS, n_samples // 2), random_state=seed), GlobalScaler()]
    return make_pipeline(*steps)


def _probe_head(kind: str, seed: int):
    """The regressor of one probe kind, fitted on the transformed inputs."""
    if kind == "mlp":
        return MLPRegressor(
            hidden_layer_sizes=(128, 64), alpha=1e-4, learning_rate_init=2e-3, batch_size=256,
            max_iter=300, early_stopping=True, validation_fraction=0.1, n_iter_no_change=15,
            tol=1e-4, random_state=seed,
        )
    if kind == "knn":
        return KNeighborsRegressor(n_neighbors=10, weights="distance")
    if kind == "poly2":
        # One regularisation per label, chosen by leave-one-out cross-validation; fitted on all
        # labels at once, which shares one decomposition of the (wide) polynomial features.
        return make_pipeline(PolynomialFeatures(2), RidgeCV(alphas=np.logspace(-3, 3, 7), alpha_per_target=True))
    raise ValueError(f"probe kind must be 'mlp', 'knn' or 'poly2'; got {kind!r}.")


def probe_r2(train_features: np.ndarray, train_targets: np.ndarray, test_features: np.ndarray,
             test_targets: np.ndarray, kind: str = "mlp", seed: int = 0,
             max_fit_objects: int = MAX_FIT_OBJECTS) -> np.ndarray:
    """R^2 on ``test`` of a probe fitted on ``train``, one value per column of the targets (NaN
    for a column that does not vary in the training or the test objects).

    Inputs are standardised (and PCA-reduced when wider than MAX_PROBE_DIMS), targets are
    standardised with the training statistics. ``kind`` is ``mlp`` (two hidden layers, early
    stopping), ``knn`` (10 neighbours, distance-weighted) or ``poly2`` (ridge regression on
    degree-2 polynomial features, regularisation chosen by cross-validation). The input transform,
    ``mlp`` and ``poly2`` are fitted on a random subset of at most ``max_fit_objects`` training
    objects (seeded); ``knn`` takes all of them as its reference set.
    """
    return probe_scores(train_features, train_targets, test_features, test_targets, (kind,), seed,
                        max_fit_objects)[kind]


def probe_scores(train_features: np.ndarray, train_targets: np.ndarray, test_features: np.ndarray,
                 test_targets: np.ndarray, kinds=tuple(PROBE_KEYS.values()), seed: int = 0,
                 max_fit_objects: int = MAX_FIT_OBJECTS) -> dict[str, np.ndarray]:
    """:func:`probe_r2` for several probe kinds, sharing one fit of the input transform."""
    for kind in kinds:
        _probe_head(kind, seed)  # an unknown kind fails before any fitting
    train_features = np.asarray(train_features, dtype=np.float64)
    test_features = np.asarray(test_features, dtype=np.float64)
    train_targets = np.asarray(train_targets, dtype=np.float64).reshape(len(train_features), -1)
    test_targets = np.asarray(test_targets, dtype=np.float64).reshape(len(test_features), -1)
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError("train and test features must have the same number of columns.")
    train_spread, test_spread = train_targets.std(axis=0), test_targets.std(axis=0)
    mean, std = train_targets.mean(axis=0), np.maximum(train_spread, 1e-12)
    # A label that does not vary (e.g. one held-out chemistry) has no R^2: NaN, not a meaningless
    # 0 or -1e30 from rounding noise.
    varying = np.flatnonzero((train_spread >= 1e-12) & (test_spread > 1e-6 * train_spread))
    train_scaled = (train_targets - mean) / std
    test_scaled = (test_targets - mean) / std
    scores = {kind: np.full(train_targets.shape[1], np.nan) for kind in kinds}
    if len(varying) == 0:
        return scores
    fit_rows = np.arange(len(train_features))
    if len(fit_rows) > max_fit_objects:
        fit_rows = np.sort(np.random.default_rng(seed).choice(fit_rows, size=max_fit_objects, replace=False))
    # Small matrices: one BLAS thread is several times faster than two fighting over them.
    with threadpool_limits(limits=1, user_api="blas"):
        inputs = _probe_inputs(train_features.shape[1], len(fit_rows), seed).fit(train_features[fit_rows])
        train_inputs = inputs.transform(train_features)
        test_inputs = inputs.transform(test_features)
        for kind in kinds:
            rows = slice(None) if kind == "knn" else fit_rows
            if kind == "poly2":
                head = _probe_head(kind, seed).fit(train_inputs[rows], train_scaled[rows][:, varying])
                predicted = head.predict(test_inputs).reshape(len(test_inputs), -1)
                for position, column in enumerate(varying):
                    scores[kind][column] = r2_score(test_scaled[:, column], predicted[:, position])
                continue
            for column in varying:
                head = _probe_head(kind, seed).fit(train_inputs[rows], train_scaled[rows, column])
                scores[kind][column] = r2_score(test_scaled[:, column], head.predict(test_inputs))
    return scores


def twins_score(features: np.ndarray, fingerprint: np.ndarray, grid_point: np.ndarray, k: int = 10,
                max_queries: int = 2000, seed: int = 0) -> float:
    """Fraction of each object's ``k`` nearest neighbours (among objects at *other* grid points,
    i.e. other Teff/logg) that share its chemical fingerprint. Chance is about 1/n_fingerprints.

    ``features`` are standardised (and PCA-reduced if wide) before Euclidean distances.
    """
    features = StandardScaler().fit_transform(np.asarray(features, dtype=np.float64))
    if features.shape[1] > MAX_PROBE_DIMS:
        features = PCA(n_components=min(MAX_PROBE_DIMS, len(features)), random_state=seed).fit_transform(features)
    fingerprint, grid_point = np.asarray(fingerprint), np.asarray(grid_point)
    rng = np.random.default_rng(seed)
    queries = rng.choice(len(features), size=min(max_queries, len(features)), replace=False)
    squared_norms = (features**2).sum(axis=1)
    hits = []
    for start in range(0, len(queries), 256):
        chunk = queries[start:start + 256]
        distance = squared_norms[chunk, None] + squared_norms[None, :] - 2 * features[chunk] @ features.T
        distance[grid_point[chunk, None] == grid_point[None, :]] = np.inf  # same Teff/logg (and itself)
        nearest = np.argpartition(distance, k, axis=1)[:, :k]
        hits.append((fingerprint[nearest] == fingerprint[chunk, None]).mean(axis=1))
    return float(np.concatenate(hits).mean())


def rms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Root-mean-square difference per row (flux units)."""
    return np.sqrt(((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2).mean(axis=1))


def grid_step(values: np.ndarray) -> float:
    """Spacing of a regular grid of values (or 5 % of the range for random samples)."""
    unique = np.unique(np.round(values, 6))
    if 2 < len(unique) <= 50:
        return float(np.min(np.diff(unique)))
    return 0.05 * float(unique[-1] - unique[0])


def generation_targets(labels: Table, index: np.ndarray, moved: tuple[str, ...], extrapolate: bool,
                       seed: int = 0) -> Table:
    """For each object in ``index``, a copy of its labels moved to new values of ``moved``.

    Inside the grid: the values of another held-out object (same grid). Extrapolation: one grid
    step beyond the training range in one randomly chosen parameter and direction, the others kept
    inside.
    """
    rng = np.random.default_rng(seed)
    targets = labels[index].copy()
    donors = rng.choice(index, size=len(index))
    for name in moved:
        targets[name] = np.asarray(labels[name])[donors]
    if extrapolate:
        which = rng.integers(0, len(moved), size=len(index))
        direction = rng.choice([-1.0, 1.0], size=len(index))
        for position, name in enumerate(moved):
            values = np.asarray(labels[name], dtype=np.float64)
            low, high, step = values.min(), values.max(), grid_step(values)
            beyond = np.where(direction > 0, high + step, low - step)
            column = np.asarray(targets[name], dtype=np.float64)
            targets[name] = np.where(which == position, beyond, column)
    return targets


def generation_rmse(run, spectra: np.ndarray, labels: Table, index: np.ndarray,
                    render: Callable[[Table], np.ndarray], extrapolate: bool = False,
                    moved=("teff", "logg"), seed: int = 0) -> float:
    """Median RMS (flux units) between decoded and true spectra at new Teff/logg.

    Each held-out star is encoded at its own conditional parameters, decoded at the target
    parameters (:func:`generation_targets`), and compared with ``render(target_labels)``, the
    simulator's noiseless spectrum of the same chemistry there.
    """
    moved = tuple(name for name in moved if name in run.conditional)
    targets = generation_targets(labels, index, moved, extrapolate, seed)
    source_cp = np.stack([np.asarray(labels[name], np.float64)[index] for name in run.conditional], axis=1)
    target_cp = np.stack([np.asarray(targets[name], np.float64) for name in run.conditional], axis=1)
    latent = run.encode(spectra[index], source_cp)
    generated = run.decode(latent, target_cp)
    truth = render(targets)
    return float(np.median(rms(generated, truth)))



def _grid_point_ids(labels: Table) -> np.ndarray:
    teff = np.round(np.asarray(labels["teff"], np.float64), 3)
    logg = np.round(np.asarray(labels["logg"], np.float64), 3)
    _, ids = np.unique(np.stack([teff, logg], axis=1), axis=0, return_inverse=True)
    return ids.ravel()


def representation_scores(train_features: np.ndarray, train_labels: Table, test_features: np.ndarray,
                          test_labels: Table, probe_labels=PROBE_LABELS, seed: int = 0) -> dict:
    """R^2 of standardised MLP, k-NN and polynomial-ridge probes (``r2``, ``r2_knn``, ``r2_poly2``)
    fitted on the training objects and scored on the held-out ones (other stars: other chemical
    fingerprints), per label (None where the label does not vary, see :func:`probe_r2`); plus the
    twins score of the held-out objects when the data has chemical fingerprints."""
    names = [name for name in probe_labels if name in test_labels.colnames]
    train_targets = np.stack([np.asarray(train_labels[name], np.float64) for name in names], axis=1)
    test_targets = np.stack([np.asarray(test_labels[name], np.float64) for name in names], axis=1)
    by_kind = probe_scores(train_features, train_targets, test_features, test_targets, seed=seed)
    scores = {
        kind_name: dict(zip(names, [None if np.isnan(value) else value for value in by_kind[kind].round(4).tolist()]))
        for kind_name, kind in PROBE_KEYS.items()
    }
    if "fingerprint" in test_labels.colnames and {"teff", "logg"} <= set(test_labels.colnames):
        scores["twins_top10"] = round(
            twins_score(test_features, np.asarray(test_labels["fingerprint"]), _grid_point_ids(test_labels), seed=seed), 4)
    return scores


def split_index(run, dataset, part: int, max_objects: int = 4000, seed: int = 0) -> np.ndarray:
    """Indices of the run's objects in split ``part`` (0 train, 1 validation, 2 test), subsampled."""
    split = run.arrays()["split"]
    if len(split) != len(dataset):
        raise ValueError(
            f"Run {run.id} was trained on {len(split)} objects but this dataset has {len(dataset)}; "
            "evaluate it on the dataset it was trained on."
        )
    index = np.flatnonzero(split == part)
    if len(index) > max_objects:
        index = np.sort(np.random.default_rng(seed).choice(index, size=max_objects, replace=False))
    return index


def error_by_parameter(errors: np.ndarray, values: np.ndarray, name: str, n_bins: int = 5) -> dict:
    """Mean of per-object ``errors`` in ``n_bins`` quantile bins of ``values`` (a parameter, e.g.
    Teff in K): where across the parameter's range a model's error sits. Returns ``{"parameter":
    name, "low": [...], "high": [...], "mean": [...], "count": [...]}`` (bin edges in the parameter's
    units; equal values never straddle two bins, so a grid's nodes stay whole)."""
    errors, values = np.asarray(errors, float), np.asarray(values, float)
    edges = np.unique(np.quantile(values, np.linspace(0, 1, n_bins + 1)))
    bin_of = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, max(len(edges) - 2, 0))
    result = {"parameter": name, "low": [], "high": [], "mean": [], "count": []}
    for bin_index in np.unique(bin_of):
        members = bin_of == bin_index
        result["low"].append(float(values[members].min()))
        result["high"].append(float(values[members].max()))
        result["mean"].append(float(errors[members].mean()))
        result["count"].append(int(members.sum()))
    return result
