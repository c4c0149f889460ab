"""What the state layer stores and what it is handed: image changes, fences, records.

The interface for the rest of the service (the scorer hands changes to
``StateWriter.write(hotel_id, change)``; ``GalleryStore.apply`` takes
``(hotel_id, change)`` pairs). A change is a small tagged union:

- ``ImageChange`` with ``deleted=False``: an ``image.upserted`` event, scored;
- ``ImageChange`` with ``deleted=True``: an ``image.deleted`` event (a tombstone);
- ``overrides.PinChange`` / ``overrides.HideChange``: an editor's override.

Every change carries a ``Fence``: where and when its event happened (topic,
partition, offset, parsed ``occurred_at``, Kafka record timestamp);
``Fence.of(record, occurred_at)`` builds it from an aiokafka record.

``Applied`` is what was applied so far to one fenced item (an image, the
hotel's pin list, the hidden flag of one image); ``Applied.admits`` is the one
definition of "newer" (docs/architecture.md, "Fencing"):

1. an event whose ``event_id`` was already applied to the item is a
   re-delivery: skipped (the last ``MAX_EVENT_IDS`` ids per item are kept);
2. if the event and the item both carry ``occurred_at`` and they differ, the
   later ``occurred_at`` wins (the item keeps the latest ``occurred_at`` ever
   applied, so an older event never comes back through rule 3);
3. otherwise the event wins iff its offset is greater than every offset of its
   own (topic, partition) already applied to the item; an event from a
   (topic, partition) the item never saw wins: it is the newest arrival (the
   store applies one hotel's changes in arrival order).

Once an event lost (or was applied) it loses forever: nothing above moves
backwards, and an event that loses is remembered too (``Applied.refuse``). So
redeliveries, crash-redos, rebalances, topic switches and partition changes
can neither resurrect a deleted image nor bring back an older URL. A producer
retry (the same event_id at a new offset) is recognised while its id is among
the item's last ``MAX_EVENT_IDS``.

Stored form (``images:{h}`` hash, image_id -> ``encode_record``): fixed-layout
binary, first byte ``0xA1``; records written before it (JSON, first byte ``{``)
still decode.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field, replace

import numpy as np
import orjson

from .. import times
from ..failures import EventFault
from ..ids import MAX_ID_BYTES
from ..interfaces import KafkaRecord

# Scores are rounded to 1/1000 before storage and ranking, so that a replay that
# batches images differently (float sums differ in the last bits) still produces
# byte-identical gallery documents.
SCORE_DECIMALS = 3
_MILLI = 10**SCORE_DECIMALS
# Per fenced item: the last event ids applied (a producer retry re-sends one, with
# a new offset, usually within seconds) and the (topic, partition)s seen (more than
# one only after partition-count changes or topic switches).
MAX_EVENT_IDS = 8
MAX_SOURCES = 8


def parse_occurred_at(text: str | None) -> int | None:
    """An event's ``occurred_at`` as microseconds since the epoch; None when absent or not ISO-8601
    (a naive time counts as UTC). Such an event is ordered as one without ``occurred_at``.
    The one parser is consumer/times.py."""
    return times.parse_iso_us(text)


def event_digest(event_id: str) -> int:
    """64 bits of an event id: what a record keeps to recognise a re-delivery."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little")


@dataclass(frozen=True)
class Fence:
    """Where and when one event happened: the input of ``Applied.admits``."""

    partition: int
    offset: int
    topic: str = ""
    occurred_at: int | None = None  # microseconds since the epoch, from the event's occurred_at
    timestamp: int = -1  # the Kafka record's timestamp, ms since the epoch; -1 = unknown

    @classmethod
    def of(cls, record: KafkaRecord, occurred_at: str | None, max_skew_s: float = times.DEFAULT_MAX_SKEW_S) -> Fence:
        """The fence of an aiokafka ConsumerRecord carrying an event with this ``occurred_at``.

        Bounded here, where the times are parsed (consumer/times.py): an unbelievable record
        timestamp counts as unknown; an ``occurred_at`` more than ``max_skew_s`` ahead of the
        record's timestamp (else of now) raises EventFault ``occurred_at_in_future`` -- a broken
        producer clock would otherwise freeze the image (every later event would lose to it)."""
        ts = times.record_timestamp_ms(record.timestamp, max_skew_s)
        occurred = parse_occurred_at(occurred_at)
        ahead = times.future_by_s(occurred, ts, max_skew_s)
        if ahead > 0:
            raise EventFault(
                "occurred_at_in_future",
                f"occurred_at {str(occurred_at)[:40]!r} is {ahead + max_skew_s:.0f} s ahead of "
                f"{'the record timestamp' if ts >= 0 else 'now'} (allowed: {max_skew_s:g} s)",
            )
        return cls(record.partition, record.offset, record.topic, occurred, ts)

    @property
    def source(self) -> str:
        return f"{self.topic}/{self.partition}"

    @property
    def event_time_ms(self) -> int:
        """occurred_at, else the record timestamp, else 0: what ``updated_at`` is made of."""
        if self.occurred_at is not None:
            return self.occurred_at // 1000
        return max(self.timestamp, 0)


