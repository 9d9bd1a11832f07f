"""Label-free model selection on the target domain (no target labels exist for real catalogues).

Each validator scores a network from the source rows it held out (labelled) and unlabelled target
rows; higher is better for all of them here:

* ``domain_accuracy`` (reported as 1 - accuracy): a logistic regression tells source from target
  features (2-fold); aligned features score high.
* ``entropy``: minus the mean prediction entropy on the target (skada ``PredictionEntropyScorer``).
* ``im``: information maximisation, H(mean prediction) - mean H(prediction) on the target
  (Shi & Sha 2012; confident and diverse predictions).
* ``snd``: soft neighbourhood density (Saito et al. 2021; skada ``SoftNeighborhoodDensity``).
* ``dev``: deep embedded validation (You et al. 2019; skada ``DeepEmbeddedValidation``), the
  source validation loss importance-weighted by a domain classifier on the features.

:func:`rank_correlations` says how well each tracks the true target accuracy over checkpoints.
"""
from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from .model import DannNetwork

VALIDATORS = ("domain_accuracy", "entropy", "im", "snd", "dev")


class SkadaView:
    """The trained network as skada's scorers see a deep estimator: ``predict_proba`` and
    ``predict_features`` (the feature layer, ``module_.layer_name``), in eval mode."""

    classes_ = np.arange(3)

    def __init__(self, network: DannNetwork):
        self.network = network
        self.module_ = SimpleNamespace(layer_name="features")

    def predict_features(self, X, **params) -> np.ndarray:
        with torch.no_grad():
            return self.network.features(torch.as_tensor(np.asarray(X, np.float32))).numpy()

    def predict_proba(self, X, **params) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(self.network(torch.as_tensor(np.asarray(X, np.float32))), -1).numpy()

    def predict(self, X, **params) -> np.ndarray:
        return self.predict_proba(X).argmax(1)


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-12, 1))).sum(-1)


def validator_scores(network: DannNetwork, source_x: np.ndarray, source_y: np.ndarray, target_x: np.ndarray,
                     seed: int = 0) -> dict[str, float]:
    """All validators of ``network`` (in eval mode) from held-out labelled source rows and
    unlabelled target rows (log ratios in dex). Higher is better for each."""
    from skada.metrics import DeepEmbeddedValidation, PredictionEntropyScorer, SoftNeighborhoodDensity

    network.eval()
    estimator = SkadaView(network)
    X = np.concatenate([source_x, target_x]).astype(np.float32)
    y = np.concatenate([source_y, np.full(len(target_x), -1)]).astype(int)
    domain = np.concatenate([np.ones(len(source_x)), -np.ones(len(target_x))]).astype(int)
    scores = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores["entropy"] = float(PredictionEntropyScorer()(estimator, X, y, sample_domain=domain))
        scores["snd"] = float(SoftNeighborhoodDensity()(estimator, X, y, sample_domain=domain))
        scores["dev"] = float(DeepEmbeddedValidation(random_state=seed)(estimator, X, y, sample_domain=domain))
        proba = estimator.predict_proba(target_x)
        scores["im"] = float(_entropy(proba.mean(0)) - _entropy(proba).mean())
        features = estimator.predict_features(X)
        accuracy = cross_val_score(LogisticRegression(max_iter=100), features, (domain < 0).astype(int), cv=2).mean()
        scores["domain_accuracy"] = float(1.0 - accuracy)
    return scores


def rank_correlations(rows: list[dict], truth: str = "target_accuracy") -> dict[str, float | None]:
    """Spearman rank correlation of each validator with ``truth`` over checkpoints (rows of
    per-epoch values); None where it is undefined (fewer than 3 rows or a constant column)."""
    result = {}
    for name in VALIDATORS:
        pairs = [(row[name], row[truth]) for row in rows if row.get(name) is not None and row.get(truth) is not None]
        if len(pairs) < 3:
            result[name] = None
            continue
        a, b = np.array(pairs).T
        if np.ptp(a) == 0 or np.ptp(b) == 0:
            result[name] = None
            continue
        result[name] = float(spearmanr(a, b).statistic)
    return result


def pick(rows: list[dict], selection: str, key_loss: str = "val_loss") -> int:
    """Index of the row (checkpoint) chosen by ``selection``: "last", "source_loss" (lowest
    held-out source loss) or a validator (highest score)."""
    if not rows:
        raise ValueError("No checkpoints to choose from.")
    if selection == "last":
        return len(rows) - 1
    if selection == "source_loss":
        return int(np.argmin([row.get(key_loss, np.inf) for row in rows]))
    return int(np.argmax([row.get(selection, -np.inf) for row in rows]))
