"""Properties every strategy must keep, and hand-checked steps of each one."""

import numpy as np
import pytest

from galleryrank.ranking import STRATEGIES, Candidate, RankingConfig, build_gallery, rank
from galleryrank.ranking.metrics import s_recall
from galleryrank.ranking.pipeline import similarity_features
from galleryrank.ranking.synthetic import AREAS, synthetic_gallery

DIVERSIFYING = ("mmr", "dpp", "xquad", "pm2")


@pytest.fixture(scope="module")
def galleries():
    rng = np.random.default_rng(7)
    return [synthetic_gallery(n, rng) for n in (1, 2, 5, 10, 30, 60, 133) for _ in range(3)]


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_returns_a_permutation(name, galleries):
    for g in galleries:
        order = rank(g.candidates, g.areas, RankingConfig(strategy=name))
        assert sorted(order) == list(range(len(g.candidates)))
    assert rank([], AREAS, RankingConfig(strategy=name)) == []


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_is_deterministic_and_ignores_input_order(name, galleries):
    g = galleries[-1]
    config = RankingConfig(strategy=name, hero_areas=("facade",), max_per_area=3)
    ids = [g.candidates[i].image_id for i in rank(g.candidates, g.areas, config)]
    assert [g.candidates[i].image_id for i in rank(g.candidates, g.areas, config)] == ids
    shuffled = [g.candidates[i] for i in np.random.default_rng(1).permutation(len(g.candidates))]
    assert [shuffled[i].image_id for i in rank(shuffled, g.areas, config)] == ids


def test_pure_aesthetic_order_is_sorted(galleries):
    for g in galleries:
        order = rank(g.candidates, g.areas, RankingConfig(strategy="aesthetic"))
        scores = [g.candidates[i].aesthetic for i in order]
        assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("name", ["aesthetic_dedup", "interleave", *DIVERSIFYING])
def test_injected_duplicates_are_pushed_below_every_original(name, galleries):
    for g in galleries:
        order = rank(g.candidates, g.areas, RankingConfig(strategy=name))
        groups = g.group[order]
        _, first = np.unique(groups, return_index=True)
        repeats = np.setdiff1d(np.arange(len(order)), first)
        # Each photo is shown once before any copy of any photo is shown again.
        if repeats.size:
            assert repeats.min() > first.max()


@pytest.mark.parametrize("name", DIVERSIFYING)
def test_coverage_rises_with_the_trade_off(name):
    rng = np.random.default_rng(11)
    gs = [synthetic_gallery(80, rng) for _ in range(25)]
    coverage = []
    for diversity in (0.0, 0.5, 0.8, 0.95):
        config = RankingConfig(strategy=name, diversity=diversity)
        coverage.append(np.mean([s_recall(rank(g.candidates, g.areas, config), g.true_area, 8) for g in gs]))
    assert all(b >= a - 0.01 for a, b in zip(coverage, coverage[1:])), coverage
    assert coverage[-1] > coverage[0] + 0.2, coverage


@pytest.mark.parametrize("name", DIVERSIFYING)
def test_zero_trade_off_is_the_deduplicated_aesthetic_order(name, galleries):
    for g in galleries:
        expected = rank(g.candidates, g.areas, RankingConfig(strategy="aesthetic_dedup"))
        assert rank(g.candidates, g.areas, RankingConfig(strategy=name, diversity=0.0)) == expected


def candidate(image_id, aesthetic, area, embedding=None, phash=None, confidence=1.0):
    probs = np.full(len(AREAS), (1 - confidence) / (len(AREAS) - 1), dtype=np.float32)
    probs[AREAS.index(area)] = confidence
    if embedding is not None:
        embedding = np.asarray(embedding, dtype=np.float32)
        embedding /= np.linalg.norm(embedding)
    return Candidate(image_id, aesthetic, probs, embedding, phash)


def test_per_area_caps_hold_inside_the_head():
    cands = [candidate(f"b{i}", 9 - i * 0.1, "bedroom") for i in range(10)] + [candidate("w", 3.0, "bathroom")]
    config = RankingConfig(strategy="xquad", diversity=0.3, max_per_area=2, head_size=5)
    ids = [cands[i].image_id for i in rank(cands, AREAS, config)]
    # Two bedrooms, then the bathroom (the only uncapped area), then the tail in aesthetic order.
    assert ids[:3] == ["b0", "b1", "w"]
    assert ids[3:] == [f"b{i}" for i in range(2, 10)]
    per_area = RankingConfig(strategy="xquad", diversity=0.3, area_caps={"bedroom": 1}, head_size=5)
    assert [cands[i].image_id for i in rank(cands, AREAS, per_area)][:2] == ["b0", "w"]


