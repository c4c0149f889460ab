"""Floods cost what one event costs (issue 20): duplicate grouping without N^2 memory, one
grouping for ranking and training, hidden flags for never-seen images bounded and weighed."""

from __future__ import annotations

import random

import numpy as np

from galleryrank.consumer.state import records
from galleryrank.consumer.state.hotel import MAX_UNSEEN_FLAGS, HotelState
from galleryrank.consumer.state.overrides import HideChange, encode_overrides
from galleryrank.consumer.state.records import Fence, encode_record
from galleryrank.models.dedup import duplicate_groups
from galleryrank.ranking.duplicates import MAX_LINKS, int8_pairs, roots_of_pairs
from galleryrank.ranking.types import RankingConfig

Change = getattr(records, "ImageChange", None) or records.ImageState  # renamed by issue 21


def _photo(i: int, emb: np.ndarray, phash: int) -> object:
    return Change(
        f"img-{i}",
        Fence(0, i, "t", None, 1_700_000_000_000 + i),
        f"e-{i}",
        url=f"https://cdn.example.com/{i}.jpg",
        aesthetic=5.0 + (i % 50) / 50,
        aesthetic_dist=(0.1,) * 10,
        area_probs={"bedroom": 0.6, "bathroom": 0.4},
        embedding=emb / np.linalg.norm(emb),
        phash=phash,
        model_version="m",
    )


def _components(state: HotelState) -> set[frozenset[str]]:
    ids = sorted(state.row)
    roots = state.graph.roots({i: k for k, i in enumerate(ids)}, len(ids))
    groups: dict[int, set[str]] = {}
    for k, i in enumerate(ids):
        groups.setdefault(int(roots[k]) if roots is not None else k, set()).add(i)
    return {frozenset(g) for g in groups.values()}


def _reference(state: HotelState) -> set[frozenset[str]]:
    ids = sorted(state.row)
    rows = np.array([state.row[i] for i in ids])
    q = state._q[rows].astype(np.float32)
    pairs = int8_pairs(q, state._norm2[rows], state._has_q[rows], state._phash[rows], state._has_phash[rows], 0.9, 10)
    roots = roots_of_pairs(len(ids), pairs)
    groups: dict[int, set[str]] = {}
    for k, i in enumerate(ids):
        groups.setdefault(int(roots[k]), set()).add(i)
    return {frozenset(g) for g in groups.values()}


def test_identical_photos_keep_few_edges_and_the_exact_clusters_through_deletes():
    rng = np.random.default_rng(1)
    base = rng.normal(size=64).astype(np.float32)
    other = rng.normal(size=64).astype(np.float32)
    photos = [_photo(i, base if i % 3 else other, 777 if i % 3 else 999) for i in range(400)]
    photos += [_photo(400 + i, rng.normal(size=64).astype(np.float32), int(rng.integers(0, 2**63))) for i in range(40)]
    config = RankingConfig()
    fields = {p.image_id.encode(): encode_record(p) for p in photos}
    state = HotelState.from_redis("h", config, fields, None, None, None)
    edges = sum(len(v) for v in state.graph.edges.values()) // 2
    assert edges <= len(photos) * (MAX_LINKS + 1), edges  # not 400^2 / 2
    assert _components(state) == _reference(state)
    # Deletes (a hub among them) and re-uploads, incrementally: still the exact clusters, and
    # the cached state renders what a state rebuilt from Redis renders.
    order = list(range(0, 440, 7))
    random.Random(2).shuffle(order)
    for k, i in enumerate(order):
        change = Change(f"img-{i}", Fence(0, 1000 + k, "t", None, 1_700_000_100_000 + k), f"d-{i}", deleted=True)
        outcome = state.apply(change)
        fields[change.image_id.encode()] = outcome.record
    assert _components(state) == _reference(state)
    rebuilt = HotelState.from_redis("h", config, dict(fields), None, None, None)
    assert rebuilt.render() == state.render()


def test_hidden_flags_for_never_seen_images_are_bounded_and_weighed():
    state = HotelState("h", RankingConfig())
    state.apply(_photo(0, np.ones(8, np.float32), 1))
    outcomes = [
        state.apply(HideChange(f"ghost-{i}", Fence(0, 10 + i, "t"), f"h-{i}", hidden=True))
        for i in range(MAX_UNSEEN_FLAGS + 50)
    ]
    assert all(o.applied for o in outcomes[:MAX_UNSEEN_FLAGS])
    late = outcomes[MAX_UNSEEN_FLAGS:]
    assert all(o.rejected is not None and o.rejected.reason == "too_many_unknown_overrides" for o in late)
    assert len(state.overrides.flags) == MAX_UNSEEN_FLAGS
    assert state.weight == 1 + MAX_UNSEEN_FLAGS  # counted in the cache bound
    # A known image can always be hidden, and a known flag changed.
    assert state.apply(HideChange("img-0", Fence(0, 5000, "t"), "h-known", hidden=True)).applied
    assert state.apply(HideChange("ghost-3", Fence(0, 5001, "t"), "h-unhide", hidden=False)).applied
    assert encode_overrides(state.overrides)


def test_training_dedup_groups_like_the_pairwise_union_find():
    rng = np.random.default_rng(3)
    hashes = rng.integers(0, 2, size=(120, 64)).astype(bool)
    hashes[60:70] = hashes[0]  # exact copies
    hashes[70:75] = hashes[1] ^ (rng.random((5, 64)) < 0.05)  # near copies
    emb = rng.normal(size=(120, 16)).astype(np.float32)
    emb[80:90] = emb[2] + 0.01 * rng.normal(size=(10, 16))
    exact, near = duplicate_groups(hashes, emb, 8, 0.9, block=32)
    packed = np.packbits(hashes, axis=1).view(">u8").reshape(-1).astype(np.uint64)
    dist = np.bitwise_count(packed[:, None] ^ packed[None, :])
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    i, j = np.nonzero(np.triu((dist <= 8) | (unit @ unit.T >= 0.9), k=1))
    assert near == roots_of_pairs(120, np.stack([i, j], axis=1)).tolist()
    i, j = np.nonzero(np.triu(dist == 0, k=1))
    assert exact == roots_of_pairs(120, np.stack([i, j], axis=1)).tolist()
    assert len(set(exact[60:70] + [exact[0]])) == 1