@dataclass(frozen=True)
class Applied:
    """What was applied so far to one fenced item (see the module docstring for the rules)."""

    occurred_at: int | None = None  # the latest occurred_at (µs) ever applied
    seen: tuple[tuple[str, int], ...] = ()  # (source, highest offset applied), most recent source first
    events: tuple[int, ...] = ()  # event_digest of the last MAX_EVENT_IDS events applied, newest first
    event_id: str = ""  # the last event applied (for people reading Redis)
    changed_at: int = 0  # ms: the newest event time applied to the item (the document's updated_at)

    def admits(self, fence: Fence, event_id: str) -> bool:
        if event_digest(event_id) in self.events:
            return False  # a re-delivery (same event_id, any offset)
        if fence.occurred_at is not None and self.occurred_at is not None and fence.occurred_at != self.occurred_at:
            return fence.occurred_at > self.occurred_at
        for source, offset in self.seen:
            if source == fence.source:
                return fence.offset > offset
        return True  # first event of its (topic, partition) for this item: the newest arrival

    def after(self, fence: Fence, event_id: str) -> Applied:
        """The state once the event is applied."""
        previous = dict(self.seen)
        offset = max(fence.offset, previous.pop(fence.source, -1))
        seen = ((fence.source, offset), *((s, o) for s, o in self.seen if s != fence.source))[:MAX_SOURCES]
        return Applied(
            self._latest(fence), seen, self._with(event_id), event_id, max(self.changed_at, fence.event_time_ms)
        )

    def knows(self, event_id: str) -> bool:
        return event_digest(event_id) in self.events

    def refuse(self, fence: Fence, event_id: str) -> Applied:
        """The state once an event that lost (rules 2, 3) is remembered: its id, so a producer
        retry of it at a later offset loses by rule 1, and its occurred_at, so that it cannot
        win by rule 2 later (when it lost to an event without occurred_at, by offset)."""
        return replace(self, occurred_at=self._latest(fence), events=self._with(event_id))

    def _latest(self, fence: Fence) -> int | None:
        if fence.occurred_at is not None and (self.occurred_at is None or fence.occurred_at > self.occurred_at):
            return fence.occurred_at
        return self.occurred_at

    def _with(self, event_id: str) -> tuple[int, ...]:
        digest = event_digest(event_id)
        return (digest, *(d for d in self.events if d != digest))[:MAX_EVENT_IDS]


NOTHING = Applied()  # the state of an item no event touched yet


@dataclass(frozen=True)
class _Image:
    """What an image change and an image's record both carry: the image's scores and the fence of
    its (last applied) event."""

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


@dataclass(frozen=True)
class ImageChange(_Image):
    """An incoming image change, handed to the state layer: an upsert (scored) or a delete."""


@dataclass(frozen=True)
class ImageRecord(_Image):
    """An image as Redis stores it, read back: its last applied event's data (scores rounded,
    embedding quantised) and what was applied to it so far (``applied``: the fence history)."""

    applied: Applied = field(default=NOTHING, compare=False)


# --- embeddings ---------------------------------------------------------------------------------
def quantize(embedding: np.ndarray) -> np.ndarray:
    """float -> int8 (scale 127): 1 byte per dimension; cosine keeps 2-3 decimals."""
    return np.clip(np.round(np.asarray(embedding, np.float32) * 127.0), -127, 127).astype(np.int8)


