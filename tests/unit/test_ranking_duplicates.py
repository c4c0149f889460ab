"""Near-duplicate detection: thresholds, missing signals, clusters."""

import numpy as np

from galleryrank.ranking import Candidate, RankingConfig, build_gallery, rank
from galleryrank.ranking.duplicates import hamming, near_duplicate_mask

AREAS = ("bedroom", "facade")
PROBS = np.array([1.0, 0.0], dtype=np.float32)


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def at_cosine(base, cosine):
    """A unit vector at exactly ``cosine`` to the unit vector ``base`` (in its plane with e_last)."""
    other = np.zeros_like(base)
    other[-1] = 1.0
    other -= (other @ base) * base
    other /= np.linalg.norm(other)
    return (cosine * base + np.sqrt(1 - cosine**2) * other).astype(np.float32)


BASE = unit([1.0, 0.2, 0.0, 0.0])


def flags(cands, **kw):
    config = RankingConfig(**kw)
    gallery = build_gallery(cands, AREAS)
    mask = near_duplicate_mask(gallery, config.duplicate_cosine, config.duplicate_hamming)
    return {image_id: bool(m) for image_id, m in zip(gallery.image_ids, mask)}


def test_cosine_threshold_is_inclusive():
    cands = [
        Candidate("best", 7.0, PROBS, BASE, None),
        Candidate("close", 6.0, PROBS, at_cosine(BASE, 0.905), None),
        Candidate("far", 5.0, PROBS, at_cosine(BASE, -0.5), None),
    ]
    assert flags(cands) == {"best": False, "close": True, "far": False}
    assert flags(cands, duplicate_cosine=0.95) == {"best": False, "close": False, "far": False}


def test_hamming_threshold_is_inclusive():
    h = 0xF0F0_0000_FFFF_1234
    ten_bits = h ^ 0b11_1111_1111
    eleven_bits = h ^ (0b111_1111_1111 << 20)
    assert hamming(h, ten_bits) == 10 and hamming(h, eleven_bits) == 11
    cands = [
        Candidate("a", 7.0, PROBS, None, h),
        Candidate("b", 6.0, PROBS, None, ten_bits),
        Candidate("c", 5.0, PROBS, None, eleven_bits),
    ]
    assert flags(cands) == {"a": False, "b": True, "c": False}


def test_copies_linked_only_through_their_original_form_one_cluster():
    # "resave" shares the hash with the original, "reshot" the embedding; the
    # two copies share nothing, and both are better than the original.
    cands = [
        Candidate("resave", 8.0, PROBS, None, 0xABCD),
        Candidate("reshot", 7.5, PROBS, at_cosine(BASE, 0.95), 0xFFFF_0000_0000_0000),
        Candidate("original", 6.0, PROBS, BASE, 0xABCF),
        Candidate("other", 5.0, PROBS, at_cosine(BASE, 0.1), 0x1234_5678_0000_0000),
    ]
    assert flags(cands) == {"resave": False, "reshot": True, "original": True, "other": False}
    order = [cands[i].image_id for i in rank(cands, AREAS, RankingConfig(strategy="aesthetic_dedup"))]
    assert order == ["resave", "other", "reshot", "original"]


def test_missing_signals_never_match_and_can_be_switched_off():
    cands = [
        Candidate("a", 7.0, PROBS, None, None),
        Candidate("b", 6.0, PROBS, None, None),
        Candidate("c", 5.0, PROBS, BASE, 0),
        Candidate("d", 4.0, PROBS, BASE, 0),
    ]
    assert flags(cands) == {"a": False, "b": False, "c": False, "d": True}
    order = rank(cands, AREAS, RankingConfig(strategy="aesthetic_dedup", suppress_duplicates=False))
    assert [cands[i].image_id for i in order] == ["a", "b", "c", "d"]


def test_large_gallery_blocks_find_the_same_pairs_as_a_dense_check():
    rng = np.random.default_rng(5)
    n = 1300  # more than two blocks of 512
    emb = rng.normal(size=(n, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    for i in range(0, n, 97):  # plant copies far apart in the gallery
        emb[(i * 7) % n] = emb[i]
    cands = [Candidate(f"i{k:04d}", float(rng.uniform(1, 10)), PROBS, emb[k], None) for k in range(n)]
    gallery = build_gallery(cands, AREAS)
    got = near_duplicate_mask(gallery, 0.9, 10)
    sims = gallery.embeddings @ gallery.embeddings.T
    expected = np.array([(sims[:j, j] >= 0.9).any() for j in range(n)])  # no chains at 16 random dims
    assert got.sum() > 5
    np.testing.assert_array_equal(got, expected)
