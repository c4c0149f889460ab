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
        local = _close_pairs(
            gallery.phash[hash_rows], lambda a, b: np.bitwise_count(a[:, None] ^ b[None, :]) <= max_hamming
        )
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
    rep = duplicate_roots(gallery, cosine, max_hamming).copy()
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


def duplicate_roots(gallery: Gallery, cosine: float, max_hamming: int) -> np.ndarray:
    """(N,) int64: each row's cluster root, the cluster's first (best) row; pins not applied.

    ``gallery.clusters`` when the caller keeps them (``DuplicateIndex``), else the
    O(N^2) pass over the gallery's embeddings and hashes."""
    if gallery.clusters is not None:
        return gallery.clusters
    return roots_of_pairs(gallery.size, near_duplicate_pairs(gallery, cosine, max_hamming))


def roots_of_pairs(n: int, pairs: np.ndarray) -> np.ndarray:
    """(n,) int64 connected-component roots (the smallest row of each component) of an edge list."""
    root = np.arange(n)

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    for i, j in np.asarray(pairs).tolist():
        a, b = find(i), find(j)
        if a != b:  # the better (smaller) row stays the cluster's root
            root[max(a, b)] = min(a, b)
    rep = np.arange(n)
    for i in np.unique(pairs).tolist():  # only rows in some pair belong to a cluster
        rep[i] = find(i)
    return rep


# --- incremental, exact: one hotel's gallery kept up to date image by image ------------------------
#
# The service keeps each hotel's images in memory and changes one image at a time,
# so it compares the new image with the others (O(N D), one matrix-vector product)
# instead of re-running the O(N^2 D) pass on every write. Embeddings are compared
# as the int8 vectors the state stores (``round(127 * unit vector)``), held as
# float32: every product and partial sum of two such vectors is an integer below
# ~2e4 (Cauchy-Schwarz), far inside float32's exact range (2**24), so a dot product
# is exact whatever the order of summation. The verdict on a pair is therefore
# the same whichever image came first, however images were batched, on any BLAS:
# a hotel rebuilt from Redis gets exactly the clusters its incremental copy had.


def int8_close(
    block: np.ndarray, block_norm2: np.ndarray, other: np.ndarray, other_norm2: np.ndarray, cosine: float
) -> np.ndarray:
    """(len(block), len(other)) bool: cosine >= ``cosine`` between int8-valued float32 rows.

    ``*_norm2`` are the rows' exact squared norms (float64); rows must not be zero."""
    dots = (block @ other.T).astype(np.float64)  # exact integers
    return dots >= cosine * np.sqrt(np.multiply.outer(block_norm2, other_norm2))


def int8_pairs(
    q: np.ndarray,
    norm2: np.ndarray,
    has_q: np.ndarray,
    phash: np.ndarray,
    has_phash: np.ndarray,
    cosine: float,
    max_hamming: int,
) -> np.ndarray:
    """(P, 2) row pairs (i < j) that are near duplicates, by the exact int8 rule (rows: any order)."""
    pairs = []
    rows = np.flatnonzero(has_q)
    if rows.size > 1:
        n2 = norm2[rows]
        index = np.arange(rows.size)

        def close(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return int8_close(q[rows[a]], n2[a], q[rows[b]], n2[b], cosine)

        pairs.append(rows[_close_pairs(index, close)])
    rows = np.flatnonzero(has_phash)
    if rows.size > 1:
        local = _close_pairs(phash[rows], lambda a, b: np.bitwise_count(a[:, None] ^ b[None, :]) <= max_hamming)
        pairs.append(rows[local])
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)


# Beyond the edges that join components, each image keeps at most this many near-duplicate
# edges: 2,000 identical photos hold ~2,000 x 16 edges, not 2,000^2 / 2 (issue 20).
MAX_LINKS = 16


