"""Editors' overrides of one hotel: its pins and its hidden images, each fenced.

The change types (``OverrideChange = PinChange | HideChange``) are handed to
the store like image changes (``GalleryStore.apply`` / ``StateWriter.write``).

Kept next to the image records (one compact JSON string per hotel,
``keys.overrides_key``), written in the same Lua script as the gallery, and
fenced like the images (``records.Applied``: event id, ``occurred_at``, offset
per (topic, partition)): the pin list has one fence, every hidden flag its
own. An older or redelivered override therefore changes nothing, and a replay
of the topic into a new namespace rebuilds exactly the same overrides.

Overrides are independent of the images they name: a pin or a hide may arrive
before the image's upload, survive its re-upload, delete and re-upload; the
gallery document applies them to whatever images exist at the time
(``ranking.rank_gallery``: a pinned id with no image is reported, not an error).
Unhidden images keep a ``false`` flag with its fence, so a late redelivered
hide cannot hide them again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from .records import NOTHING, Applied, Fence, source_fence


@dataclass(frozen=True)
class PinChange:
    """gallery.pinned (``replace``: the pins become ``image_ids``) or gallery.unpinned
    (``remove``: ``image_ids`` leave the pins; empty = every pin)."""

    fence: Fence
    event_id: str
    image_ids: tuple[str, ...]
    replace: bool


@dataclass(frozen=True)
class HideChange:
    """image.hidden (``hidden`` True) or image.unhidden (False)."""

    image_id: str
    fence: Fence
    event_id: str
    hidden: bool


@dataclass(frozen=True)
class AreaChange:
    """label.area: a reviewer's area for one photo (docs/labelling.md); the latest label wins."""

    image_id: str
    fence: Fence
    event_id: str
    area: str
    reviewer: str


@dataclass(frozen=True)
class RatingChange:
    """label.rating: one reviewer's 1-10 rating of one photo; each reviewer's latest counts once."""

    image_id: str
    fence: Fence
    event_id: str
    reviewer: str
    rating: int


LabelChange = AreaChange | RatingChange
OverrideChange = PinChange | HideChange | AreaChange | RatingChange


@dataclass(frozen=True)
class AreaLabel:
    area: str
    reviewer: str
    applied: Applied


@dataclass(frozen=True)
class Rating:
    rating: int
    applied: Applied


@dataclass(frozen=True)
class HiddenFlag:
    hidden: bool
    applied: Applied

    @property
    def fence(self) -> Fence:
        return source_fence(self.applied)


@dataclass
class HotelOverrides:
    pinned: tuple[str, ...] = ()
    pins: Applied = NOTHING  # the pin list's fence
    flags: dict[str, HiddenFlag] = field(default_factory=dict)
    # Reviewers' labels: image -> its area label (fenced per image); image -> reviewer -> rating.
    areas: dict[str, AreaLabel] = field(default_factory=dict)
    ratings: dict[str, dict[str, Rating]] = field(default_factory=dict)
    # Changes that lost but were remembered by their event id (they must be stored too).
    refused: int = field(default=0, compare=False)

    @property
    def hidden(self) -> frozenset[str]:
        return frozenset(image_id for image_id, flag in self.flags.items() if flag.hidden)

    @property
    def pins_fence(self) -> Fence | None:
        return source_fence(self.pins) if self.pins.seen else None

    def is_empty(self) -> bool:
        return not self.pins.events and not self.flags and not self.areas and not self.ratings

    def rating_count(self, image_id: str) -> int:
        """How many different reviewers rated the photo."""
        return len(self.ratings.get(image_id, ()))

    def apply(self, change: OverrideChange) -> bool:
        """Apply one change if it is newer than what it overrides; False = stale (no visible effect;
        ``refused`` counts the stale ones whose event id was remembered and must be stored)."""
        if isinstance(change, PinChange):
            if not self.pins.admits(change.fence, change.event_id):
                return self._refuse_pins(change)
            if change.replace:
                pinned = tuple(dict.fromkeys(change.image_ids))
            elif change.image_ids:
                gone = set(change.image_ids)
                pinned = tuple(i for i in self.pinned if i not in gone)
            else:
                pinned = ()
            self.pins = self.pins.after(change.fence, change.event_id)
            self.pinned = pinned
            return True
        if isinstance(change, AreaChange):
            return self._apply_area(change)
        if isinstance(change, RatingChange):
            return self._apply_rating(change)
        previous = self.flags.get(change.image_id)
        applied = previous.applied if previous else NOTHING
        if not applied.admits(change.fence, change.event_id):
            if previous is None or applied.knows(change.event_id):
                return False
            self.flags[change.image_id] = HiddenFlag(previous.hidden, applied.refuse(change.fence, change.event_id))
            self.refused += 1
            return False
        self.flags[change.image_id] = HiddenFlag(change.hidden, applied.after(change.fence, change.event_id))
        return True

    def _apply_area(self, change: AreaChange) -> bool:
        previous = self.areas.get(change.image_id)
        applied = previous.applied if previous else NOTHING
        if applied.admits(change.fence, change.event_id):
            after = applied.after(change.fence, change.event_id)
            self.areas[change.image_id] = AreaLabel(change.area, change.reviewer, after)
            return True
        if previous is not None and not applied.knows(change.event_id):
            refused = applied.refuse(change.fence, change.event_id)
            self.areas[change.image_id] = AreaLabel(previous.area, previous.reviewer, refused)
            self.refused += 1
        return False

    def _apply_rating(self, change: RatingChange) -> bool:
        votes = self.ratings.setdefault(change.image_id, {})
        previous = votes.get(change.reviewer)
        applied = previous.applied if previous else NOTHING
        if applied.admits(change.fence, change.event_id):
            votes[change.reviewer] = Rating(change.rating, applied.after(change.fence, change.event_id))
            return True
        if previous is not None and not applied.knows(change.event_id):
            votes[change.reviewer] = Rating(previous.rating, applied.refuse(change.fence, change.event_id))
            self.refused += 1
        return False

    def _refuse_pins(self, change: PinChange) -> bool:
        if not self.pins.knows(change.event_id):
            self.pins = self.pins.refuse(change.fence, change.event_id)
            self.refused += 1
        return False

    def changed_at(self) -> int:
        """ms: the newest event time of an override change applied."""
        return max(
            [
                self.pins.changed_at,
                *(flag.applied.changed_at for flag in self.flags.values()),
                *(label.applied.changed_at for label in self.areas.values()),
                *(vote.applied.changed_at for votes in self.ratings.values() for vote in votes.values()),
            ]
        )

    def copy(self) -> HotelOverrides:
        ratings = {image_id: dict(votes) for image_id, votes in self.ratings.items()}
        return HotelOverrides(self.pinned, self.pins, dict(self.flags), dict(self.areas), ratings, self.refused)