def test_hero_rule_puts_a_hero_area_first_only_within_tolerance():
    cands = [
        candidate("bath", 7.0, "bathroom"),
        candidate("pool", 6.7, "swimming_pool"),
        candidate("bed", 5.0, "bedroom"),
    ]
    near = RankingConfig(strategy="xquad", hero_areas=("swimming_pool", "facade"), hero_tolerance=0.5)
    assert cands[rank(cands, AREAS, near)[0]].image_id == "pool"
    far = RankingConfig(strategy="xquad", hero_areas=("swimming_pool",), hero_tolerance=0.2)
    assert cands[rank(cands, AREAS, far)[0]].image_id == "bath"


def test_mmr_steps_by_hand():
    # Quality in points below the best: a 0, b -0.2, c -1.0. sim(a, b) = 0.95
    # (same area, near-identical embedding), c is orthogonal to both.
    # lambda = 0.5: after a, b scores 0.5 * -0.2 - 0.5 * s_ab; c scores 0.5 * -1.0 - 0.5 * s_ac.
    cands = [
        candidate("a", 6.0, "bedroom", embedding=[1, 0, 0]),
        candidate("b", 5.8, "bedroom", embedding=[0.8, 0.6, 0]),  # cos 0.8: no duplicate
        candidate("c", 5.0, "facade", embedding=[0, 0, 1]),
    ]
    config = RankingConfig(strategy="mmr", diversity=0.5, area_similarity=0.0)
    # sim(a,b) = 0.8 -> b: -0.1 - 0.4 = -0.5; sim(a,c) = 0 -> c: -0.5 - 0 = -0.5: a tie,
    # broken by canonical order (b scores higher aesthetically).
    assert [cands[i].image_id for i in rank(cands, AREAS, config)] == ["a", "b", "c"]
    config = RankingConfig(strategy="mmr", diversity=0.6, area_similarity=0.0)
    # b: 0.4 * -0.2 - 0.6 * 0.8 = -0.56; c: 0.4 * -1 - 0 = -0.4 -> c first.
    assert [cands[i].image_id for i in rank(cands, AREAS, config)] == ["a", "c", "b"]


def test_xquad_steps_by_hand():
    # lambda = 0.5, weights 1. After "a" (bedroom, p = 1) bedroom is covered:
    # "b" (bedroom, -0.2 points) scores 0.5 * -0.2 = -0.1; "c" (facade, -1.5) scores
    # 0.5 * -1.5 + 0.5 * 1 = -0.25 -> b first; with lambda = 0.7 c: 0.3 * -1.5 + 0.7 = 0.25 > -0.06.
    cands = [candidate("a", 6.0, "bedroom"), candidate("b", 5.8, "bedroom"), candidate("c", 4.5, "facade")]
    assert [cands[i].image_id for i in rank(cands, AREAS, RankingConfig(strategy="xquad", diversity=0.5))] == [
        "a",
        "b",
        "c",
    ]
    assert [cands[i].image_id for i in rank(cands, AREAS, RankingConfig(strategy="xquad", diversity=0.7))] == [
        "a",
        "c",
        "b",
    ]


def test_dpp_matches_brute_force_greedy_log_det():
    rng = np.random.default_rng(3)
    g = synthetic_gallery(25, rng, duplicate_rate=0.0)
    config = RankingConfig(strategy="dpp", diversity=0.6, head_size=12, suppress_duplicates=False)
    gallery = build_gallery(g.candidates, g.areas)
    features = similarity_features(gallery, config)
    theta = 1 - config.diversity
    q = np.exp(theta / (2 * (1 - theta)) * gallery.quality(config.quality_scale))
    kernel = q[:, None] * (features @ features.T) * q[None, :]
    chosen: list[int] = []
    for _ in range(12):
        best, best_value = None, -np.inf
        for i in range(gallery.size):
            if i in chosen:
                continue
            sign, logdet = np.linalg.slogdet(kernel[np.ix_(chosen + [i], chosen + [i])])
            if sign > 0 and logdet > best_value + 1e-12:
                best, best_value = i, logdet
        chosen.append(best)
    expected_ids = [gallery.image_ids[i] for i in chosen]
    order = rank(g.candidates, g.areas, config)
    assert [g.candidates[i].image_id for i in order[:12]] == expected_ids
