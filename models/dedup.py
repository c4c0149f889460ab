"""Duplicate-aware train/validation split.

Exact duplicates (same perceptual hash: resized or re-encoded copies; imagededup
uses dHash at Hamming 0 for these) are removed, keeping one. Near duplicates
(pHash Hamming distance <= ``hash_distance`` or embedding cosine >= 0.9, the
imagededup CNN threshold) are grouped with union-find, and whole groups go to
either train or validation, so no near copy of a validation image is trained on.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from galleryrank.ranking.duplicates import components_and_links

if TYPE_CHECKING:
    from PIL import Image

COSINE_THRESHOLD = 0.9  # imagededup's CNN near-duplicate threshold
HASH_DISTANCE = 4  # pHash bits (of 64) for a near duplicate


@dataclass
class SplitReport:
    n_input: int
    n_exact_removed: int
    n_label_conflicts: int  # exact copies whose labels disagreed (the first one kept)
    n_near_groups: int  # groups of >= 2 images kept together
    n_in_near_groups: int
    n_train: int
    n_val: int
    removed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["removed"] = d["removed"][:50]
        return d


def perceptual_hashes(images: Sequence[Image.Image]) -> np.ndarray:
    """64-bit pHash (imagehash) of each PIL image as a (N, 64) bool array."""
    import imagehash

    return np.stack([imagehash.phash(img).hash.reshape(-1) for img in images]) if images else np.zeros((0, 64), bool)


def _pack(hashes: np.ndarray) -> np.ndarray:
    """(N, 64) bools -> (N,) uint64, so Hamming distance is one XOR + popcount."""
    return np.packbits(hashes.astype(bool), axis=1).view(">u8").reshape(-1).astype(np.uint64)


def duplicate_groups(
    hashes: np.ndarray,
    embeddings: np.ndarray | None = None,
    hash_distance: int = HASH_DISTANCE,
    cosine: float = COSINE_THRESHOLD,
    block: int = 1024,
) -> tuple[list[int], list[int]]:
    """(exact-group root of each image, near-group root of each image).

    Pairs are compared in row blocks, so memory stays O(block x N) (20k images: ~160 MB a block).
    """
    n = len(hashes)
    packed = _pack(hashes) if n else np.zeros(0, np.uint64)
    e = None
    if embeddings is not None and n:
        e = (embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)

    def exact(start: int, stop: int) -> np.ndarray:
        return np.bitwise_count(packed[start:stop, None] ^ packed[None, :]) == 0

    def near(start: int, stop: int) -> np.ndarray:
        close = np.bitwise_count(packed[start:stop, None] ^ packed[None, :]) <= hash_distance
        if e is not None:
            close |= (e[start:stop] @ e.T) >= cosine
        return close

    # The one duplicate grouping of the project (ranking/duplicates.py): components in row
    # blocks, the smallest row of each as its root, no pair list kept.
    exact_root, _ = components_and_links(n, exact, max_links=0, block=block)
    near_root, _ = components_and_links(n, near, max_links=0, block=block)
    return exact_root.tolist(), near_root.tolist()


def split_without_leaks(
    labels: Sequence[Hashable],
    hashes: np.ndarray,
    embeddings: np.ndarray | None = None,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    names: list[str] | None = None,
    hash_distance: int = HASH_DISTANCE,
    cosine: float = COSINE_THRESHOLD,
) -> tuple[list[int], list[int], SplitReport]:
    """Indices (train, val) after removing exact copies; near groups never straddle.

    ``labels`` are used to stratify (each group is placed by its first member's label;
    pass a constant for regression targets).
    """
    n = len(labels)
    exact_root, near_root = duplicate_groups(hashes, embeddings, hash_distance, cosine)
    keep, removed, conflicts = [], [], 0
    for i in range(n):
        r = exact_root[i]
        if r == i:
            keep.append(i)
        else:
            removed.append(names[i] if names else str(i))
            conflicts += labels[i] != labels[r]
    groups: dict[int, list[int]] = defaultdict(list)
    for i in keep:
        groups[near_root[i]].append(i)
    by_label: dict[Hashable, list[list[int]]] = defaultdict(list)
    for members in groups.values():
        by_label[labels[members[0]]].append(members)
    rng = random.Random(seed)
    train, val = [], []
    for label in sorted(by_label, key=str):
        gs = by_label[label]
        rng.shuffle(gs)
        gs.sort(key=len)  # small groups fill validation; big clusters stay in training (stable: still shuffled)
        target = val_fraction * sum(len(g) for g in gs)
        taken = 0
        for k, g in enumerate(gs):
            # fill validation up to its share, never beyond it; keep at least one group for training
            if k < len(gs) - 1 and taken + len(g) <= max(target, 1):
                val.extend(g)
                taken += len(g)
            else:
                train.extend(g)
    near_groups = [g for g in groups.values() if len(g) > 1]
    report = SplitReport(
        n_input=n,
        n_exact_removed=len(removed),
        n_label_conflicts=int(conflicts),
        n_near_groups=len(near_groups),
        n_in_near_groups=sum(len(g) for g in near_groups),
        n_train=len(train),
        n_val=len(val),
        removed=removed,
    )
    return sorted(train), sorted(val), report
