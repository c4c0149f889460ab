"""One hotel's state in memory: decoded once, changed in place, ranked from arrays.

A ``HotelState`` is what ``GalleryStore`` keeps for each hotel of the
partitions this process owns. It holds exactly what Redis holds, decoded:

- every image ever seen, live or deleted, with its fence (``records.Applied``);
- the live images as columns (aesthetic, area probabilities, int8 embedding,
  pHash, the image's entry of the gallery document pre-serialised), so a
  re-rank needs no per-image Python work but one dict lookup;
- the near-duplicate edges between live images (``ranking.duplicates``),
  updated one image at a time: O(N) per change instead of O(N^2);
- the editors' overrides (``overrides.HotelOverrides``: pins, hidden flags);
- the Redis version counter and gallery document it corresponds to.

``apply`` decides one change against the fences and, when it is newer,
changes the state and returns what Redis must store for it; ``render`` ranks
the hotel and has ``document.py`` serialise the gallery document. Everything a change does is derived from the stored
form of its record (encode, then decode), so a state rebuilt from Redis
(``from_redis``) equals the state that wrote it, and renders the same bytes.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from galleryrank.ranking.duplicates import DuplicateGraph, components_and_links, int8_close
from galleryrank.ranking.editorial import rank_prepared
from galleryrank.ranking.gallery import ordered_gallery
from galleryrank.ranking.types import RankingConfig

from .. import times
from ..failures import EventFault
from .document import image_entry, render_document
from .overrides import AreaChange, HideChange, HotelOverrides, OverrideChange, decode_overrides, encode_overrides
from .records import NOTHING, Applied, ImageChange, ImageRecord, decode_stored, encode_record, with_applied

log = logging.getLogger(__name__)

_HASH_MASK = (1 << 64) - 1
# Hidden flags a hotel keeps for images it has never seen (an editor may hide before the upload);
# past this a hide of yet another unknown image is dead-lettered, so a flood of hides of made-up
# ids costs what the same number of deletes costs (issue 20).
MAX_UNSEEN_FLAGS = 1000
_DEFAULT_PROBS = {"other": 1.0}
# A reviewer's area label (docs/labelling.md): the photo is ranked as this area, the model's
# area is kept beside it, and its reason says so.
NOT_PROPERTY = "not_property"  # stream/events.py's NOT_PROPERTY (state does not import stream)
AREA_SET = "area set by an editor"
NOT_PROPERTY_REASON = "not a photo of the property (area set by an editor)"


iso_ms = times.iso_ms  # any integer formats (clamped to years 1-9999): rendering never raises on a time


@dataclass(frozen=True)
class ChangeOutcome:
    """What one change did: ``applied`` (it was newer), and what Redis must store for it."""

    applied: bool
    record: bytes | None = None  # the image's record (applied, or a refused event remembered)
    overrides: bool = False  # the overrides changed
    rejected: EventFault | None = None  # the event's fault: dead-lettered with this reason, nothing stored


def _canonical_key(image_id: str, aesthetic: float) -> tuple[float, str]:
    # Best first, then image_id; non-finite scores last (ranking.gallery's canonical order).
    return (-aesthetic if math.isfinite(aesthetic) else math.inf, image_id)


class HotelState:
    """The decoded state of one hotel (see the module docstring)."""

    def __init__(self, hotel_id: str, config: RankingConfig):
        self.hotel_id = hotel_id
        self.config = config
        self.version = b""  # Redis version counter this state matches ("" = the hotel is new)
        self.document: bytes | None = None  # the gallery document stored in Redis
        self.overrides = HotelOverrides()
        self._missing_logged: list[str] = []  # pinned ids without a photo, as last logged
        self.applied: dict[str, Applied] = {}  # every image ever seen: live and deleted
        self.raw: dict[str, bytes] = {}  # their records as stored
        self.updated_ms = 0  # the newest event time applied (updated_at)
        self.sources: set[tuple[str, int]] = set()  # (topic, partition)s whose events came here (revoke)
        # Live images, one row each; rows are reused, their order means nothing.
        self.row: dict[str, int] = {}
        self._ids: list[str] = []  # "" for a free row
        self._free: list[int] = []
        self._entries: list[bytes] = []
        self._models: list[str] = []
        self._model_counts: Counter[str] = Counter()
        self._row_areas: list[tuple[int, ...]] = []
        self._keys: list[tuple[float, str]] = []  # canonical keys of live images, sorted
        self._sorted_rows: list[int] = []  # their rows, in the same order
        self.areas: list[str] = []  # area names ever seen -> column
        self._area_col: dict[str, int] = {}
        self._area_live = np.zeros(0, dtype=np.int64)  # live images per column
        self.dim: int | None = None  # embedding dimension (the first one seen)
        self._aesthetic = np.zeros(0, dtype=np.float64)
        self._probs = np.zeros((0, 0), dtype=np.float32)
        self._q = np.zeros((0, 0), dtype=np.int8)  # the stored int8 embeddings (float32 only while compared)
        self._norm2 = np.zeros(0, dtype=np.float64)
        self._has_q = np.zeros(0, dtype=bool)
        self._phash = np.zeros(0, dtype=np.uint64)
        self._has_phash = np.zeros(0, dtype=bool)
        self.graph = DuplicateGraph()
        self._seen_count: tuple[tuple[int, int], int] = ((-1, -1), 0)

    # --- size --------------------------------------------------------------------------------
    @property
    def weight(self) -> int:
        """What the cache bound counts: images held (live and deleted) and hidden flags."""
        return max(1, len(self.applied) + len(self.overrides.flags))

    # --- loading -------------------------------------------------------------------------------
    @classmethod
    def from_redis(
        cls,
        hotel_id: str,
        config: RankingConfig,
        fields: dict[bytes, bytes],
        overrides: bytes | None,
        version: bytes | None,
        document: bytes | None,
    ) -> HotelState:
        """The state as Redis holds it: image hash, overrides, version counter, document."""
        state = cls(hotel_id, config)
        state.version = version or b""
        state.document = document
        state.overrides = decode_overrides(overrides)
        state.updated_ms = state.overrides.changed_at()
        for key, raw in sorted(fields.items()):
            image_id = key.decode()
            rec, q = decode_stored(image_id, raw)
            applied = rec.applied
            state.updated_ms = max(state.updated_ms, applied.changed_at)
            state.applied[image_id] = applied
            state.raw[image_id] = raw
            if not rec.deleted:
                state._insert(rec, q, link=False)
        state._link_all()
        return state

    @classmethod
    def from_records(
        cls, hotel_id: str, records, config: RankingConfig, overrides: HotelOverrides | None = None
    ) -> HotelState:
        """A state holding ``records`` as they would read back from Redis (tools and tests)."""
        fields = {r.image_id.encode(): encode_record(r) for r in records}
        raw = encode_overrides(overrides) if overrides is not None else None
        return cls.from_redis(hotel_id, config, fields, raw, None, None)

    def _link_all(self) -> None:
        if not self.config.suppress_duplicates:
            return
        rows = np.array(sorted(self.row.values()), dtype=np.int64)
        if rows.size < 2:
            return
        self._link_rows(rows)

    def _link_rows(self, rows: np.ndarray) -> None:
        """Link these live rows among themselves: the components of their near-duplicate relation,
        block by block, with a sparse set of edges (ranking.duplicates.components_and_links), so a
        hotel of 2,000 identical photos costs O(N x MAX_LINKS) memory, not O(N^2)."""
        q = self._q[rows].astype(np.float32)
        norm2, has_q = self._norm2[rows], self._has_q[rows]
        phash, has_phash = self._phash[rows], self._has_phash[rows]
        cosine, hamming = self.config.duplicate_cosine, self.config.duplicate_hamming

        def close(start: int, stop: int) -> np.ndarray:
            out = np.zeros((stop - start, rows.size), dtype=bool)
            if has_q[start:stop].any():
                out |= int8_close(q[start:stop], norm2[start:stop], q, norm2, cosine)
                out &= has_q[start:stop, None] & has_q[None, :]
            if has_phash[start:stop].any():
                near = np.bitwise_count(phash[start:stop, None] ^ phash[None, :]) <= hamming
                out |= near & has_phash[start:stop, None] & has_phash[None, :]
            return out

        _, edges = components_and_links(int(rows.size), close)
        ids = [self._ids[r] for r in rows.tolist()]
        self.graph.add_edges([(ids[i], ids[j]) for i, j in edges])

    def _seen_flags(self) -> int:
        """Hidden flags of images this hotel has a record of (the others are bounded)."""
        if len(self.overrides.flags) < MAX_UNSEEN_FLAGS:
            return 0  # under the bound whatever they are: no need to count
        key = (len(self.overrides.flags), len(self.applied))
        if self._seen_count[0] != key:  # recounted only when flags or images were added
            self._seen_count = (key, sum(1 for image_id in self.overrides.flags if image_id in self.applied))
        return self._seen_count[1]

    # --- changes -----------------------------------------------------------------------------
    def apply(self, change: ImageChange | OverrideChange) -> ChangeOutcome:
        """Decide one change against the fences; when newer, apply it. Returns what Redis must store."""
        self.sources.add((change.fence.topic, change.fence.partition))
        if isinstance(change, ImageChange):
            return self._apply_image(change)
        return self._apply_override(change)

    def _apply_override(self, change: OverrideChange) -> ChangeOutcome:
        if (
            isinstance(change, HideChange)
            and change.image_id not in self.applied
            and change.image_id not in self.overrides.flags
            and len(self.overrides.flags) - self._seen_flags() >= MAX_UNSEEN_FLAGS
        ):
            return ChangeOutcome(
                False,
                rejected=EventFault(
                    "too_many_unknown_overrides",
                    f"hotel already holds {MAX_UNSEEN_FLAGS} hidden flags for images it has never seen",
                ),
            )
        refused = self.overrides.refused
        if self.overrides.apply(change):
            # The applied item's changed_at is its fence's event time at most: no scan of every flag.
            self.updated_ms = max(self.updated_ms, change.fence.event_time_ms)
            if isinstance(change, AreaChange) and change.image_id in self.row:
                # The row is rebuilt from its stored record under the new label (no rescore).
                self._remove(change.image_id)
                rec, q = decode_stored(change.image_id, self.raw[change.image_id])
                self._insert(rec, q, link=True)
            return ChangeOutcome(True, overrides=True)
        return ChangeOutcome(False, overrides=self.overrides.refused != refused)

    def _apply_image(self, change: ImageChange) -> ChangeOutcome:
        image_id = change.image_id
        previous = self.applied.get(image_id, NOTHING)
        if not previous.admits(change.fence, change.event_id):
            if previous.knows(change.event_id):
                return ChangeOutcome(False)  # a re-delivery
            # It lost (older), and a producer retry of it would come at a later offset:
            # remember its id in the record, so the retry loses too.
            applied = previous.refuse(change.fence, change.event_id)
            self.applied[image_id] = applied
            self.raw[image_id] = with_applied(image_id, self.raw[image_id], applied)
            return ChangeOutcome(False, self.raw[image_id])
        applied = previous.after(change.fence, change.event_id)
        raw = encode_record(change, applied)
        if image_id in self.row:
            self._remove(image_id)
        if not change.deleted:
            rec, q = decode_stored(image_id, raw)  # decide on the record as it reads back (rounded, int8)
            self._insert(rec, q, link=True)
        self.applied[image_id] = applied
        self.raw[image_id] = raw
        self.updated_ms = max(self.updated_ms, applied.changed_at)
        return ChangeOutcome(True, raw)

    # --- the columns -----------------------------------------------------------------------
    def _grow(self, need_areas: int, dim: int) -> None:
        cap = len(self._aesthetic)
        rows_needed = len(self._ids) + (0 if self._free else 1)
        new_cap = cap if rows_needed <= cap else max(8, 2 * cap)
        new_areas = max(need_areas, self._probs.shape[1])
        new_dim = max(dim, self._q.shape[1])
        if new_cap == cap and new_areas == self._probs.shape[1] and new_dim == self._q.shape[1]:
            return

        def grown(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
            out = np.zeros(shape, dtype=a.dtype)
            out[tuple(slice(0, s) for s in a.shape)] = a
            return out

        self._aesthetic = grown(self._aesthetic, (new_cap,))
        self._probs = grown(self._probs, (new_cap, new_areas))
        self._q = grown(self._q, (new_cap, new_dim))
        self._norm2 = grown(self._norm2, (new_cap,))
        self._has_q = grown(self._has_q, (new_cap,))
        self._phash = grown(self._phash, (new_cap,))
        self._has_phash = grown(self._has_phash, (new_cap,))
        if len(self._area_live) < new_areas:
            self._area_live = grown(self._area_live, (new_areas,))

    def _insert(self, rec: ImageRecord, q: np.ndarray | None, link: bool) -> None:
        image_id = rec.image_id
        labelled = self.overrides.areas.get(image_id)
        label = labelled.area if labelled is not None else None
        # A labelled photo is ranked as its label, for sure; the model's guess stays in the record.
        probs = {label: 1.0} if label is not None else rec.area_probs or _DEFAULT_PROBS
        names = sorted(probs)
        for name in names:
            if name not in self._area_col:
                self._area_col[name] = len(self.areas)
                self.areas.append(name)
        if q is not None and self.dim is None:
            self.dim = int(q.size)
        usable_q = q is not None and q.size == self.dim and bool(np.any(q))
        self._grow(len(self.areas), self.dim or 0)
        row = self._free.pop() if self._free else len(self._ids)
        if row == len(self._ids):
            self._ids.append("")
            self._entries.append(b"")
            self._models.append("")
            self._row_areas.append(())
        self._ids[row] = image_id
        self.row[image_id] = row
        self._entries[row] = image_entry(rec, label)
        self._models[row] = rec.model_version
        self._model_counts[rec.model_version] += 1
        aesthetic = float(rec.aesthetic)
        self._aesthetic[row] = aesthetic
        key = _canonical_key(image_id, aesthetic)
        at = bisect.bisect_left(self._keys, key)
        self._keys.insert(at, key)
        self._sorted_rows.insert(at, row)
        # Area probabilities: the record's own, normalised over its own names (as the
        # document always did), so a row never depends on which other images exist.
        vec = np.array([probs[a] for a in names], dtype=np.float32)
        total = float(vec.sum())
        vec = vec / total if total > 0 else np.full(len(names), 1.0 / len(names), np.float32)
        cols = tuple(self._area_col[a] for a in names)
        self._probs[row] = 0.0
        self._probs[row, list(cols)] = vec
        self._row_areas[row] = cols
        self._area_live[list(cols)] += 1
        self._q[row] = 0
        self._has_q[row] = usable_q
        if usable_q and q is not None:
            self._q[row, : self.dim] = q
            self._norm2[row] = float(np.dot(q.astype(np.int64), q.astype(np.int64)))
        else:
            self._norm2[row] = 0.0
        self._has_phash[row] = rec.phash is not None
        self._phash[row] = (rec.phash or 0) & _HASH_MASK
        if link and self.config.suppress_duplicates:
            self.graph.link(image_id, self._neighbours(row))

    def _neighbours(self, row: int) -> list[str]:
        """The live images that are near duplicates of ``row`` (exact int8 rule, see ranking.duplicates)."""
        n = len(self._ids)
        found = np.zeros(n, dtype=bool)
        if self._has_q[row]:
            others = self._has_q[:n].copy()
            others[row] = False
            rows = np.flatnonzero(others)
            if rows.size:
                close = int8_close(
                    self._q[rows].astype(np.float32),
                    self._norm2[rows],
                    self._q[row : row + 1].astype(np.float32),
                    self._norm2[row : row + 1],
                    self.config.duplicate_cosine,
                )[:, 0]
                found[rows[close]] = True
        if self._has_phash[row]:
            others = self._has_phash[:n].copy()
            others[row] = False
            distance = np.bitwise_count(self._phash[:n] ^ self._phash[row])
            found |= others & (distance <= self.config.duplicate_hamming)
        return [self._ids[i] for i in np.flatnonzero(found).tolist()]

    def _remove(self, image_id: str) -> None:
        row = self.row.pop(image_id)
        key = _canonical_key(image_id, float(self._aesthetic[row]))
        at = bisect.bisect_left(self._keys, key)
        del self._keys[at]
        del self._sorted_rows[at]
        relink = self.graph.remove(image_id)  # its component may split: link the rest again
        self._area_live[list(self._row_areas[row])] -= 1
        self._model_counts[self._models[row]] -= 1
        if not self._model_counts[self._models[row]]:
            del self._model_counts[self._models[row]]
        self._ids[row] = ""
        self._entries[row] = b""
        self._has_q[row] = False
        self._has_phash[row] = False
        self._free.append(row)
        if relink:
            self._link_rows(np.array(sorted(self.row[i] for i in relink), dtype=np.int64))

    # --- the document ------------------------------------------------------------------------
    def shown(self) -> list[str]:
        """Image ids the ranking considers (live, not hidden), in canonical order."""
        return [self._ids[r] for r in self._shown_rows()]

    def _shown_rows(self) -> list[int]:
        """The rows the ranking orders: live, not hidden, not labelled "not a photo of the property"."""
        hidden = self.overrides.hidden | self._not_property()
        if not hidden:
            return self._sorted_rows
        return [r for r in self._sorted_rows if self._ids[r] not in hidden]

    def _not_property(self) -> frozenset[str]:
        areas = self.overrides.areas
        if not areas:
            return frozenset()
        return frozenset(i for i, label in areas.items() if label.area == NOT_PROPERTY and i in self.row)

    def _labelled_tail(self) -> list[int]:
        """Photos labelled "not a photo of the property": shown after all others, in canonical order."""
        away = self._not_property() - self.overrides.hidden
        return [r for r in self._sorted_rows if self._ids[r] in away] if away else []

    def ranked(self) -> tuple[list[str], list[str], list[str]]:
        """(image ids in display order, a reason per position, pinned ids not shown)."""
        rows, reasons, missing = self._ranked_rows()
        ids = self._ids
        return [ids[r] for r in rows], reasons, missing

    def _ranked_rows(self) -> tuple[list[int], list[str], list[str]]:
        rows, reasons, missing = self._ranked_property_rows()
        if not self.overrides.areas:
            return rows, reasons, missing
        labelled = self.overrides.areas
        ids = self._ids
        reasons = [f"{reason} ({AREA_SET})" if ids[row] in labelled else reason for row, reason in zip(rows, reasons)]
        tail = self._labelled_tail()
        return rows + tail, reasons + [NOT_PROPERTY_REASON] * len(tail), missing

    def _ranked_property_rows(self) -> tuple[list[int], list[str], list[str]]:
        shown = self._shown_rows()
        if not shown:
            return [], [], list(dict.fromkeys(self.overrides.pinned))
        n = len(shown)
        order = np.array(shown, dtype=np.int64)
        ids = list(map(self._ids.__getitem__, shown))
        areas = sorted(a for a, c in self._area_col.items() if self._area_live[c] > 0)
        cols = [self._area_col[a] for a in areas]
        clusters = None
        if self.config.suppress_duplicates:  # from the incremental graph, never the O(N^2) pass
            if self.graph.edges:
                clusters = self.graph.roots(self._positions(shown), n)
            if clusters is None:
                clusters = np.arange(n)
        if self._q.shape[1]:
            has_q = self._has_q[order]
            # Unit rows straight from the exact squared norms (zero rows stay zero: no embedding).
            scale = np.where(has_q, 1.0 / np.sqrt(np.maximum(self._norm2[order], 1.0)), 0.0).astype(np.float32)
            embeddings = self._q[order].astype(np.float32) * scale[:, None]
        else:
            has_q, embeddings = np.zeros(n, dtype=bool), np.zeros((n, 1), np.float32)
        gallery = ordered_gallery(
            areas,
            ids,
            self._aesthetic[order],
            self._probs[np.ix_(order, np.asarray(cols, dtype=np.int64))],
            embeddings,
            has_q,
            self._phash[order],
            self._has_phash[order],
            clusters=clusters,
            normalised=True,
        )
        result = rank_prepared(gallery, self.config, pinned=self.overrides.pinned)
        return list(map(shown.__getitem__, result.order)), result.reasons, result.pinned_missing

    def _positions(self, shown: list[int]) -> dict[str, int]:
        """Canonical position among ``shown`` of every shown image with near-duplicate edges."""
        linked = [i for i in self.graph.edges if i in self.row]
        if shown is self._sorted_rows:  # nothing hidden: a binary search per image
            keys = self._keys
            return {i: bisect.bisect_left(keys, _canonical_key(i, float(self._aesthetic[self.row[i]]))) for i in linked}
        position = {r: k for k, r in enumerate(shown)}
        return {i: position[self.row[i]] for i in linked if self.row[i] in position}

    def render(self, now: datetime | None = None) -> bytes:
        """The gallery document of the hotel as it is now (ranked here, serialised by
        ``document.render_document``)."""
        rows, reasons, missing = self._ranked_rows()
        if missing != self._missing_logged:  # once per change, not at every write of the hotel
            if missing:
                log.info("hotel %s: pinned images not shown (no photo, deleted or hidden): %s", self.hotel_id, missing)
            self._missing_logged = missing
        models = Counter(self._models[r] for r in rows) if self.overrides.hidden else self._model_counts
        model_version = sorted(models.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] if models else ""
        updated = now.isoformat(timespec="milliseconds").replace("+00:00", "Z") if now else iso_ms(self.updated_ms)
        entries = map(self._entries.__getitem__, rows)
        return render_document(self.hotel_id, model_version, updated, entries, reasons, missing)