def dequantize(q: np.ndarray) -> np.ndarray:
    v = np.asarray(q, dtype=np.int8).astype(np.float32) / 127.0
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def _milli(value: float) -> int:
    """Thousandths, inside int32: a NaN or infinite score from a broken model must not raise here."""
    value = float(value)
    if value != value:  # NaN
        return 0
    return min(max(round(min(max(value, -2e6), 2e6) * _MILLI), -(2**31)), 2**31 - 1)


# --- the binary record ----------------------------------------------------------------------------
_IMAGE_MAGIC = 0xA1
_PINS_MAGIC = 0xA2
_FLAG_MAGIC = 0xA3
_DELETED, _HAS_EMB, _HAS_PHASH, _HAS_OCCURRED, _HIDDEN_FLAG = 1, 2, 4, 8, 16
_Q = struct.Struct("<q")
_QQ = struct.Struct("<Q")
_I = struct.Struct("<i")
_H = struct.Struct("<H")


def _short(text: str) -> bytes:
    # Ids are at most MAX_ID_BYTES (consumer/ids.py), so an event id always fits this length byte.
    raw = text.encode()
    if len(raw) > MAX_ID_BYTES:
        raise ValueError(f"{text[:40]!r}... is longer than {MAX_ID_BYTES} bytes")
    return bytes((len(raw),)) + raw


def _encode_applied(out: bytearray, applied: Applied) -> None:
    if applied.occurred_at is not None:
        out += _Q.pack(applied.occurred_at)
    out += _Q.pack(applied.changed_at)
    out.append(len(applied.seen))
    for source, offset in applied.seen:
        out += _short(source)
        out += _Q.pack(offset)
    out.append(len(applied.events))
    for digest in applied.events:
        out += _QQ.pack(digest)
    out += _short(applied.event_id)


class _Reader:
    __slots__ = ("raw", "pos")

    def __init__(self, raw: bytes, pos: int = 0):
        self.raw, self.pos = raw, pos

    def byte(self) -> int:
        self.pos += 1
        return self.raw[self.pos - 1]

    def unpack(self, fmt: struct.Struct):
        (value,) = fmt.unpack_from(self.raw, self.pos)
        self.pos += fmt.size
        return value

    def text(self, length: int) -> str:
        self.pos += length
        return self.raw[self.pos - length : self.pos].decode()

    def short(self) -> str:
        return self.text(self.byte())

    def applied(self, has_occurred: bool) -> Applied:
        occurred = self.unpack(_Q) if has_occurred else None
        changed = self.unpack(_Q)
        seen = tuple((self.short(), self.unpack(_Q)) for _ in range(self.byte()))
        events = tuple(self.unpack(_QQ) for _ in range(self.byte()))
        return Applied(occurred, seen, events, self.short(), changed)


def source_fence(applied: Applied) -> Fence:
    """An informative Fence for a record read back: the most recent source and its highest offset."""
    if not applied.seen:
        return Fence(-1, -1)
    source, offset = applied.seen[0]
    topic, _, partition = source.rpartition("/")
    return Fence(int(partition) if partition.lstrip("-").isdigit() else -1, offset, topic, applied.occurred_at)


def encode_record(rec: ImageChange | ImageRecord, applied: Applied | None = None, q: np.ndarray | None = None) -> bytes:
    """The stored form of an image: fence history + rounded scores, area probabilities by name,
    int8 embedding, pHash (~350 bytes at a 128-d embedding, 9 areas)."""
    if applied is None:  # a record keeps its history; a change starts one
        applied = rec.applied if isinstance(rec, ImageRecord) else NOTHING.after(rec.fence, rec.event_id)
    flags = _DELETED if rec.deleted else 0
    if applied.occurred_at is not None:
        flags |= _HAS_OCCURRED
    if q is None and rec.embedding is not None:
        q = quantize(rec.embedding)
    if not rec.deleted:
        if q is not None:
            flags |= _HAS_EMB
        if rec.phash is not None:
            flags |= _HAS_PHASH
    out = bytearray((_IMAGE_MAGIC, flags))
    _encode_applied(out, applied)
    if rec.deleted:
        return bytes(out)
    out += _short(rec.model_version)
    url = rec.url.encode()
    out += _H.pack(len(url)) + url
    out += _I.pack(_milli(rec.aesthetic))
    out.append(len(rec.aesthetic_dist))
    for x in rec.aesthetic_dist:
        out += _H.pack(min(max(_milli(x), 0), 65535))
    probs = sorted((rec.area_probs or {}).items())
    out.append(len(probs))
    for name, p in probs:
        out += _short(name)
        out += _H.pack(min(max(_milli(p), 0), 65535))
    if q is not None:
        out += _H.pack(q.size) + np.asarray(q, dtype=np.int8).tobytes()
    if rec.phash is not None:
        out += _QQ.pack(int(rec.phash) & 0xFFFFFFFFFFFFFFFF)
    return bytes(out)


