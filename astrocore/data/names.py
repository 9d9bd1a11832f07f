"""Names a user reads: astronomers' notation for labels and plain words for metrics.

Code keeps short keys (``teff``, ``c_fe``, ``recon_rms``); every table, axis and message shown in
the app or printed by the CLI goes through :func:`label_title` or :func:`metric_title`.
"""
from __future__ import annotations

import re

# The standard stellar labels, with units.
_LABELS = {
    "teff": ("Teff", "K"),
    "logg": ("log g", "dex"),
    "feh": ("[Fe/H]", "dex"),
    "afe": ("[α/Fe]", "dex"),
    "mh": ("[M/H]", "dex"),
    "vmic": ("v_micro", "km/s"),
    "vsini": ("v sin i", "km/s"),
    "rv": ("radial velocity", "km/s"),
    "ebv": ("E(B−V)", "mag"),
}
# Abundance ratios as readers name them: "c_fe" -> [C/Fe], "mg_h" -> [Mg/H], "alpha_m" -> [α/M].
_ABUNDANCE = re.compile(r"^(?:x_)?([a-z]{1,2}|alpha)_(fe|h|m)$")
_REFERENCE = {"fe": "Fe", "h": "H", "m": "M"}

_METRICS = {
    "recon_rms": "reconstruction RMS",
    "recon_mse": "reconstruction MSE",
    "recon_mse_test": "reconstruction MSE (held-out)",
    "recon_mse_val": "reconstruction MSE (validation)",
    "gen_rmse": "generation RMSE at held-out Teff, log g",
    "gen_rmse_extrap": "generation RMSE beyond the training grid",
    "decode_ms": "decode time per spectrum [ms]",
    "twins_top10": "chemical twins among 10 nearest neighbours",
    "r2": "R² (MLP probe)",
    "r2_knn": "R² (kNN probe)",
    "macro_f1": "macro F1",
    "accuracy": "accuracy",
    "seconds": "training time [s]",
}


def label_title(name: str, unit: bool = True) -> str:
    """How astronomers write the label ``name``: ``teff`` -> "Teff [K]", ``c_fe`` -> "[C/Fe] [dex]",
    ``alpha_m`` -> "[α/M] [dex]"; names it does not know come back unchanged. ``unit=False`` drops
    the unit."""
    key = str(name).strip().lower()
    if key in _LABELS:
        title, label_unit = _LABELS[key]
    else:
        match = _ABUNDANCE.match(key)
        if match is None:
            return str(name)
        element, reference = match.groups()
        element = "α" if element == "alpha" else element.capitalize()
        title, label_unit = f"[{element}/{_REFERENCE[reference]}]", "dex"
    return f"{title} [{label_unit}]" if unit and label_unit else title


def metric_title(key: str) -> str:
    """Words for a metric key: ``recon_rms`` -> "reconstruction RMS"; per-label probe scores
    ``r2 z feh`` -> "R² (MLP probe) of z, [Fe/H]"; unknown keys lose their underscores."""
    text = str(key)
    if text in _METRICS:
        return _METRICS[text]
    parts = text.split(" ")
    if len(parts) == 3 and parts[0] in _METRICS:
        return f"{_METRICS[parts[0]]} of {parts[1]}, {label_title(parts[2], unit=False)}"
    for prefix in ("train_", "val_", "test_"):
        if text.startswith(prefix) and text[len(prefix):] in _METRICS:
            where = {"train_": "training", "val_": "validation", "test_": "held-out"}[prefix]
            return f"{_METRICS[text[len(prefix):]]} ({where})"
    return text.replace("_", " ")