def _applied_json(applied: Applied) -> dict[str, object]:
    body: dict[str, object] = {
        "s": [list(pair) for pair in applied.seen],
        "d": list(applied.events),
        "e": applied.event_id,
        "c": applied.changed_at,
    }
    if applied.occurred_at is not None:
        body["t"] = applied.occurred_at
    return body


def _applied_of(body: dict) -> Applied:
    if "s" not in body:  # written before event fences: (partition, offset) only
        fence = Fence(int(body["p"]), int(body["o"]))
        return NOTHING.after(fence, body.get("e", ""))
    return Applied(
        body.get("t"),
        tuple((str(s), int(o)) for s, o in body["s"]),
        tuple(int(d) for d in body["d"]),
        body.get("e", ""),
        int(body.get("c", 0)),
    )


def encode_overrides(overrides: HotelOverrides) -> bytes:
    body: dict[str, object] = {}
    if overrides.pins.events:
        body["pins"] = {"ids": list(overrides.pinned), **_applied_json(overrides.pins)}
    if overrides.flags:
        body["hidden"] = {
            image_id: {"h": flag.hidden, **_applied_json(flag.applied)}
            for image_id, flag in sorted(overrides.flags.items())
        }
    if overrides.areas:
        body["areas"] = {
            image_id: {"a": label.area, "r": label.reviewer, **_applied_json(label.applied)}
            for image_id, label in sorted(overrides.areas.items())
        }
    if overrides.ratings:
        body["ratings"] = {
            image_id: {who: {"v": vote.rating, **_applied_json(vote.applied)} for who, vote in sorted(votes.items())}
            for image_id, votes in sorted(overrides.ratings.items())
            if votes
        }
    return orjson.dumps(body)


def decode_overrides(raw: bytes | None) -> HotelOverrides:
    if not raw:
        return HotelOverrides()
    body = orjson.loads(raw)
    out = HotelOverrides()
    pins = body.get("pins")
    if pins is not None:
        out.pinned = tuple(pins["ids"])
        out.pins = _applied_of(pins)
    for image_id, flag in body.get("hidden", {}).items():
        out.flags[image_id] = HiddenFlag(bool(flag["h"]), _applied_of(flag))
    for image_id, label in body.get("areas", {}).items():
        out.areas[image_id] = AreaLabel(str(label["a"]), str(label["r"]), _applied_of(label))
    for image_id, votes in body.get("ratings", {}).items():
        out.ratings[image_id] = {who: Rating(int(v["v"]), _applied_of(v)) for who, v in votes.items()}
    return out
