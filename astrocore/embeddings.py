"""2-d projections of representations (PCA, UMAP, openTSNE), cached on disk.

The cache key is given explicitly by the caller (e.g. run id + representation) plus the method
and its parameters, because hashing large arrays is slow; a sample of the array is hashed too, so
a changed input never returns a stale projection.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .data.cache import cache_dir

METHODS = ("pca", "umap", "tsne")


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


def project(values: np.ndarray, method: str = "pca", key: str = "", folder=None, seed: int = 0,
            n_seeds: int = 1, use_cache: bool = True, **params) -> tuple[np.ndarray, dict]:
    """Project ``values`` (n, d) to 2-d. Returns (coordinates (n, 2), info).

    method: ``pca``; ``umap`` (params: n_neighbors=15, min_dist=0.1); ``tsne`` via openTSNE
    (params: perplexity=30). With ``n_seeds`` > 1, t-SNE is run from several seeds and the run
    with the lowest KL divergence is kept, as in the GANDALF paper. Inputs are standardised.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}.")
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2 or len(values) < 5:
        raise ValueError(f"Need a 2-d array with at least 5 rows to project; got shape {values.shape}.")
    path = projection_path(key, method, {**params, "seed": seed, "n_seeds": n_seeds}, values, folder)
    if use_cache and path.exists():
        with np.load(path, allow_pickle=False) as stored:
            return stored["coordinates"], json.loads(str(stored["info"]))
    standardised = (values - values.mean(axis=0)) / np.maximum(values.std(axis=0), 1e-12)
    if standardised.shape[1] > 100 and method != "pca":
        from sklearn.decomposition import PCA

        standardised = PCA(n_components=50, random_state=seed).fit_transform(standardised)
    info: dict = {"method": method, "params": params, "seed": seed}
    if method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed)
        coordinates = pca.fit_transform(standardised)
        info["explained_variance_ratio"] = pca.explained_variance_ratio_.tolist()
    elif method == "umap":
        import umap

        reducer = umap.UMAP(n_neighbors=int(params.get("n_neighbors", 15)),
                            min_dist=float(params.get("min_dist", 0.1)), random_state=seed)
        coordinates = reducer.fit_transform(standardised)
    else:
        from openTSNE import TSNE

        best = None
        for offset in range(max(1, n_seeds)):
            embedding = TSNE(perplexity=float(params.get("perplexity", 30)), random_state=seed + offset,
                             n_jobs=int(params.get("n_jobs", 2))).fit(standardised)
            if best is None or embedding.kl_divergence < best[1]:
                best = (np.asarray(embedding), float(embedding.kl_divergence), seed + offset)
        coordinates, info["kl_divergence"], info["best_seed"] = best
    coordinates = np.asarray(coordinates, dtype=np.float32)
    if use_cache:
        np.savez(path, coordinates=coordinates, info=np.array(json.dumps(info)))
    return coordinates, info
