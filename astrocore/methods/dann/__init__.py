"""Domain adaptation for nebula classification (DANN; Belfiore et al. 2025, A&A 694, A212).

A classifier of HII regions, planetary nebulae and supernova remnants is trained on labelled
models (MAPPINGS HII grid, pyneb PN/shock models) and adapted to unlabelled "observed" nebulae
with a domain-adversarial network (gradient reversal), with noise injection into the model
features. Files: ``config.py`` (DannConfig, presets), ``model.py`` (network, gradient reversal),
``fit.py`` (training), ``run.py`` (DannRun: predict_proba, classify_table), ``validation.py``
(label-free model selection with skada's scorers), ``baselines.py`` (BPT rule), ``bench.py``,
``cli.py``.
"""
import numpy as np

from ..spec import MethodSpec
from .cli import add_commands
from .config import MODES, DannConfig
from .fit import classification_metrics, fit
from .run import DannRun

__all__ = ["DannConfig", "DannRun", "MODES", "fit", "evaluate_run", "SPEC"]


def evaluate_run(run: DannRun, max_objects: int = 4000) -> dict:
    """Target-test accuracy, macro-F1, per-class recall and confusion (from the run's arrays)."""
    arrays = run.arrays()
    rows = (arrays["domain"] == 1) & (arrays["split"] == 2) & (arrays["predicted"] >= 0)
    index = np.flatnonzero(rows)[:max_objects]
    metrics = classification_metrics(arrays["class_index"][index], arrays["predicted"][index])
    return {"mode": run.config.mode, "target_accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
            "recall": metrics["recall"], "confusion": metrics["confusion"],
            "selected_epoch": run.record.metrics.get("selected_epoch")}


SPEC = MethodSpec(
    name="dann",
    title="Domain adaptation of nebula classes (DANN)",
    config_class=DannConfig,
    fit=fit,
    run_class=DannRun,
    representations={"features": "the feature layer h (source and target; labels have domain and class)",
                     "ratios": "the input log line ratios"},
    default_representation="features",
    add_commands=add_commands,
    page="pages/nebulae.py",
    evaluate=evaluate_run,
)
