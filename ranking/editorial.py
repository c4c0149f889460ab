"""Editors' overrides and a reason for every position.

``rank_gallery`` is ``rank`` plus what a content team decides:

- **hidden** images are left out of the order (the caller keeps their state,
  so unhiding them needs no rescore);
- **pinned** images take the first positions in the editor's order; a pinned
  id with no candidate (never uploaded, deleted, or hidden) is skipped and
  reported in ``pinned_missing``; for every diversifying strategy the pins
  count as already shown, so the rest covers the other areas first and a near
  duplicate of a pin goes last;
- every position gets a short human reason (see ``REASONS``).

Pure and deterministic like ``rank``: the same candidates, pins and hidden set
give the same order and the same reasons on every replay.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .duplicates import duplicate_representatives
from .gallery import Gallery, build_gallery
from .pipeline import confident, hero_columns, pick_hero
from .registry import get_strategy
from .types import Candidate, RankingConfig

# The reasons, as templates ({area}, {image_id} filled in). The website shows them
# as they are; the first word is stable for tools that group by it.
REASONS = {
    "pinned": "pinned",
    "hero_best": "hero: best score",
    "hero_area": "hero: best {area} (hero area)",
    "hero_first": "hero: first {area}",
    "hero_fallback_best": "hero: best score (no confident hero-area photo)",
    "hero_fallback_first": "hero: first {area} (no confident hero-area photo)",
    "first_area": "first {area}",
    "next_best": "next best",
    "moved_back": "moved back: variety first",
    "moved_back_cap": "moved back: {area} cap reached",
    "duplicate": "near-duplicate of {image_id}",
}


@dataclass(frozen=True)
class RankedGallery:
    order: list[int]  # indices into the candidates in display order; hidden ones left out
    reasons: list[str]  # one per position of ``order``
    pinned_missing: list[str]  # pinned ids not shown (no such candidate, or hidden), in pin order


def rank_gallery(
    candidates: Sequence[Candidate],
    areas: Sequence[str],
    config: RankingConfig | None = None,
    *,
    pinned: Sequence[str] = (),
    hidden: Collection[str] = (),
) -> RankedGallery:
    """Display order with the editors' pins and hidden images applied, and a reason per position."""
    hidden = set(hidden)
    shown = [i for i, c in enumerate(candidates) if c.image_id not in hidden]
    gallery = build_gallery([candidates[i] for i in shown], areas)
    ranked = rank_prepared(gallery, config, pinned=pinned)
    source = np.asarray(shown, dtype=np.int64)[gallery.source_index[ranked.order]]
    return RankedGallery(order=source.tolist(), reasons=ranked.reasons, pinned_missing=ranked.pinned_missing)


def rank_prepared(
    gallery: Gallery, config: RankingConfig | None = None, *, pinned: Sequence[str] = ()
) -> RankedGallery:
    """``rank_gallery`` on a Gallery the caller built (hidden images already left out, e.g.
    with ``ordered_gallery`` from cached arrays); ``order`` is in canonical rows."""
    config = config or RankingConfig()
    strategy = get_strategy(config.strategy)
    row_of = {image_id: row for row, image_id in enumerate(gallery.image_ids)} if pinned else {}
    pinned_rows: list[int] = []
    missing: list[str] = []
    for image_id in dict.fromkeys(pinned):  # a repeated id counts once, at its first place
        row = row_of.get(image_id)
        if row is None:
            missing.append(image_id)
        else:
            pinned_rows.append(row)
    if pinned_rows:
        gallery = replace(gallery, pinned=tuple(pinned_rows), cache={})
    rows = np.asarray(strategy(gallery, config), dtype=np.int64)
    if pinned_rows:  # strategies outside the shared pipeline (e.g. "aesthetic") know nothing of pins
        is_pinned = np.zeros(gallery.size, dtype=bool)
        is_pinned[pinned_rows] = True
        rows = np.concatenate([np.asarray(pinned_rows, dtype=np.int64), rows[~is_pinned[rows]]])
    return RankedGallery(
        order=rows.tolist(),
        reasons=explain(gallery, config, rows, shared_pipeline=getattr(strategy, "shared_pipeline", False)),
        pinned_missing=missing,
    )


