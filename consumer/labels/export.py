"""`galleryrank labels export --out DIR`: the training sets `train tagger` and `train aesthetic` read.

Layout (split by hotel: no hotel has photos in both splits):

    DIR/train/areas/<area>/<photo>.jpg     train tagger --data DIR/train/areas
    DIR/train/images/<photo>.jpg           train aesthetic --labels DIR/train/votes.txt --images DIR/train/images
    DIR/train/votes.txt                    "<photo> c1 .. c10" (the vote histogram per photo, NIMA's form)
    DIR/test/...                           the same for the held-out hotels
    DIR/manifest.json                      counts, raters, agreement, conflicts, split, failed downloads, photos

Each photo is downloaded once (the scorer's SSRF-guarded ImageDownloader) and checked with the
scorer's own decode rules before it is written; a photo in several places is a hard link.
Photos whose reviewers tie on the area, or whose area is ``not_property``, go into no area
folder (they are listed in the manifest).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..images.decode import DecodeError, load_oriented_rgb
from ..images.download import DownloadError, ImageDownloader, redact_url
from ..settings import Settings
from ..stream.events import NOT_PROPERTY
from .aggregate import PhotoKey, PhotoLabels, aggregate, summary
from .reader import LabelRead

SPLITS = ("train", "test")
_EXT = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ExportOptions:
    test_fraction: float = 0.2
    seed: int = 0
    min_agreement: float = 0.0  # photos whose majority area has less agreement go into no folder


def photo_name(hotel_id: str, image_id: str) -> str:
    """A file stem unique per (hotel, image): a short hash (ids may collide once made filename-safe)
    then the readable ids."""
    digest = hashlib.sha256(f"{hotel_id}\x00{image_id}".encode()).hexdigest()[:10]
    return f"{digest}-{_SAFE.sub('_', hotel_id)[:40]}-{_SAFE.sub('_', image_id)[:40]}"


def split_hotels(hotel_ids: list[str], test_fraction: float, seed: int = 0) -> dict[str, str]:
    """hotel -> "train"/"test": hotels ordered by a seeded hash (stable as hotels are added),
    the first ceil(fraction x n) held out; with two or more hotels both splits are non-empty."""
    hotels = sorted(set(hotel_ids), key=lambda h: hashlib.sha256(f"{seed}\x00{h}".encode()).hexdigest())
    n_test = math.ceil(test_fraction * len(hotels)) if test_fraction > 0 else 0
    if len(hotels) >= 2:
        n_test = min(max(n_test, 1), len(hotels) - 1)
    else:
        n_test = 0
    return {h: ("test" if i < n_test else "train") for i, h in enumerate(hotels)}


async def _download_all(
    settings: Settings, photos: list[PhotoLabels], concurrency: int
) -> tuple[dict[str, bytes], dict[str, str]]:
    """url -> bytes (each URL once), url -> failure reason."""
    urls = sorted({p.url for p in photos})
    got: dict[str, bytes] = {}
    failed: dict[str, str] = {}
    gate = asyncio.Semaphore(concurrency)
    async with ImageDownloader(settings) as downloader:

        async def one(url: str) -> None:
            async with gate:
                try:
                    got[url] = await downloader.fetch(url)
                except DownloadError as exc:
                    failed[url] = exc.reason

        await asyncio.gather(*(one(u) for u in urls))
    return got, failed


def _checked_ext(data: bytes, settings: Settings) -> str:
    """The file extension of photo bytes that pass the scorer's decode rules; raises DecodeError."""
    from PIL import Image

    load_oriented_rgb(data, max_pixels=settings.max_image_pixels)
    with Image.open(io.BytesIO(data)) as img:
        return _EXT.get(img.format or "", ".jpg")


def _place(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(src, dst)


def write_export(
    out: Path,
    photos: dict[PhotoKey, PhotoLabels],
    bodies: dict[str, bytes],
    failed: dict[str, str],
    settings: Settings,
    options: ExportOptions,
    read: LabelRead | None = None,
) -> dict[str, Any]:
    """Write the layout above from aggregated photos and their downloaded bytes; returns the manifest."""
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: export into a new folder")
    store = out / ".photos"  # each body once; the split folders hold links to it
    store.mkdir(parents=True, exist_ok=True)
    split_of = split_hotels([h for h, _ in photos], options.test_fraction, options.seed)
    rows: list[dict[str, Any]] = []
    votes_rows: dict[str, list[str]] = {s: [] for s in SPLITS}
    counts: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
    undecodable: dict[str, str] = {}
    for key in sorted(photos):
        p = photos[key]
        split = split_of[p.hotel_id]
        row = {**p.as_dict(), "url": redact_url(p.url), "split": split, "file": None, "in_area_folder": False}
        rows.append(row)
        if p.url in failed:
            row["failed"] = failed[p.url]
            continue
        data = bodies.get(p.url)
        if data is None:
            continue
        try:
            ext = _checked_ext(data, settings)
        except DecodeError as exc:
            undecodable[p.url] = row["failed"] = exc.reason
            continue
        name = photo_name(p.hotel_id, p.image_id) + ext
        digest = hashlib.sha256(data).hexdigest()
        blob = store / f"{digest}{ext}"
        if not blob.exists():
            blob.write_bytes(data)
        row["file"] = name
        area, agreement = p.area()
        if area is not None and area != NOT_PROPERTY and agreement >= options.min_agreement:
            _place(blob, out / split / "areas" / area / name)
            counts[split][area] = counts[split].get(area, 0) + 1
            row["in_area_folder"] = True
        if p.rating_votes:
            _place(blob, out / split / "images" / name)
            votes_rows[split].append(" ".join([Path(name).stem, *map(str, p.histogram())]))
    for split in SPLITS:
        if votes_rows[split]:
            (out / split).mkdir(parents=True, exist_ok=True)
            (out / split / "votes.txt").write_text("\n".join(votes_rows[split]) + "\n")
    hotels = {s: sorted(h for h, v in split_of.items() if v == s) for s in SPLITS}
    manifest = {
        "labels_topic": read.topic if read else None,
        "label_end_offsets": read.end_offsets if read else None,
        "records_skipped": dict(read.skipped) if read else {},
        "summary": summary(photos),
        "options": options.__dict__,
        "split": {
            s: {
                "hotels": len(hotels[s]),
                "photos": sum(1 for r in rows if r["split"] == s),
                "area_counts": dict(sorted(counts[s].items())),
                "rated_photos": len(votes_rows[s]),
            }
            for s in SPLITS
        },
        "hotels": hotels,
        "areas": sorted({a for s in SPLITS for a in counts[s]}),
        "conflicts": [
            {"hotel_id": r["hotel_id"], "image_id": r["image_id"], "votes": r["area_votes"], "area": r["area"]}
            for r in rows
            if r["area_conflict"]
        ],
        "failed_downloads": {redact_url(u): r for u, r in sorted(failed.items())},
        "undecodable": {redact_url(u): r for u, r in sorted(undecodable.items())},
        "photos": rows,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


async def export_labels(
    settings: Settings, read: LabelRead, out: Path, options: ExportOptions | None = None, concurrency: int = 8
) -> dict[str, Any]:
    """Aggregate the label events of ``read``, download each photo once, write the export."""
    options = options or ExportOptions()
    photos = aggregate(read.events)
    bodies, failed = await _download_all(settings, list(photos.values()), concurrency)
    return write_export(out, photos, bodies, failed, settings, options, read)
