"""2-d projections of representations (PCA, UMAP, openTSNE), cached on disk.

The cache key is given explicitly by the caller (e.g. run id + representation) plus the method
and its parameters, because hashing large arrays is slow; a sample of the array is hashed too, so
a changed input never returns a stale projection.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from .data.cache import cache_dir

PROJECTION_METHODS = {"pca": "PCA (instant)", "umap": "UMAP", "tsne": "t-SNE (openTSNE)"}
DEFAULT_PARAMS = {"pca": {}, "umap": {"n_neighbors": 15, "min_dist": 0.1}, "tsne": {"perplexity": 30.0}}
PARAM_LIMITS = {"n_neighbors": (2, 200, int), "min_dist": (0.0, 1.0, float), "perplexity": (2.0, 500.0, float)}
METHODS = tuple(PROJECTION_METHODS)


class ProjectionError(ValueError):
    """A projection that cannot be made as asked; the message is meant for the user."""


def projection_params(method: str, params: dict | None = None) -> dict:
    """The method's parameters with defaults filled in, validated (clear message on bad values)."""
    if method not in PROJECTION_METHODS:
        raise ProjectionError(f"method must be one of {list(PROJECTION_METHODS)}; got {method!r}.")
    result = dict(DEFAULT_PARAMS[method])
    for name, value in (params or {}).items():
        if name not in result:
            raise ProjectionError(f"{PROJECTION_METHODS[method]} has no parameter {name!r}; expected {sorted(result) or 'none'}.")
        low, high, kind = PARAM_LIMITS[name]
        try:
            value = kind(value)
        except (TypeError, ValueError):
            raise ProjectionError(f"{name} must be a number; got {value!r}.") from None
        if not low <= value <= high:
            raise ProjectionError(f"{name} must lie in {low:g}–{high:g}; got {value:g}.")
        result[name] = value
    return result


def check_projectable(n: int, method: str, params: dict) -> None:
    if n < 5:
        raise ProjectionError(f"At least 5 objects are needed for a projection; this run has {n}.")
    if method == "tsne" and 3 * params["perplexity"] >= n:
        raise ProjectionError(f"t-SNE needs more than 3 × perplexity objects: lower the perplexity below {n / 3:.0f}.")
    if method == "umap" and params["n_neighbors"] >= n:
        raise ProjectionError(f"UMAP needs fewer neighbours than objects ({n}).")


def cache_key(run_id: str, representation: str) -> str:
    """The key :func:`astrocore.embeddings.project` caches under (shared with ``astrocore embed``)."""
    return f"{run_id}/{representation}"


def projection_name(representation: str, method: str, params: dict, seed: int = 0) -> str:
    text = json.dumps({"params": projection_params(method, params), "seed": int(seed)}, sort_keys=True)
    return f"{representation}-{method}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def projection_file(run_folder, representation: str, method: str, params: dict, seed: int = 0) -> Path:
    """Where a projection of this run is kept: ``runs/ID/embeddings/<rep>-<method>-<hash>.npz``."""
    return Path(run_folder) / "embeddings" / f"{projection_name(representation, method, params, seed)}.npz"




