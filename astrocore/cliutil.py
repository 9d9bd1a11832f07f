"""Helpers every method's command-line module shares: ``--set`` overrides and the progress bar."""
from __future__ import annotations

import argparse
import json


def parse_value(text: str):
    """A ``--set`` value: JSON when it parses (numbers, lists, true/false), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def overrides(pairs: list[str] | None) -> dict:
    """``["latent_dim=6", "lambdas=[0.1,0.2]"]`` -> ``{"latent_dim": 6, "lambdas": (0.1, 0.2)}``."""
    values = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise SystemExit(f"astrocore: error: --set expects KEY=VALUE; got {pair!r}")
        key, text = pair.split("=", 1)
        value = parse_value(text)
        values[key.replace("-", "_")] = tuple(value) if isinstance(value, list) else value
    return values


def progress_bar(description: str, shown=("recon", "val_recon", "adversary", "loss", "val_objective", "val_loss",
                                        "val_accuracy")):
    """A tqdm bar and the ``progress(step, total, metrics)`` callback that drives it."""
    from tqdm import tqdm  # lazy: only training commands draw a bar

    bar = tqdm(total=0, desc=description, unit="batch", dynamic_ncols=True)

    def update(step, total, metrics):
        bar.total = total
        bar.n = step
        bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items() if isinstance(v, float) and k in shown},
                        refresh=False)
        bar.refresh()

    return bar, update


def write_json(path, payload: dict) -> str:
    """``payload`` as indented JSON text, also written to ``path`` when given."""
    from pathlib import Path

    text = json.dumps(payload, indent=2)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    return text


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (``--n-stars 0`` is refused, not read as "default")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value
