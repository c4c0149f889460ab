"""Near-duplicate detection on a canonical gallery.

Two images are near duplicates when their CNN embeddings have cosine >= 0.9
or their perceptual hashes differ in <= 10 bits (idealo/imagededup: cosine
0.9 for CNN near duplicates, Hamming 10 as the hashing methods' default).
Near duplicates form clusters (connected components: a re-save linked by its
hash and a re-shot angle linked by its embedding are one cluster through the
original even when the two copies share no signal). Each cluster keeps its
best image (first in canonical order); the others are flagged and go last.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .gallery import Gallery

_BLOCK = 512  # rows per block: bounds the temporary (block x N) matrices
_UPPER = np.triu(np.ones((_BLOCK, _BLOCK), dtype=bool), k=1)  # i < j inside a block (sliced, never written)

if hasattr(np, "bitwise_count"):  # numpy >= 2.0

    def _popcount(x: np.ndarray) -> np.ndarray:
        return np.bitwise_count(x)

else:  # pragma: no cover - numpy 1.26
    _BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)

    def _popcount(x: np.ndarray) -> np.ndarray:
        return _BYTE_BITS[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1)


def hamming(a: int, b: int) -> int:
    return (int(a) ^ int(b)).bit_count()


def near_duplicate_pairs(gallery: Gallery, cosine: float, max_hamming: int) -> np.ndarray:
    """(P, 2) row pairs (i < j) that are near duplicates by either signal."""
    pairs = []
    emb_rows = np.flatnonzero(gallery.has_embedding)
    if emb_rows.size > 1:
        local = _close_pairs(gallery.embeddings[emb_rows], lambda a, b: a @ b.T >= cosine)
        pairs.append(emb_rows[local])
    hash_rows = np.flatnonzero(gallery.has_phash)
    if hash_rows.size > 1:
        local = _close_pairs(gallery.phash[hash_rows], lambda a, b: _popcount(a[:, None] ^ b[None, :]) <= max_hamming)
        pairs.append(hash_rows[local])
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)


def near_duplicate_mask(gallery: Gallery, cosine: float, max_hamming: int) -> np.ndarray:
    """(N,) bool: True for every image of a near-duplicate cluster but its representative."""
    rep = duplicate_representatives(gallery, cosine, max_hamming)
    return rep != np.arange(gallery.size)


def duplicate_representatives(gallery: Gallery, cosine: float, max_hamming: int) -> np.ndarray:
    """(N,) int64: the row that represents each row's near-duplicate cluster (itself when shown).

    The representative is the cluster's best image (first in canonical order),
    unless an editor pinned images of the cluster (``gallery.pinned``): then the
    first of those pins represents it, and every pinned row represents itself
    (a pin is never hidden as a copy). Memoised on the gallery: the pipeline and
    the explanation of an order share one O(N^2) pass.
    """
    key = ("duplicate_representatives", float(cosine), int(max_hamming))
    cached = gallery.cache.get(key)
    if cached is not None:
        return cached
    root = np.arange(gallery.size)

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    pairs = near_duplicate_pairs(gallery, cosine, max_hamming)
    for i, j in pairs.tolist():
        a, b = find(i), find(j)
        if a != b:  # the better (smaller) row stays the cluster's root
            root[max(a, b)] = min(a, b)
    rep = np.arange(gallery.size)
    for i in np.unique(pairs).tolist():  # only rows in some pair belong to a cluster
        rep[i] = find(i)
    if gallery.pinned:
        pinned_rep: dict[int, int] = {}
        for row in gallery.pinned:  # pin order: the first pin of a cluster represents it
            pinned_rep.setdefault(int(rep[row]), int(row))
        clustered = np.flatnonzero(rep != np.arange(gallery.size)).tolist() + list(pinned_rep)
        for i in clustered:
            rep[i] = pinned_rep.get(int(rep[i]), int(rep[i]))
        rep[list(gallery.pinned)] = list(gallery.pinned)
    gallery.cache[key] = rep
    return rep


def _close_pairs(values: np.ndarray, close: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """(P, 2) local index pairs i < j with close(values[i], values[j])."""
    m = len(values)
    found = []
    for start in range(0, m - 1, _BLOCK):
        stop = min(start + _BLOCK, m)
        # Columns before the block were compared in earlier blocks; inside the
        # block keep the strict upper triangle (i < j).
        block = close(values[start:stop], values[start:])
        square = stop - start
        block[:, :square] &= _UPPER[:square, :square]
        columns = np.flatnonzero(block.any(axis=0))  # few: near duplicates are rare
        if columns.size:
            rows, which = np.nonzero(block[:, columns])
            found.append(np.stack([rows + start, columns[which] + start], axis=1))
    return np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)