def _array_fingerprint(values: np.ndarray) -> str:
    sample = np.ascontiguousarray(values[:: max(1, len(values) // 256)])
    return hashlib.sha256(sample.tobytes() + str(values.shape).encode()).hexdigest()[:16]


def projection_path(key: str, method: str, params: dict, values: np.ndarray, folder=None) -> Path:
    text = json.dumps({"key": key, "method": method, "params": params, "data": _array_fingerprint(values)}, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:20]
    root = Path(folder) if folder is not None else cache_dir() / "embeddings"
    root.mkdir(parents=True, exist_ok=True)
    return root / f"{method}-{digest}.npz"


def read_coordinates(path) -> np.ndarray | None:
    """Coordinates stored by :func:`project` or a background embedding job, or None when the file
    is missing or unreadable (e.g. still being written)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            return np.asarray(stored["coordinates"])
    except (OSError, ValueError, KeyError):
        return None


#: UMAP and t-SNE are fitted on at most this many objects (a reproducible random sample); the rest are
#: placed into that map by the fitted model's ``transform``, in chunks of :data:`TRANSFORM_CHUNK`.
FIT_SAMPLE = 20_000
TRANSFORM_CHUNK = 100_000


def fit_rows(n: int, fit_sample: int | None, seed: int = 0) -> np.ndarray:
    """Sorted row numbers a projection is fitted on: all ``n`` rows, or a reproducible random
    sample of ``fit_sample`` of them."""
    if not fit_sample or n <= int(fit_sample):
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=int(fit_sample), replace=False))


def _chunks(n: int, size: int = TRANSFORM_CHUNK):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _standardiser(values: np.ndarray, rows: np.ndarray, seed: int, reduce: bool = True):
    """A function mapping raw vectors to the standardised (and with ``reduce``, above 100
    dimensions, 50 principal components) space the map is made in, with its statistics taken from
    ``rows``."""
    sample = values[rows]
    mean, scale = sample.mean(axis=0), np.maximum(sample.std(axis=0), 1e-12)
    pca = None
    if reduce and values.shape[1] > 100:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=50, random_state=seed).fit((sample - mean) / scale)

    def standardise(block: np.ndarray) -> np.ndarray:
        block = (np.asarray(block, np.float32) - mean) / scale
        return block if pca is None else pca.transform(block).astype(np.float32)

    return standardise


def project(values: np.ndarray, method: str = "pca", key: str = "", folder=None, seed: int = 0,
            n_seeds: int = 1, use_cache: bool = True, fit_sample: int | None = FIT_SAMPLE, progress=None,
            **params) -> tuple[np.ndarray, dict]:
    """Project ``values`` (n, d) to 2-d. Returns (coordinates (n, 2), info).

    method: ``pca``; ``umap`` (params: n_neighbors=15, min_dist=0.1); ``tsne`` via openTSNE
    (params: perplexity=30). With ``n_seeds`` > 1, t-SNE is run from several seeds and the run
    with the lowest KL divergence is kept, as in the GANDALF paper. Inputs are standardised.

    Large sets: with more than ``fit_sample`` objects (default :data:`FIT_SAMPLE`; None fits on
    all) the map is fitted on a reproducible random sample of that many and every other object is
    placed by the fitted model's ``transform`` (UMAP's, PCA's; for t-SNE openTSNE's
    ``prepare_partial``: the median position of each point's 15 nearest fitted neighbours), chunk by
    chunk, so a million objects cost one fit of the sample plus a transform linear in n. ``info`` then holds
    ``fit_sample``, ``fit_seconds`` and ``transform_seconds``. ``progress(fraction, text)`` is
    called along the way when given.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}.")
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2 or len(values) < 5:
        raise ValueError(f"Need a 2-d array with at least 5 rows to project; got shape {values.shape}.")
    n = len(values)
    rows = fit_rows(n, fit_sample, seed)
    sampled = len(rows) < n
    cache_params = {**params, "seed": seed, "n_seeds": n_seeds, **({"fit_sample": int(fit_sample)} if sampled else {})}
    path = projection_path(key, method, cache_params, values, folder)
    if use_cache and path.exists():
        with np.load(path, allow_pickle=False) as stored:
            return stored["coordinates"], json.loads(str(stored["info"]))
    report = progress or (lambda fraction, text: None)
    started = time.perf_counter()
    standardise = _standardiser(values, rows, seed, reduce=method != "pca")
    sample = standardise(values[rows])
    info: dict = {"method": method, "params": params, "seed": seed, "n": n}
    report(0.0, f"fitting {PROJECTION_METHODS[method]} on {len(rows):,} objects")
    if method == "pca":
        from sklearn.decomposition import PCA

        model = PCA(n_components=2, random_state=seed).fit(sample)
        info["explained_variance_ratio"] = model.explained_variance_ratio_.tolist()
        fitted, transform = model.transform(sample), model.transform
    elif method == "umap":
        import umap

        model = umap.UMAP(n_neighbors=int(params.get("n_neighbors", 15)),
                          min_dist=float(params.get("min_dist", 0.1)), random_state=seed)
        fitted, transform = model.fit_transform(sample), model.transform
    else:
        from openTSNE import TSNE

        best = None
        for offset in range(max(1, n_seeds)):
            embedding = TSNE(perplexity=float(params.get("perplexity", 30)), random_state=seed + offset,
                             n_jobs=int(params.get("n_jobs", 2))).fit(sample)
            if best is None or embedding.kl_divergence < best[1]:
                best = (embedding, float(embedding.kl_divergence), seed + offset)
        embedding, info["kl_divergence"], info["best_seed"] = best
        fitted = np.asarray(embedding)
        # New points go where the median of their k nearest fitted neighbours lies (openTSNE's own
        # start for ``transform``), without its per-chunk optimisation: that optimisation costs about
        # as much per point as the fit itself, which a million points cannot afford on a few cores.
        transform = lambda block: np.asarray(embedding.prepare_partial(  # noqa: E731
            block, initialization="median", k=int(params.get("transform_k", 15))))
    coordinates = np.empty((n, 2), np.float32)
    coordinates[rows] = np.asarray(fitted, np.float32)
    fitted_at = time.perf_counter()
    if sampled:
        rest = np.setdiff1d(np.arange(n), rows, assume_unique=True)
        done = 0
        for part in _chunks(len(rest)):
            index = rest[part]
            coordinates[index] = np.asarray(transform(standardise(values[index])), np.float32)
            done += len(index)
            report(done / len(rest), f"placed {done:,} of {len(rest):,} objects into the map")
        info.update(fit_sample=int(len(rows)), fit_seconds=round(fitted_at - started, 2),
                    transform_seconds=round(time.perf_counter() - fitted_at, 2))
    if use_cache:
        np.savez(path, coordinates=coordinates, info=np.array(json.dumps(info)))
    return coordinates, info
