"""Evaluation metrics as idealo and NIMA report them (pure numpy/scipy)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from scipy import stats

BINS = np.arange(1, 11, dtype=np.float64)
HIGH_QUALITY_THRESHOLD = 5.0  # NIMA / AVA 2-class split on the mean score


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Top-1 accuracy, per-class precision/recall/support and the confusion matrix (rows = truth)."""
    k = len(classes)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    per_class = {}
    for i, c in enumerate(classes):
        tp, pred_n, true_n = cm[i, i], cm[:, i].sum(), cm[i, :].sum()
        per_class[c] = {
            "precision": float(tp / pred_n) if pred_n else None,
            "recall": float(tp / true_n) if true_n else None,
            "support": int(true_n),
        }
    return {
        "n": int(len(y_true)),
        "top1": float((y_true == y_pred).mean()) if len(y_true) else None,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "classes": list(classes),
    }


def emd_numpy(p: np.ndarray, q: np.ndarray, r: float = 2.0) -> np.ndarray:
    d = np.cumsum(p, axis=1) - np.cumsum(q, axis=1)
    return (np.abs(d) ** r).mean(axis=1) ** (1.0 / r)


def aesthetic_report(pred_dist: np.ndarray, true_dist: np.ndarray) -> dict[str, Any]:
    """LCC, SRCC of mean scores, mean EMD (r=2), 2-class accuracy at mean score 5."""
    pred_mean, true_mean = pred_dist @ BINS, true_dist @ BINS
    n = len(pred_mean)
    ok = n > 2 and np.std(pred_mean) > 0 and np.std(true_mean) > 0
    return {
        "n": int(n),
        "lcc": float(stats.pearsonr(pred_mean, true_mean).statistic) if ok else None,
        "srcc": float(stats.spearmanr(pred_mean, true_mean).statistic) if ok else None,
        "emd": float(emd_numpy(pred_dist, true_dist).mean()) if n else None,
        "accuracy_2class": float(
            ((pred_mean >= HIGH_QUALITY_THRESHOLD) == (true_mean >= HIGH_QUALITY_THRESHOLD)).mean()
        )
        if n
        else None,
        "mean_abs_error": float(np.abs(pred_mean - true_mean).mean()) if n else None,
    }


def plot_confusion(
    cm: np.ndarray, classes: list[str], path: str | os.PathLike[str], title: str = "area tagger"
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True).clip(1)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.5 + 0.6 * len(classes)), max(4.0, 1.2 + 0.55 * len(classes))), dpi=110)
    ax.imshow(cm / rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    for i in range(len(classes)):
        for j in range(len(classes)):
            if cm[i, j]:
                ax.text(
                    j,
                    i,
                    str(cm[i, j]),
                    ha="center",
                    va="center",
                    color="white" if cm[i, j] / rows[i, 0] > 0.5 else "black",
                    fontsize=8,
                )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
