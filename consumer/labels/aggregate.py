"""Per-photo aggregation of label events (pure: no I/O).

Each reviewer has one vote per photo and kind: their latest event (by ``occurred_at``, then
offset order) replaces their earlier ones, so a reviewer who corrects themself counts once.
Areas: the majority area with its agreement (share of reviewers), a tie is a conflict with
no area. Ratings: NIMA's form, a histogram of the reviewers' 1-10 votes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..stream.events import NOT_PROPERTY, LabelArea, LabelEvent, LabelRating

PhotoKey = tuple[str, str]  # (hotel_id, image_id)


@dataclass
class PhotoLabels:
    hotel_id: str
    image_id: str
    url: str = ""
    area_votes: dict[str, str] = field(default_factory=dict)  # reviewer -> area
    rating_votes: dict[str, int] = field(default_factory=dict)  # reviewer -> 1..10
    model_versions: set[str] = field(default_factory=set)
    _seen_at: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, reviewer) -> occurred_at
    _url_at: str = ""

    @property
    def key(self) -> PhotoKey:
        return (self.hotel_id, self.image_id)

    def area(self) -> tuple[str | None, float]:
        """(majority area or None on a tie / no vote, agreement = its share of the area votes)."""
        if not self.area_votes:
            return None, 0.0
        counts = Counter(self.area_votes.values()).most_common()
        top, n = counts[0]
        if len(counts) > 1 and counts[1][1] == n:
            return None, n / len(self.area_votes)
        return top, n / len(self.area_votes)

    def area_conflict(self) -> bool:
        return len(set(self.area_votes.values())) > 1

    def histogram(self) -> list[int]:
        """Vote counts for ratings 1..10 (NIMA's ten bins)."""
        h = [0] * 10
        for r in self.rating_votes.values():
            h[r - 1] += 1
        return h

    def as_dict(self) -> dict[str, Any]:
        area, agreement = self.area()
        return {
            "hotel_id": self.hotel_id,
            "image_id": self.image_id,
            "url": self.url,
            "area": area,
            "area_agreement": round(agreement, 4),
            "area_votes": dict(Counter(self.area_votes.values())),
            "area_conflict": self.area_conflict(),
            "ratings": self.histogram(),
            "raters": sorted(set(self.area_votes) | set(self.rating_votes)),
            "model_versions": sorted(self.model_versions),
        }


def _newer(at: str | None, seen: str | None) -> bool:
    # ISO-8601 strings from one writer (the write API stamps them) compare in time order;
    # an event without a time is taken as later than what came before it in the log
    return seen is None or at is None or at >= seen


def aggregate(events: list[LabelEvent]) -> dict[PhotoKey, PhotoLabels]:
    """Photos -> their aggregated labels; duplicate event_ids count once (at-least-once delivery)."""
    photos: dict[PhotoKey, PhotoLabels] = {}
    seen_ids: set[str] = set()
    for ev in events:
        if ev.event_id in seen_ids:
            continue
        seen_ids.add(ev.event_id)
        p = photos.get((ev.hotel_id, ev.image_id))
        if p is None:
            p = photos[(ev.hotel_id, ev.image_id)] = PhotoLabels(ev.hotel_id, ev.image_id)
        at = ev.occurred_at or ""
        if _newer(ev.occurred_at, p._url_at or None):
            p.url, p._url_at = ev.url, at
        p.model_versions.add(ev.model_version)
        kind = "area" if isinstance(ev, LabelArea) else "rating"
        slot = (kind, ev.reviewer)
        if not _newer(ev.occurred_at, p._seen_at.get(slot)):
            continue
        p._seen_at[slot] = at
        if isinstance(ev, LabelArea):
            p.area_votes[ev.reviewer] = ev.area
        elif isinstance(ev, LabelRating):
            p.rating_votes[ev.reviewer] = ev.rating
    return photos


def summary(photos: dict[PhotoKey, PhotoLabels]) -> dict[str, Any]:
    """Counts for the manifest: photos, raters, agreement, conflicts."""
    labelled = [p for p in photos.values() if p.area_votes]
    agreements = [p.area()[1] for p in labelled]
    raters = Counter(r for p in photos.values() for r in set(p.area_votes) | set(p.rating_votes))
    return {
        "photos": len(photos),
        "photos_with_area": len(labelled),
        "photos_with_rating": sum(1 for p in photos.values() if p.rating_votes),
        "area_votes": sum(len(p.area_votes) for p in photos.values()),
        "rating_votes": sum(len(p.rating_votes) for p in photos.values()),
        "raters": len(raters),
        "labels_per_rater": dict(sorted(raters.items())),
        "mean_area_agreement": round(sum(agreements) / len(agreements), 4) if agreements else None,
        "area_conflicts": sum(1 for p in labelled if p.area_conflict()),
        "area_ties": sum(1 for p in labelled if p.area()[0] is None),
        "not_property": sum(1 for p in labelled if p.area()[0] == NOT_PROPERTY),
    }
