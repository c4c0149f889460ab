"""Editors' pins and hidden images, and a reason for every position (ranking.editorial)."""

import numpy as np
import pytest

from galleryrank.ranking import STRATEGIES, Candidate, RankingConfig, rank, rank_gallery
from galleryrank.ranking.synthetic import synthetic_gallery

AREAS = ("bedroom", "bathroom", "swimming_pool", "facade")


def one_hot(area: str, confidence: float = 0.9) -> np.ndarray:
    probs = np.full(len(AREAS), (1 - confidence) / (len(AREAS) - 1), dtype=np.float32)
    probs[AREAS.index(area)] = confidence
    return probs


def make(image_id: str, aesthetic: float, area: str, phash: int | None = None) -> Candidate:
    return Candidate(image_id=image_id, aesthetic=aesthetic, area_probs=one_hot(area), phash=phash)


GALLERY = [
    make("b1", 7.0, "bedroom"),
    make("b2", 6.9, "bedroom"),
    make("b3", 6.8, "bedroom"),
    make("p1", 6.0, "swimming_pool"),
    make("w1", 5.5, "bathroom"),
    make("f1", 5.0, "facade"),
]


def shown(result, candidates=GALLERY) -> list[tuple[str, str]]:
    return [(candidates[i].image_id, reason) for i, reason in zip(result.order, result.reasons)]


def test_without_overrides_the_order_is_rank_and_every_position_has_a_reason():
    for strategy in STRATEGIES:
        config = RankingConfig(strategy=strategy)
        result = rank_gallery(GALLERY, AREAS, config)
        assert result.order == rank(GALLERY, AREAS, config), strategy
        assert len(result.reasons) == len(GALLERY) and all(result.reasons), strategy
        assert result.pinned_missing == []


def test_default_reasons_name_the_hero_the_first_of_each_area_and_what_moved_back():
    assert shown(rank_gallery(GALLERY, AREAS)) == [
        ("b1", "hero: best bedroom (hero area)"),  # bedroom is a default hero area
        ("p1", "first swimming_pool"),
        ("w1", "first bathroom"),
        ("f1", "first facade"),
        ("b2", "moved back: variety first"),
        ("b3", "moved back: variety first"),
    ]


def test_aesthetic_order_reasons_are_hero_first_area_and_next_best():
    result = rank_gallery(GALLERY, AREAS, RankingConfig(strategy="aesthetic"))
    assert shown(result)[:3] == [("b1", "hero: best score"), ("b2", "next best"), ("b3", "next best")]
    assert shown(result)[3] == ("p1", "first swimming_pool")


def test_pins_take_the_first_positions_in_the_editors_order_for_every_strategy():
    for strategy in STRATEGIES:
        result = rank_gallery(GALLERY, AREAS, RankingConfig(strategy=strategy), pinned=["f1", "b3"])
        ids = [GALLERY[i].image_id for i in result.order]
        assert ids[:2] == ["f1", "b3"], strategy
        assert result.reasons[:2] == ["pinned", "pinned"], strategy
        assert sorted(result.order) == list(range(len(GALLERY))), strategy


def test_pins_count_as_shown_so_the_rest_covers_other_areas_first():
    # The pinned pool photo is shown: the next positions go to the areas not shown yet.
    result = rank_gallery(GALLERY, AREAS, pinned=["p1"])
    assert shown(result)[:4] == [
        ("p1", "pinned"),
        ("b1", "first bedroom"),
        ("w1", "first bathroom"),
        ("f1", "first facade"),
    ]


def test_a_missing_pin_is_skipped_and_reported_not_an_error():
    result = rank_gallery(GALLERY, AREAS, pinned=["gone", "w1", "never", "w1"])
    assert [GALLERY[i].image_id for i in result.order][:1] == ["w1"]
    assert result.reasons.count("pinned") == 1
    assert result.pinned_missing == ["gone", "never"]


def test_hidden_images_are_left_out_and_the_rest_is_ranked_as_without_them():
    result = rank_gallery(GALLERY, AREAS, hidden={"b1", "p1", "not-there"})
    ids = [GALLERY[i].image_id for i in result.order]
    assert "b1" not in ids and "p1" not in ids and len(ids) == 4
    rest = [c for c in GALLERY if c.image_id not in ("b1", "p1")]
    assert ids == [rest[i].image_id for i in rank(rest, AREAS)]
    assert result.reasons[0] == "hero: best bedroom (hero area)"  # b2 is now the best shown


def test_a_hidden_pin_stays_hidden_and_is_reported():
    result = rank_gallery(GALLERY, AREAS, pinned=["w1", "p1"], hidden={"w1"})
    assert [GALLERY[i].image_id for i in result.order][0] == "p1"
    assert "w1" not in [GALLERY[i].image_id for i in result.order]
    assert result.pinned_missing == ["w1"]


def test_near_duplicates_are_named_and_a_pin_represents_its_cluster():
    gallery = [*GALLERY, make("b1-copy", 6.95, "bedroom", phash=0xFF), make("b1x", 4.0, "facade")]
    gallery[0] = make("b1", 7.0, "bedroom", phash=0xFF)
    result = rank_gallery(gallery, AREAS)
    assert shown(result, gallery)[-1] == ("b1-copy", "near-duplicate of b1")
    # Pinning the copy makes it the one shown; the better original goes last instead.
    pinned = rank_gallery(gallery, AREAS, pinned=["b1-copy"])
    assert shown(pinned, gallery)[0] == ("b1-copy", "pinned")
    assert shown(pinned, gallery)[-1] == ("b1", "near-duplicate of b1-copy")


def test_area_caps_are_named_in_the_reason():
    result = rank_gallery(GALLERY, AREAS, RankingConfig(strategy="aesthetic_dedup", max_per_area=1))
    assert dict(shown(result))["b2"] == "moved back: bedroom cap reached"


def test_hero_rule_reason_names_the_area():
    config = RankingConfig(hero_areas=("facade",), hero_tolerance=2.5)
    result = rank_gallery(GALLERY, AREAS, config)
    assert shown(result)[0] == ("f1", "hero: best facade (hero area)")


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_overrides_are_deterministic_whatever_the_input_order(strategy):
    synthetic = synthetic_gallery(60, np.random.default_rng(3))
    cands, areas = synthetic.candidates, synthetic.areas
    pinned = [cands[7].image_id, "missing-id", cands[2].image_id]
    hidden = {cands[0].image_id, cands[11].image_id}
    config = RankingConfig(strategy=strategy)
    first = rank_gallery(cands, areas, config, pinned=pinned, hidden=hidden)
    shuffled = [cands[i] for i in np.random.default_rng(4).permutation(len(cands))]
    second = rank_gallery(shuffled, areas, config, pinned=pinned, hidden=hidden)
    assert [cands[i].image_id for i in first.order] == [shuffled[i].image_id for i in second.order]
    assert first.reasons == second.reasons
    assert [cands[i].image_id for i in first.order][:2] == [pinned[0], pinned[2]]
    assert len(first.order) == len(cands) - 2 and first.pinned_missing == ["missing-id"]


def test_empty_gallery_and_everything_hidden():
    assert rank_gallery([], AREAS, pinned=["x"]).pinned_missing == ["x"]
    result = rank_gallery(GALLERY, AREAS, hidden={c.image_id for c in GALLERY}, pinned=["b1"])
    assert result.order == [] and result.reasons == [] and result.pinned_missing == ["b1"]
