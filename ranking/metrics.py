"""Ranking metrics for galleries (pure numpy).

``order`` is always a display order as indices into per-image arrays; ``k``
counts display positions from the top. Area judgements are either one area
index per image (``(N,)`` ints) or a binary ``(N, C)`` matrix.

- alpha-nDCG@k (Clarke et al. 2008): novelty-discounted gain over areas,
  alpha = 0.5; the ideal order is built greedily, as is standard (the exact
  ideal is NP-hard).
- S-recall@k (Zhai, Cohen & Lafferty 2003): share of the gallery's areas shown
  in the first k.
- aesthetic ratio@k: mean aesthetic of the first k over that of the k best.
- duplicates@k: images in the first k that repeat an earlier one's group,
  counted in the first min(k, number of distinct photos) positions: a gallery
  of 10 images with one copy must show that copy at position 10.
- position shift: mean |position change| of existing images after an update.
- longest run: longest stretch of one area; share deviation: total-variation
  distance between the head's area shares and the gallery's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _judgements(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 1:
        n_areas = int(labels.max()) + 1 if labels.size else 0
        onehot = np.zeros((labels.size, n_areas))
        onehot[np.arange(labels.size), labels] = 1.0
        return onehot
    return (labels > 0).astype(np.float64)


def _discounted_gains(rows: Sequence[int], judgements: np.ndarray, alpha: float) -> np.ndarray:
    seen = np.zeros(judgements.shape[1])
    gains = np.empty(len(rows))
    for r, row in enumerate(rows):
        gains[r] = judgements[row] @ (1.0 - alpha) ** seen
        seen += judgements[row]
    return gains


def _dcg(gains: np.ndarray) -> float:
    return float((gains / np.log2(np.arange(2, gains.size + 2))).sum())


def alpha_ndcg(order: Sequence[int], labels: np.ndarray, k: int, alpha: float = 0.5) -> float:
    judgements = _judgements(labels)
    k = min(k, len(order))
    dcg = _dcg(_discounted_gains(list(order[:k]), judgements, alpha))
    ideal = _dcg(_discounted_gains(greedy_ideal_order(judgements, k, alpha), judgements, alpha))
    return dcg / ideal if ideal > 0 else 0.0


def greedy_ideal_order(labels: np.ndarray, k: int, alpha: float = 0.5) -> list[int]:
    """At each position the image with the largest novelty-discounted gain (first on ties)."""
    judgements = _judgements(labels)
    n = judgements.shape[0]
    seen = np.zeros(judgements.shape[1])
    available = np.ones(n, dtype=bool)
    picked: list[int] = []
    for _ in range(min(k, n)):
        gains = np.where(available, judgements @ (1.0 - alpha) ** seen, -np.inf)
        row = int(np.argmax(gains))
        picked.append(row)
        available[row] = False
        seen += judgements[row]
    return picked


def s_recall(order: Sequence[int], labels: np.ndarray, k: int) -> float:
    judgements = _judgements(labels)
    present = judgements.any(axis=0)
    if not present.any():
        return 0.0
    shown = judgements[list(order[:k])].any(axis=0)
    return float((shown & present).sum() / present.sum())


def best_s_recall(labels: np.ndarray, k: int) -> float:
    """The best S-recall@k any order can reach (greedy max coverage; exact for one area per image)."""
    judgements = _judgements(labels)
    return s_recall(greedy_ideal_order(judgements, k, alpha=1.0), judgements, k)


def aesthetic_ratio(order: Sequence[int], aesthetic: np.ndarray, k: int) -> float:
    """Mean aesthetic of the first k shown over the mean of the k best (1.0 = pure aesthetic order)."""
    aesthetic = np.asarray(aesthetic, dtype=np.float64)
    k = min(k, len(order))
    if k == 0:
        return 1.0
    best = np.sort(aesthetic)[::-1][:k].mean()
    return float(aesthetic[list(order[:k])].mean() / best)


def duplicates_at(order: Sequence[int], groups: np.ndarray, k: int) -> int:
    """How many of the first k repeat a duplicate group already shown (images of one group are copies).

    Only the first min(k, distinct groups) positions count: once every photo has
    been shown, a copy is no longer avoidable.
    """
    groups = np.asarray(groups)
    k = min(k, np.unique(groups).size)
    shown = groups[list(order[:k])]
    return int(shown.size - np.unique(shown).size)


def position_shift(before: Sequence[str], after: Sequence[str]) -> float:
    """Mean absolute position change of the images present in both orders."""
    after_position = {image_id: p for p, image_id in enumerate(after)}
    moves = [abs(after_position[image_id] - p) for p, image_id in enumerate(before) if image_id in after_position]
    return float(np.mean(moves)) if moves else 0.0


def longest_run(labels: Sequence[object]) -> int:
    """Longest stretch of equal consecutive labels (e.g. the areas of the first k positions)."""
    best = run = 0
    previous: object = object()
    for label in labels:
        run = run + 1 if label == previous else 1
        best = max(best, run)
        previous = label
    return best


def share_deviation(order: Sequence[int], labels: np.ndarray, k: int, target: np.ndarray | None = None) -> float:
    """Total-variation distance between the area shares of the first k positions and
    ``target`` (default: the gallery's own shares): 0 = exactly proportional, 1 = disjoint."""
    labels = np.asarray(labels)
    n_areas = int(labels.max()) + 1 if labels.size else 0
    if target is None:
        target = np.bincount(labels, minlength=n_areas) / max(labels.size, 1)
    head = labels[np.asarray(order[:k], dtype=np.int64)]
    shares = np.bincount(head, minlength=n_areas) / max(head.size, 1)
    return float(0.5 * np.abs(shares - target).sum())
