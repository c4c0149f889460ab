"""Per-image state kept in Redis, in a compact self-describing form.

Each image is one field of the hotel's hash: JSON with the rounded scores, the
area probabilities by name (so a gallery stays readable after the area list of
a model changes), an int8-quantised embedding and the offset that last wrote
it. Deleted images stay as tombstones so that a late, older upsert of the same
image cannot bring it back (the fence).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np
import orjson

# Scores are rounded before storage and ranking, so that a replay that batches
# images differently (float sums differ in the last bits) still produces
# byte-identical gallery documents.
SCORE_DECIMALS = 3


@dataclass(frozen=True)
class Fence:
    """Where the state of one image came from: (partition, offset) of the event."""

    partition: int
    offset: int

    def is_newer_than(self, other: Fence | None) -> bool:
        if other is None:
            return True
        # Offsets only order events of one partition. A hotel moves partitions
        # only when the topic's partition count changes; then the new event wins.
        if other.partition != self.partition:
            return True
        return self.offset > other.offset


@dataclass(frozen=True)
class ImageState:
    image_id: str
    fence: Fence
    event_id: str
    deleted: bool = False
    url: str = ""
    aesthetic: float = 0.0
    aesthetic_dist: tuple[float, ...] = ()
    area_probs: dict[str, float] | None = None
    embedding: np.ndarray | None = None  # float32, L2-normalised
    phash: int | None = None
    model_version: str = ""

    @property
    def area(self) -> str:
        probs = self.area_probs or {"other": 1.0}
        return max(sorted(probs), key=lambda a: probs[a])

    @property
    def area_confidence(self) -> float:
        probs = self.area_probs or {"other": 1.0}
        return probs[self.area]


def quantize_embedding(embedding: np.ndarray) -> str:
    q = np.clip(np.round(np.asarray(embedding, np.float32) * 127.0), -127, 127).astype(np.int8)
    return base64.b64encode(q.tobytes()).decode()


def dequantize_embedding(text: str) -> np.ndarray:
    q = np.frombuffer(base64.b64decode(text), dtype=np.int8).astype(np.float32) / 127.0
    norm = float(np.linalg.norm(q))
    return q / norm if norm > 0 else q


def encode_record(rec: ImageState) -> bytes:
    body: dict[str, object] = {"p": rec.fence.partition, "o": rec.fence.offset, "e": rec.event_id}
    if rec.deleted:
        body["deleted"] = True
        return orjson.dumps(body)
    body.update(
        url=rec.url,
        a=round(float(rec.aesthetic), SCORE_DECIMALS),
        d=[round(float(x), SCORE_DECIMALS) for x in rec.aesthetic_dist],
        ar={k: round(float(v), SCORE_DECIMALS) for k, v in sorted((rec.area_probs or {}).items())},
        m=rec.model_version,
    )
    if rec.embedding is not None:
        body["emb"] = quantize_embedding(rec.embedding)
    if rec.phash is not None:
        body["ph"] = f"{rec.phash:016x}"
    return orjson.dumps(body)


def decode_record(image_id: str, raw: bytes) -> ImageState:
    body = orjson.loads(raw)
    fence = Fence(int(body["p"]), int(body["o"]))
    if body.get("deleted"):
        return ImageState(image_id=image_id, fence=fence, event_id=body.get("e", ""), deleted=True)
    return ImageState(
        image_id=image_id,
        fence=fence,
        event_id=body.get("e", ""),
        url=body["url"],
        aesthetic=float(body["a"]),
        aesthetic_dist=tuple(body.get("d", ())),
        area_probs={k: float(v) for k, v in body.get("ar", {}).items()},
        embedding=dequantize_embedding(body["emb"]) if "emb" in body else None,
        phash=int(body["ph"], 16) if "ph" in body else None,
        model_version=body.get("m", ""),
    )


def normalise_scores(rec: ImageState) -> ImageState:
    """The record as it reads back from Redis (rounded, quantised): rank on this."""
    return decode_record(rec.image_id, encode_record(rec))
