"""Near-duplicate detection on a canonical gallery.

A row is a near duplicate when some *better* row (earlier in canonical order:
higher aesthetic, then image_id) is close to it by CNN embedding cosine or by
perceptual-hash Hamming distance. Thresholds follow idealo/imagededup: cosine
>= 0.9 for CNN near duplicates; hashing methods default to Hamming <= 10.

Comparing with every better row (not only with rows that are themselves kept)
keeps this one vectorised pass; in a chain A~B~C the images B and C both move
down, which is what a viewer wants anyway.
"""

from __future__ import annotations

import numpy as np

from ranking.gallery import Gallery

_BLOCK = 512  # rows per block: bounds the temporary (block x N) matrices

if hasattr(np, "bitwise_count"):  # numpy >= 2.0

    def _popcount(x: np.ndarray) -> np.ndarray:
        return np.bitwise_count(x)

else:  # pragma: no cover - numpy 1.26
    _BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)

    def _popcount(x: np.ndarray) -> np.ndarray:
        return _BYTE_BITS[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1)


def hamming(a: int, b: int) -> int:
    return (int(a) ^ int(b)).bit_count()


def near_duplicate_mask(gallery: Gallery, cosine: float, max_hamming: int) -> np.ndarray:
    """(N,) bool: True where a better image is a near duplicate of this one."""
    n = gallery.size
    dup = np.zeros(n, dtype=bool)
    emb_rows = np.flatnonzero(gallery.has_embedding)
    if emb_rows.size > 1:
        dup[emb_rows] |= _later_close(gallery.embeddings[emb_rows], lambda a, b: a @ b.T >= cosine)
    hash_rows = np.flatnonzero(gallery.has_phash)
    if hash_rows.size > 1:
        hashes = gallery.phash[hash_rows]
        dup[hash_rows] |= _later_close(hashes, lambda a, b: _popcount(a[:, None] ^ b[None, :]) <= max_hamming)
    return dup


def _later_close(values: np.ndarray, close) -> np.ndarray:
    """For rows sorted best first: is row j close to any row i < j?"""
    m = len(values)
    hit = np.zeros(m, dtype=bool)
    for start in range(0, m - 1, _BLOCK):
        stop = min(start + _BLOCK, m)
        # Only columns after the block start can be "later"; inside the block
        # keep the strict upper triangle (i < j).
        block = close(values[start:stop], values[start:])
        square = stop - start
        block[:, :square] &= np.triu(np.ones((square, square), dtype=bool), k=1)
        hit[start:] |= block.any(axis=0)
    return hit
