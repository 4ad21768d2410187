"""Metrics of a binary classifier from scores and labels: AUC, KS, log-loss, the ROC curve.

Pure numpy, no Django; the consumer's node computes them on its own labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def sigmoid(u: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(u, -500, 500)))


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney U, ties counted half)."""
    pos, neg = int(y.sum()), int(len(y) - y.sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score), dtype=float)
    s = score[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def roc(y: np.ndarray, score: np.ndarray, points: int = 101) -> dict[str, list[float]]:
    """The ROC curve at ``points`` thresholds or fewer (false and true positive rates)."""
    pos, neg = max(int(y.sum()), 1), max(int(len(y) - y.sum()), 1)
    order = np.argsort(-score, kind="mergesort")
    tp = np.concatenate([[0], np.cumsum(y[order] == 1)])
    fp = np.concatenate([[0], np.cumsum(y[order] == 0)])
    idx = np.unique(np.linspace(0, len(y), min(points, len(y) + 1)).round().astype(int))
    return {"fpr": [round(float(v), 4) for v in fp[idx] / neg], "tpr": [round(float(v), 4) for v in tp[idx] / pos]}


def ks(y: np.ndarray, score: np.ndarray) -> float:
    """Kolmogorov–Smirnov statistic: the largest gap between the true and false positive rates."""
    curve = roc(y, score, points=len(y) + 1)
    return float(max(t - f for f, t in zip(curve["fpr"], curve["tpr"], strict=True)))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def summary(y: np.ndarray, u: np.ndarray) -> dict[str, Any]:
    """AUC, KS and log-loss of the linear scores ``u`` (probabilities σ(u))."""
    p = sigmoid(u)
    values = {"auc": auc(y, u), "ks": ks(y, u), "log_loss": log_loss(y, p)}
    # A split with one class has no AUC: None, not NaN (which no canonical JSON carries).
    return {k: round(v, 6) if np.isfinite(v) else None for k, v in values.items()}
