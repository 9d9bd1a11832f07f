"""Classification metrics for BATMM and its baselines: precision / recall / F1 per class and
overall, ROC and PR curves with AUC, the confusion matrix, temperature scaling and the expected
calibration error with its reliability diagram."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import (average_precision_score, confusion_matrix, precision_recall_curve,
                             precision_recall_fscore_support, roc_auc_score, roc_curve)


def sigmoid(logit: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(logit, float), -60, 60)))


def classification_metrics(label: np.ndarray, probability: np.ndarray, threshold: float = 0.5) -> dict:
    """Scores of the BHB class (label 1) and of both classes for probabilities of being BHB.

    Returns f1, precision, recall (BHB class), f1_macro, accuracy, roc_auc, pr_auc, confusion
    [[TN, FP], [FN, TP]], per_class {0: {...}, 1: {...}} and n.
    """
    label = np.asarray(label).astype(int)
    probability = np.asarray(probability, float)
    predicted = (probability >= threshold).astype(int)
    precision, recall, f1, support = precision_recall_fscore_support(label, predicted, labels=[0, 1], zero_division=0)
    both = len(np.unique(label)) == 2
    return {
        "f1": float(f1[1]), "precision": float(precision[1]), "recall": float(recall[1]),
        "f1_macro": float(np.mean(f1)), "accuracy": float(np.mean(predicted == label)),
        "roc_auc": float(roc_auc_score(label, probability)) if both else float("nan"),
        "pr_auc": float(average_precision_score(label, probability)) if both else float("nan"),
        "confusion": confusion_matrix(label, predicted, labels=[0, 1]).tolist(),
        "per_class": {str(c): {"precision": float(precision[c]), "recall": float(recall[c]), "f1": float(f1[c]),
                               "support": int(support[c])} for c in (0, 1)},
        "n": int(len(label)),
    }


def curves(label: np.ndarray, probability: np.ndarray) -> dict:
    """ROC (false / true positive rate) and precision-recall curves, as plain lists."""
    fpr, tpr, _ = roc_curve(label, probability)
    precision, recall, _ = precision_recall_curve(label, probability)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "precision": precision.tolist(), "recall": recall.tolist()}


def fit_temperature(logit: np.ndarray, label: np.ndarray) -> float:
    """The temperature T minimising the negative log-likelihood of sigmoid(logit / T) (Guo et al.
    2017), fitted on the validation split. T > 1 softens over-confident probabilities."""
    logits = torch.as_tensor(np.asarray(logit, np.float64))
    labels = torch.as_tensor(np.asarray(label, np.float64))
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(np.clip(np.exp(log_t.item()), 0.05, 20.0))


def reliability(label: np.ndarray, probability: np.ndarray, n_bins: int = 10) -> dict:
    """Reliability diagram (mean predicted probability vs observed BHB fraction per equal-width
    bin, with counts) and the expected calibration error (count-weighted |gap|)."""
    label = np.asarray(label, float)
    probability = np.asarray(probability, float)
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(probability, edges[1:-1]), 0, n_bins - 1)
    confidence, observed, counts = [], [], []
    ece = 0.0
    for b in range(n_bins):
        members = which == b
        counts.append(int(members.sum()))
        if members.any():
            confidence.append(float(probability[members].mean()))
            observed.append(float(label[members].mean()))
            ece += members.mean() * abs(confidence[-1] - observed[-1])
        else:
            confidence.append(float("nan"))
            observed.append(float("nan"))
    return {"ece": float(ece), "bin_edges": edges.tolist(), "confidence": confidence, "observed": observed,
            "counts": counts}
