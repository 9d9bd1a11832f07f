"""On-disk cache for simulator output, keyed by a hash of the call (generator, version, params)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

from .dataset import Dataset


def cache_dir() -> Path:
    """Where cached datasets and embeddings live: $ASTROCORE_CACHE or ~/.cache/astrocore."""
    root = os.environ.get("ASTROCORE_CACHE") or Path.home() / ".cache" / "astrocore"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def call_hash(**call) -> str:
    """A short stable hash of a JSON-serialisable description of a call."""
    text = json.dumps(call, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_dataset(generator: str, version: str, params: dict, build: Callable[[], Dataset],
                   use_cache: bool = True) -> Dataset:
    """Return ``build()``'s Dataset, reading it from the cache when the same call was made before."""
    if not use_cache:
        return build()
    path = cache_dir() / "datasets" / f"{generator}-{call_hash(generator=generator, version=version, params=params)}"
    if path.exists():
        try:
            return Dataset.load(path)
        except Exception:  # a half-written or stale entry is rebuilt, never trusted
            pass
    dataset = build()
    dataset.save(path)
    return dataset