def explain(gallery: Gallery, config: RankingConfig, rows: np.ndarray, *, shared_pipeline: bool = True) -> list[str]:
    """A reason for each position of ``rows`` (canonical rows in display order).

    Read from the order itself, so it holds for any strategy:
    pinned rows are "pinned"; a near duplicate set aside by the shared pipeline
    is "near-duplicate of <the image shown for it>"; position 0 is the hero
    (the hero rule's area; else best score or the first of its area, saying so
    when the hero rule found no confident hero-area photo); an image confidently
    tagged (``area_confidence``) whose area no confident tag showed before is
    "first <area>"; an image placed after a
    lower-scoring automatic image was "moved back" (by an area cap when its
    area had reached it, else for variety); the rest are the "next best".
    """
    rows = np.asarray(rows, dtype=np.int64)
    n, m = gallery.size, len(rows)
    if m == 0:
        return []
    # Vectorised: one numpy pass per rule instead of Python per position (a 2,000-image
    # gallery is re-explained on every write); tests/unit/test_ranking_explain.py checks it
    # against the position-by-position reading of the rules, on random galleries.
    if shared_pipeline and config.suppress_duplicates and n:
        rep = duplicate_representatives(gallery, config.duplicate_cosine, config.duplicate_hamming)
    else:
        rep = np.arange(n)
    is_pinned = np.zeros(n, dtype=bool)
    is_pinned[list(gallery.pinned)] = True
    automatic = (rep == np.arange(n)) & ~is_pinned
    best_auto = gallery.aesthetic[automatic].max() if automatic.any() else np.inf

    pinned_at = is_pinned[rows]
    duplicate_at = (rep[rows] != rows) & ~pinned_at  # set aside: counts for nothing below
    counted = ~duplicate_at  # pinned and automatic rows: they show their area
    normal = counted & ~pinned_at
    top = gallery.top_area[rows] if n else np.zeros(m, dtype=np.int64)
    score = gallery.aesthetic[rows]
    first_of_area = np.zeros(m, dtype=bool)  # no confident counted row before it shows its area
    shown = np.flatnonzero(counted & confident(gallery, config.area_confidence)[rows])
    if shown.size:
        _, first = np.unique(top[shown], return_index=True)
        first_of_area[shown[first]] = True
    # The lowest automatic score placed before each position.
    lowest_before = np.full(m, np.inf)
    lowest_before[1:] = np.minimum.accumulate(np.where(normal, score, np.inf)[:-1])

    HERO, FIRST, MOVED, CAPPED, NEXT, PIN, DUP = range(7)
    code = np.full(m, NEXT, dtype=np.int64)
    code[normal & first_of_area] = FIRST
    moved = normal & ~first_of_area & (score > lowest_before)
    code[moved] = MOVED
    if shared_pipeline and moved.any() and (config.max_per_area is not None or config.area_caps):
        names = gallery.areas
        for position in np.flatnonzero(moved).tolist():
            area = names[top[position]] if names else "photo"
            cap = config.area_caps.get(area, config.max_per_area)
            same = counted[:position] & (top[:position] == top[position])
            if cap is not None and int(same.sum()) >= cap:
                code[position] = CAPPED
    code[pinned_at] = PIN
    code[duplicate_at] = DUP
    hero = REASONS["hero_best"] if normal[0] and score[0] >= best_auto else None
    fallback = False
    if normal[0]:
        code[0] = HERO
        if shared_pipeline and not gallery.pinned and hero_columns(gallery, config):
            if int(rows[0]) == pick_hero(gallery, config, rep != np.arange(n)):
                hero = REASONS["hero_area"].format(area=gallery.areas[top[0]])
            else:
                fallback = True
                hero = REASONS["hero_fallback_best"] if hero is not None else None

    templates = {
        FIRST: REASONS["first_area"],
        MOVED: REASONS["moved_back"],
        CAPPED: REASONS["moved_back_cap"],
        NEXT: REASONS["next_best"],
        PIN: REASONS["pinned"],
    }
    width = max(len(gallery.areas), 1)
    keys = code * width + top
    unique, inverse = np.unique(keys, return_inverse=True)
    texts = []
    for key in unique.tolist():
        kind, area_index = divmod(key, width)
        area = gallery.areas[area_index] if gallery.areas else "photo"
        if kind == HERO:
            if hero is not None:
                texts.append(hero)
            elif fallback:
                texts.append(REASONS["hero_fallback_first"].format(area=area))
            else:
                texts.append(REASONS["hero_first"].format(area=area))
        elif kind == DUP:
            texts.append("")  # per row, below
        else:
            texts.append(templates[kind].format(area=area))
    reasons = np.array(texts, dtype=object)[inverse.reshape(-1)].tolist()
    for position in np.flatnonzero(duplicate_at).tolist():
        reasons[position] = REASONS["duplicate"].format(image_id=gallery.image_ids[rep[rows[position]]])
    return reasons
