"""The Runs page's logic: the runs table, config differences, metrics and loss curves of several
runs, the CLI's listing and zip downloads."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ..runs import RunRecord, list_runs, listing_lines, read_history, zip_run
from .common import MODE_TITLES, source_label


# ============================================================================ runs page
def runs_table(records: list[RunRecord], evaluations: dict[str, dict] | None = None) -> pd.DataFrame:
    """One row per run: id, method, status, data, mode, conditional, created and key metrics."""
    evaluations = evaluations or {}
    rows = []
    for record in records:
        config, metrics = record.config, record.metrics
        evaluation = evaluations.get(record.id) or {}
        rows.append({
            "id": record.id,
            "method": record.method,
            "status": record.status,
            "data": source_label(record.data),
            "mode": MODE_TITLES.get(config.get("mode", ""), config.get("mode", "")),
            "conditional": ", ".join(config.get("conditional", [])),
            "preset/epochs": f"{config.get('epochs', '?')} ep, latent {config.get('latent_dim', '?')}",
            "created": record.created.replace("T", " ").replace("+00:00", " UTC"),
            "train s": round(metrics["train_seconds"], 1) if "train_seconds" in metrics else None,
            "recon MSE (test)": metrics.get("recon_mse_test"),
            "R² teff (z)": (evaluation.get("r2") or {}).get("teff"),
            "R² logg (z)": (evaluation.get("r2") or {}).get("logg"),
            "twins": evaluation.get("twins_top10"),
        })
    return pd.DataFrame(rows)


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    else:
        out[prefix] = json.dumps(value) if isinstance(value, (list, tuple)) else value


def config_diff(records: list[RunRecord], only_differences: bool = True) -> pd.DataFrame:
    """Config and data settings side by side (rows: settings, columns: run ids)."""
    flat = {}
    for record in records:
        values: dict = {}
        _flatten("", record.config, values)
        _flatten("data", record.data, values)
        flat[record.id] = values
    keys = sorted({k for values in flat.values() for k in values})
    table = pd.DataFrame({run: [values.get(k) for k in keys] for run, values in flat.items()}, index=keys)
    if only_differences and len(records) > 1:
        differs = table.astype(str).nunique(axis=1) > 1
        table = table[differs]
    return table.astype(str)


def metrics_table(records: list[RunRecord], evaluations: dict[str, dict] | None = None) -> pd.DataFrame:
    """Metrics side by side (rows: metric, columns: run ids), from run.json and evaluation.json."""
    evaluations = evaluations or {}
    data = {}
    for record in records:
        values = {k: v for k, v in record.metrics.items() if isinstance(v, (int, float))}
        evaluation = evaluations.get(record.id) or {}
        for probe in ("r2", "r2_knn"):
            for label, value in (evaluation.get(probe) or {}).items():
                values[f"{probe} z {label}"] = value
        for key in ("twins_top10", "recon_rms", "gen_rmse", "gen_rmse_extrap", "decode_ms"):
            if key in evaluation:
                values[key] = evaluation[key]
        data[record.id] = values
    return pd.DataFrame(data)


def compare_curves(records: list[RunRecord], metric: str = "val_recon") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    series = {}
    for record in records:
        epochs = (record.history or {}).get("epochs", [])
        points = [(e["epoch"] + 1, e[metric]) for e in epochs if metric in e]
        if not points:
            rows = [r["metrics"] for r in read_history(record.path) if metric in r.get("metrics", {})]
            points = [(m.get("epoch", i) + 1, m[metric]) for i, m in enumerate(rows)]
        if points:
            x, y = zip(*points)
            series[record.id] = (np.asarray(x, float), np.asarray(y, float))
    return series


def runs_listing_text(folder=None) -> str:
    """Exactly what ``astrocore runs list`` prints for this runs folder."""
    return "\n".join(listing_lines(list_runs(folder), folder)) + "\n"


def zip_bytes(record: RunRecord, runs_root=None) -> bytes:
    """The run as a zip; refused (RunError) unless it is a run folder inside ``runs_root``."""
    return zip_run(record.path, runs_root)
