"""Redis key names. The first two are the website's read contract (docs/architecture.md);
the rest are internal. Every per-hotel key carries the `{hotel_id}` hash tag so
one hotel's keys share a Redis Cluster slot and can change in one script."""

from __future__ import annotations

ACTIVE_KEY = "galleryrank:active"
DEFAULT_NAMESPACE = "live"
# First segments of the keys that belong to no namespace (below): no namespace may be named
# so (state/namespace.py), or it would mix with them and `drop` would delete them.
GLOBAL_SEGMENTS = frozenset({"active", "promoting", "handover", "dlq-sent", "reviewers", "labels", "review"})
# A promote asked for but not done yet: the live consumers catch this namespace up,
# then ACTIVE_KEY is set to it (consumer/bluegreen/namespaces.py, handover.py).
PROMOTING_KEY = "galleryrank:promoting"


def handover_key(group_id: str) -> str:
    """Hash `<topic>:<partition>` -> namespace the group's committed offset of that partition belongs to."""
    return f"galleryrank:handover:{group_id}"


def gallery_key(namespace: str, hotel_id: str) -> str:
    return f"galleryrank:{namespace}:gallery:{{{hotel_id}}}"


def images_key(namespace: str, hotel_id: str) -> str:
    """Hash image_id -> per-image state (scores, area probabilities, embedding, fence)."""
    return f"galleryrank:{namespace}:images:{{{hotel_id}}}"


def version_key(namespace: str, hotel_id: str) -> str:
    """Counter bumped on every write of the hotel: optimistic-concurrency check."""
    return f"galleryrank:{namespace}:version:{{{hotel_id}}}"


def overrides_key(namespace: str, hotel_id: str) -> str:
    """Editors' pins and hidden images of the hotel, with their fences (state/overrides.py)."""
    return f"galleryrank:{namespace}:overrides:{{{hotel_id}}}"


def hotels_key(namespace: str) -> str:
    """Set of hotel ids in a namespace (an index for rerank/namespaces; not atomic with the hotel)."""
    return f"galleryrank:{namespace}:hotels"


def meta_key(namespace: str) -> str:
    """Hash describing a namespace: model_version, checkpoint, created_at, replay end offsets."""
    return f"galleryrank:{namespace}:meta"


def namespace_pattern(namespace: str) -> str:
    return f"galleryrank:{namespace}:*"


def namespace_marker_patterns() -> tuple[str, ...]:
    """SCAN patterns of the keys whose presence makes a namespace exist: its meta hash, its hotel index."""
    return meta_key("*"), hotels_key("*")


def namespace_of(key: str) -> str:
    """The namespace part of a per-namespace key (``galleryrank:<ns>:...``; names hold no colon)."""
    return key.split(":", 2)[1]


def dlq_marker_key(group_id: str, topic: str, partition: int, offset: int) -> str:
    """String "this source record is already in the DLQ" (stream/dlq_dedupe.py), with a TTL."""
    return f"galleryrank:dlq-sent:{group_id}:{topic}:{partition}:{offset}"


def dlq_marker_pattern(group_id: str) -> str:
    """All DLQ markers of one consumer group (tests and operators clean up with SCAN on it)."""
    return f"galleryrank:dlq-sent:{group_id}:*"


# --- reviewers and labels (docs/labelling.md); not per namespace: people and labels outlive models ---
# Hash reviewer id -> JSON {role, salt, hash (scrypt of the token's secret), created_at, revoked_at}.
REVIEWERS_KEY = "galleryrank:reviewers"
# Sorted set "<hotel_id> <image_id>" -> suspicion in [0, 1] (`galleryrank labels suspects` writes it,
# the review queue reads it first).
LABEL_SUSPECTS_KEY = "galleryrank:labels:suspects"


def review_seen_key(reviewer: str) -> str:
    """Set of "<hotel_id> <image_id>" the review queue has shown this reviewer (never shown twice)."""
    return f"galleryrank:review:seen:{reviewer}"