def components_and_links(
    n: int, close: Callable[[int, int], np.ndarray], max_links: int = MAX_LINKS, block: int = _BLOCK
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Connected components of a "close" relation over rows 0..n-1, without keeping its edges.

    ``close(start, stop)`` returns the (stop - start, n) bool rows of the relation (the diagonal
    is ignored). Returns (the smallest row of each row's component, a sparse edge list): a spanning
    forest of the relation plus at most ``max_links`` further edges per row. Memory is
    O(block x n + n x max_links) however many pairs are close (every pair of identical photos)."""
    label = np.arange(n)
    edges: set[tuple[int, int]] = set()
    for start in range(0, n, block):
        stop = min(start + block, n)
        rows = close(start, stop)
        for k in range(stop - start):
            i = start + k
            near = np.flatnonzero(rows[k])
            near = near[near != i]
            if not near.size:
                continue
            labels = label[near]
            own = label[i]
            distinct, first = np.unique(labels, return_index=True)
            joined = distinct != own
            if joined.any():  # one edge per component this row joins: a spanning forest
                merged = np.append(distinct[joined], own)
                label[np.isin(label, merged)] = merged.min()
                edges.update((min(i, int(j)), max(i, int(j))) for j in near[first[joined]].tolist())
            edges.update((min(i, j), max(i, j)) for j in near[:max_links].tolist())
    return label, sorted(edges)


class DuplicateGraph:
    """Near-duplicate edges between the images of one gallery, by image id, kept sparse.

    The graph has exactly the connected components of the near-duplicate relation but not
    all its edges: ``link`` joins a new image to one neighbour in each component it touches
    (found through a union-find of the components) plus at most ``MAX_LINKS`` others, and
    ``remove`` hands back the rest of the removed image's component, whose links the owner
    rebuilds (``add_edges``) from the vectors, since the component may split. ``roots``
    gives the clusters of the images shown, in canonical order. Memory: O(images x MAX_LINKS)."""

    def __init__(self) -> None:
        self.edges: dict[str, set[str]] = {}
        self._parent: dict[str, str] = {}

    def _find(self, image_id: str) -> str:
        parent = self._parent
        root = image_id
        while parent.get(root, root) != root:
            root = parent[root]
        while image_id != root:  # path compression
            parent[image_id], image_id = root, parent[image_id]
        return root

    def _union(self, a: str, b: str) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self._parent[ra] = rb

    def _edge(self, a: str, b: str) -> None:
        self.edges.setdefault(a, set()).add(b)
        self.edges.setdefault(b, set()).add(a)
        self._union(a, b)

    def link(self, image_id: str, neighbours: list[str], max_links: int = MAX_LINKS) -> None:
        """A new image and all its near duplicates among the images already linked or not."""
        self.unlink(image_id)
        for i, other in enumerate(neighbours):
            if i < max_links or self._find(other) != self._find(image_id):
                self._edge(image_id, other)

    def add_edges(self, pairs: list[tuple[str, str]]) -> None:
        for a, b in pairs:
            self._edge(a, b)

    def component(self, image_id: str) -> set[str]:
        seen = {image_id}
        stack = [image_id]
        while stack:
            for other in self.edges.get(stack.pop(), ()):
                if other not in seen:
                    seen.add(other)
                    stack.append(other)
        return seen

    def remove(self, image_id: str) -> set[str]:
        """Forget an image and the links of its whole component; returns the component's other
        images: the caller re-links them (``add_edges``), as the component may have split."""
        if image_id not in self.edges:
            self._parent.pop(image_id, None)
            return set()
        members = self.component(image_id)
        for member in members:
            self.edges.pop(member, None)
            self._parent.pop(member, None)
        members.discard(image_id)
        return members

    def unlink(self, image_id: str) -> None:
        """Drop one image's own edges (its component's other links stay)."""
        for other in self.edges.pop(image_id, ()):
            linked = self.edges.get(other)
            if linked is not None:
                linked.discard(image_id)
                if not linked:
                    del self.edges[other]

    def roots(self, row_of: dict[str, int], n: int) -> np.ndarray | None:
        """(n,) int64 cluster roots over the rows of ``row_of`` (image_id -> canonical row of
        the images shown); edges to images not shown are ignored. None when there is no edge."""
        rows = sorted(row_of[i] for i in self.edges if i in row_of)
        if not rows:
            return None
        ids: list[str] = [""] * n  # row -> image_id, for the rows that have edges
        for image_id, row in ((i, row_of[i]) for i in self.edges if i in row_of):
            ids[row] = image_id
        root = np.arange(n)
        assigned: set[int] = set()
        for start in rows:  # canonical order: the first row of a component is its root
            if start in assigned:
                continue
            stack = [start]
            assigned.add(start)
            while stack:
                row = stack.pop()
                root[row] = start
                for other in self.edges[ids[row]]:
                    other_row = row_of.get(other)
                    if other_row is not None and other_row not in assigned:
                        assigned.add(other_row)
                        stack.append(other_row)
        return root


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
