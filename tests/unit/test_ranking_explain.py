"""ranking.editorial.explain (vectorised) gives exactly the reasons of the rules read
position by position (the reference below is the first, loop version of explain)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from galleryrank.ranking import RankingConfig, get_strategy
from galleryrank.ranking.duplicates import duplicate_representatives
from galleryrank.ranking.editorial import REASONS, explain, rank_gallery
from galleryrank.ranking.gallery import Gallery, build_gallery
from galleryrank.ranking.pipeline import pick_hero
from galleryrank.ranking.synthetic import synthetic_gallery
from galleryrank.ranking.types import Candidate


def reference(gallery: Gallery, config: RankingConfig, rows, *, shared_pipeline: bool = True) -> list[str]:
    n = gallery.size
    pinned = set(gallery.pinned)
    if shared_pipeline and config.suppress_duplicates and n:
        rep = duplicate_representatives(gallery, config.duplicate_cosine, config.duplicate_hamming)
    else:
        rep = np.arange(n)
    default_cap = config.max_per_area
    shown_areas: set[int] = set()
    area_counts: dict[int, int] = {}
    lowest_auto = np.inf
    automatic = rep == np.arange(n)
    automatic[list(pinned)] = False
    best_auto = gallery.aesthetic[automatic].max() if automatic.any() else np.inf
    reasons: list[str] = []
    for position, row in enumerate(int(r) for r in rows):
        top = int(gallery.top_area[row])
        area = gallery.areas[top] if gallery.areas else "photo"
        score = gallery.aesthetic[row]
        sure = bool(gallery.areas) and gallery.area_probs[row, top] >= config.area_confidence
        if row in pinned:
            reason = REASONS["pinned"]
        elif rep[row] != row:
            reasons.append(REASONS["duplicate"].format(image_id=gallery.image_ids[rep[row]]))
            continue
        elif position == 0:
            rule = shared_pipeline and not pinned and any(a in gallery.areas for a in config.hero_areas)
            if rule and row == pick_hero(gallery, config, rep != np.arange(n)):
                reason = REASONS["hero_area"].format(area=area)
            elif score >= best_auto:
                reason = REASONS["hero_fallback_best" if rule else "hero_best"]
            else:
                reason = REASONS["hero_fallback_first" if rule else "hero_first"].format(area=area)
        elif top not in shown_areas and sure:
            reason = REASONS["first_area"].format(area=area)
        elif score > lowest_auto:
            cap = config.area_caps.get(area, default_cap) if shared_pipeline else None
            capped = cap is not None and area_counts.get(top, 0) >= cap
            reason = (REASONS["moved_back_cap"] if capped else REASONS["moved_back"]).format(area=area)
        else:
            reason = REASONS["next_best"]
        reasons.append(reason)
        if sure:  # an unsure tag shows no area
            shown_areas.add(top)
        area_counts[top] = area_counts.get(top, 0) + 1
        if row not in pinned:
            lowest_auto = min(lowest_auto, score)
    return reasons


CONFIGS = [
    RankingConfig(),
    RankingConfig(hero_areas=()),
    RankingConfig(strategy="xquad", area_confidence=0.0, max_run=None),
    RankingConfig(strategy="aesthetic"),
    RankingConfig(strategy="mmr", max_per_area=2),
    RankingConfig(strategy="pm2", area_caps={"bedroom": 1, "bathroom": 2}, hero_areas=("facade", "bedroom")),
    RankingConfig(strategy="dpp", suppress_duplicates=False, hero_areas=("swimming_pool",)),
    RankingConfig(strategy="interleave", max_per_area=1),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.strategy)
@pytest.mark.parametrize("seed", range(6))
def test_vectorised_explain_matches_the_rules_read_position_by_position(config, seed):
    rng = random.Random(seed)
    synthetic = synthetic_gallery(rng.choice([1, 5, 40, 300]), np.random.default_rng(seed), duplicate_rate=0.2)
    candidates, areas = synthetic.candidates, synthetic.areas
    pinned = rng.sample([c.image_id for c in candidates], min(len(candidates), rng.choice([0, 0, 2, 4])))
    if pinned and rng.random() < 0.5:
        pinned.append("not-there")
    hidden = set(rng.sample([c.image_id for c in candidates], min(len(candidates), rng.choice([0, 1, 3]))))
    ranked = rank_gallery(candidates, areas, config, pinned=pinned, hidden=hidden)
    shown = [c for c in candidates if c.image_id not in hidden]
    gallery = build_gallery(shown, areas)
    row_of = {image_id: row for row, image_id in enumerate(gallery.image_ids)}
    pin_rows = tuple(row_of[i] for i in dict.fromkeys(pinned) if i in row_of)
    if pin_rows:
        from dataclasses import replace

        gallery = replace(gallery, pinned=pin_rows, cache={})
    rows = np.array([row_of[candidates[i].image_id] for i in ranked.order], dtype=np.int64)
    shared = getattr(get_strategy(config.strategy), "shared_pipeline", False)
    assert explain(gallery, config, rows, shared_pipeline=shared) == reference(
        gallery, config, rows, shared_pipeline=shared
    )
    assert ranked.reasons == reference(gallery, config, rows, shared_pipeline=shared)


def test_explain_of_a_gallery_without_areas_and_of_nothing():
    cands = [Candidate(f"i{k}", float(k), np.zeros(0, dtype=np.float32)) for k in range(4)]
    gallery = build_gallery(cands, [])
    rows = np.arange(4)
    assert explain(gallery, RankingConfig(), rows) == reference(gallery, RankingConfig(), rows)
    assert explain(gallery, RankingConfig(), np.zeros(0, dtype=np.int64)) == []
