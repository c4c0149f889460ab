"""Ranking metrics against values computed by hand."""

import math

import numpy as np
import pytest

from galleryrank.ranking.metrics import (
    aesthetic_ratio,
    alpha_ndcg,
    best_s_recall,
    duplicates_at,
    greedy_ideal_order,
    position_shift,
    s_recall,
)

LOG2_3 = math.log2(3)


def test_alpha_ndcg_hand_computed():
    # Areas per image: A, A, B. Shown in that order with alpha = 0.5:
    # gains 1, 0.5, 1 -> DCG = 1 + 0.5/log2(3) + 1/2.
    # Ideal (greedy): A, B, A -> gains 1, 1, 0.5 -> IDCG = 1 + 1/log2(3) + 0.5/2.
    labels = np.array([0, 0, 1])
    dcg = 1 + 0.5 / LOG2_3 + 0.5
    idcg = 1 + 1 / LOG2_3 + 0.25
    assert alpha_ndcg([0, 1, 2], labels, k=3) == pytest.approx(dcg / idcg)
    assert alpha_ndcg([0, 1, 2], labels, k=3) == pytest.approx(1.815465 / 1.880930, abs=1e-6)  # 0.965195
    assert alpha_ndcg([0, 2, 1], labels, k=3) == pytest.approx(1.0)


def test_alpha_ndcg_at_k_cuts_both_orders():
    # k = 2: shown A, A -> 1 + 0.5/log2(3); ideal A, B -> 1 + 1/log2(3).
    labels = np.array([0, 0, 1])
    assert alpha_ndcg([0, 1, 2], labels, k=2) == pytest.approx((1 + 0.5 / LOG2_3) / (1 + 1 / LOG2_3))


def test_alpha_ndcg_multi_label_judgements():
    # Image 0 shows areas A and B, image 1 shows A. Order 1, 0:
    # gains 1 (A new), then 0.5 (A seen once) + 1 (B new) = 1.5.
    # Ideal: 0 first (gain 2), then 1 (0.5) -> 2 + 0.5/log2(3).
    judgements = np.array([[1, 1], [1, 0]])
    expected = (1 + 1.5 / LOG2_3) / (2 + 0.5 / LOG2_3)
    assert alpha_ndcg([1, 0], judgements, k=2) == pytest.approx(expected)
    assert greedy_ideal_order(judgements, k=2) == [0, 1]


def test_alpha_ndcg_with_alpha_zero_ignores_redundancy():
    labels = np.array([0, 0, 1])
    assert alpha_ndcg([0, 1, 2], labels, k=3, alpha=0.0) == pytest.approx(1.0)


def test_s_recall_and_best_achievable():
    labels = np.array([0, 0, 0, 1, 2])  # three areas
    assert s_recall([0, 1, 2, 3, 4], labels, k=2) == pytest.approx(1 / 3)
    assert s_recall([0, 3, 1, 2, 4], labels, k=2) == pytest.approx(2 / 3)
    assert s_recall([0, 3, 4, 1, 2], labels, k=3) == pytest.approx(1.0)
    assert best_s_recall(labels, k=2) == pytest.approx(2 / 3)
    assert best_s_recall(labels, k=8) == pytest.approx(1.0)


def test_aesthetic_ratio():
    aesthetic = np.array([8.0, 6.0, 4.0, 2.0])
    assert aesthetic_ratio([0, 1, 2, 3], aesthetic, k=2) == pytest.approx(1.0)
    # first two shown: 8 and 4 -> mean 6; best two: 8 and 6 -> mean 7.
    assert aesthetic_ratio([0, 2, 1, 3], aesthetic, k=2) == pytest.approx(6 / 7)


def test_duplicates_at_counts_repeats_of_a_group():
    groups = np.array([10, 10, 11, 10, 12])
    assert duplicates_at([0, 2, 4, 1, 3], groups, k=3) == 0
    assert duplicates_at([0, 1, 2, 3, 4], groups, k=2) == 1
    assert duplicates_at([0, 1, 3, 2, 4], groups, k=3) == 2
    # Three distinct photos: from position 4 on a copy is unavoidable and not counted.
    assert duplicates_at([0, 2, 4, 1, 3], groups, k=5) == 0


def test_position_shift():
    before = ["a", "b", "c"]
    after = ["new", "a", "c", "b"]  # a: 0->1, b: 1->3, c: 2->2
    assert position_shift(before, after) == pytest.approx((1 + 2 + 0) / 3)
    assert position_shift(before, before) == 0.0