def with_applied(image_id: str, raw: bytes, applied: Applied) -> bytes:
    """A stored record with its fence replaced, the rest byte for byte (legacy JSON: re-encoded)."""
    if raw[:1] == b"{":
        rec, q = decode_stored(image_id, raw)
        return encode_record(rec, applied, q)
    r = _Reader(raw)
    r.byte()
    flags = r.byte()
    r.applied(bool(flags & _HAS_OCCURRED))
    flags = (flags & ~_HAS_OCCURRED) | (_HAS_OCCURRED if applied.occurred_at is not None else 0)
    out = bytearray((_IMAGE_MAGIC, flags))
    _encode_applied(out, applied)
    return bytes(out) + raw[r.pos :]


def decode_record(image_id: str, raw: bytes) -> ImageRecord:
    rec, q = decode_stored(image_id, raw)
    return rec if q is None else replace(rec, embedding=dequantize(q))


def decode_stored(image_id: str, raw: bytes) -> tuple[ImageRecord, np.ndarray | None]:
    """The record without its embedding, and the embedding as stored (int8), or None."""
    if raw[:1] == b"{":
        return _decode_legacy(image_id, raw)
    r = _Reader(raw)
    if r.byte() != _IMAGE_MAGIC:
        raise ValueError(f"image record of {image_id!r}: unknown format byte {raw[0]:#x}")
    flags = r.byte()
    applied = r.applied(bool(flags & _HAS_OCCURRED))
    fence = source_fence(applied)
    if flags & _DELETED:
        return ImageRecord(image_id, fence, applied.event_id, deleted=True, applied=applied), None
    model_version = r.short()
    url = r.text(r.unpack(_H))
    aesthetic = r.unpack(_I) / _MILLI
    dist = tuple(r.unpack(_H) / _MILLI for _ in range(r.byte()))
    probs = {}
    for _ in range(r.byte()):
        name = r.short()
        probs[name] = r.unpack(_H) / _MILLI
    q = None
    if flags & _HAS_EMB:
        dim = r.unpack(_H)
        q = np.frombuffer(raw, dtype=np.int8, count=dim, offset=r.pos)
        r.pos += dim
    phash = r.unpack(_QQ) if flags & _HAS_PHASH else None
    rec = ImageRecord(
        image_id,
        fence,
        applied.event_id,
        url=url,
        aesthetic=aesthetic,
        aesthetic_dist=dist,
        area_probs=probs,
        phash=phash,
        model_version=model_version,
        applied=applied,
    )
    return rec, q


def _decode_legacy(image_id: str, raw: bytes) -> tuple[ImageRecord, np.ndarray | None]:
    """Records written before the binary format (JSON, fenced by partition and offset only).

    Their topic is unknown: the source is "/<partition>", so the first event of
    the live topic for such an image is decided by rule 1 (event id) and
    occurred_at, not by offset."""
    import base64

    body = orjson.loads(raw)
    fence = Fence(int(body["p"]), int(body["o"]))
    event_id = body.get("e", "")
    applied = Applied(None, ((fence.source, fence.offset),), (event_digest(event_id),) if event_id else (), event_id)
    if body.get("deleted"):
        return ImageRecord(image_id, fence, event_id, deleted=True, applied=applied), None
    q = np.frombuffer(base64.b64decode(body["emb"]), dtype=np.int8) if "emb" in body else None
    rec = ImageRecord(
        image_id,
        fence,
        event_id,
        url=body["url"],
        aesthetic=float(body["a"]),
        aesthetic_dist=tuple(body.get("d", ())),
        area_probs={k: float(v) for k, v in body.get("ar", {}).items()},
        phash=int(body["ph"], 16) if "ph" in body else None,
        model_version=body.get("m", ""),
        applied=applied,
    )
    return rec, q
