"""Shared pieces of the fault, hostile-input and load tests: small images, a
mixed good/bad event stream, state snapshots to compare runs, and RSS readings."""

from __future__ import annotations

import asyncio
import io
import random
import time
from collections import Counter
from pathlib import Path

import orjson
from PIL import Image

from galleryrank.consumer.state import keys
from galleryrank.consumer.state.records import decode_stored
from galleryrank.consumer.stream.produce import deleted, upserted


def small_jpegs(sample_jpegs: dict[str, bytes], size: int = 64) -> dict[str, bytes]:
    """Two size x size JPEGs per skimage photo (whole frame and centre crop).

    Small on purpose: the model resizes to 224 anyway, so decode cost drops
    and a 2-core machine can push thousands of events through in a test.
    """
    out = {}
    for name, data in sorted(sample_jpegs.items()):
        img = Image.open(io.BytesIO(data)).convert("RGB")
        w, h = img.size
        crops = {"full": img, "crop": img.crop((w // 4, h // 4, 3 * w // 4, 3 * h // 4))}
        for kind, im in crops.items():
            buf = io.BytesIO()
            im.resize((size, size), Image.BILINEAR).save(buf, "JPEG", quality=85)
            out[f"{Path(name).stem}-{kind}-{size}.jpg"] = buf.getvalue()
    return out


def mixed_events(
    urls: list[str], missing_url: str, hotels: int, per_hotel: int, seed: int, prefix: str = "f"
) -> tuple[list, int]:
    """A reproducible stream: upserts, replacements, deletes and ~3 % bad events.

    Bad events come in three kinds that fail at different stages: schema
    (unknown type), parse (not JSON) and download (HTTP 404).
    Returns (events, number of bad events).
    """
    rng = random.Random(seed)
    events: list = []
    bad = 0
    for i in range(per_hotel):
        for h in range(hotels):
            hid = f"{prefix}-{h}"
            roll = rng.random()
            if roll < 0.01:
                events.append(
                    (
                        hid.encode(),
                        orjson.dumps(
                            {
                                "event_id": f"bad-{len(events)}",
                                "type": "image.exploded",
                                "hotel_id": hid,
                                "image_id": f"img-{i}",
                            }
                        ),
                    )
                )
                bad += 1
            elif roll < 0.02:
                events.append((hid.encode(), b'{"event_id": "oops", "type": '))
                bad += 1
            elif roll < 0.03:
                events.append(upserted(hid, f"img-{i}", missing_url))
                bad += 1
            elif roll < 0.06 and i > 0:
                events.append(deleted(hid, f"img-{rng.randrange(i)}"))
            elif roll < 0.12 and i > 0:  # a newer photo replaces an earlier image id
                events.append(upserted(hid, f"img-{rng.randrange(i)}", rng.choice(urls)))
            else:
                events.append(upserted(hid, f"img-{i}", rng.choice(urls)))
    return events, bad


async def image_states(redis, namespace: str, hotel_ids) -> dict[str, dict[str, dict]]:
    """Per-image state of each hotel, decoded, without the int8 embedding.

    The embedding is left out because its last quantisation step may differ
    when images are batched differently; the fence (highest offset per
    partition, latest occurred_at, the event ids applied), the time of the
    last visible change, tombstones and the rounded scores must match exactly.
    Topic names are left out of the fence: a reference run reads its own topic.
    """
    out: dict[str, dict[str, dict]] = {}
    for hid in hotel_ids:
        raw = await redis.hgetall(keys.images_key(namespace, hid))
        if raw:
            out[hid] = {k.decode(): _comparable(decode_stored(k.decode(), v)[0]) for k, v in raw.items()}
    return out


def _comparable(rec) -> dict:
    applied = rec.applied
    body = dict(vars(rec))
    for name in ("image_id", "fence", "embedding", "applied"):
        body.pop(name, None)
    # (p, o): the partition of the newest source and the highest offset applied from it, as
    # the records before event fences stored them: the state is at or after event (p, o).
    body["p"], body["o"] = rec.fence.partition, rec.fence.offset
    body["fence"] = {
        "offsets": sorted((source.rpartition("/")[2], offset) for source, offset in applied.seen),
        "occurred_at": applied.occurred_at,
        "events": sorted(applied.events),  # a set: which event lost first may differ between runs
        "changed_at": applied.changed_at,
    }
    return body


def dlq_by_source(records, headers) -> Counter:
    """(source_partition, source_offset) -> how many DLQ records carry it (the idempotency key)."""
    return Counter((int(headers(r)["source_partition"]), int(headers(r)["source_offset"])) for r in records)


def rss_mb(pid: int | str = "self") -> float:
    return _status_kb(pid, "VmRSS") / 1024


def trimmed_rss_mb() -> float:
    """This process's RSS after asking glibc to hand freed heap pages back to the OS.

    Without the trim, RSS keeps memory that was freed but is still cached in the
    per-thread malloc arenas (decode threads), which reads like growth but is not.
    """
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: plain RSS
        pass
    return rss_mb()


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident set (VmHWM) since the process started."""
    return _status_kb(pid, "VmHWM") / 1024


def _status_kb(pid: int | str, field: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


async def wait_for_log(path: Path, needle: bytes, start: int, timeout_s: float) -> bool:
    """Wait until `needle` appears in `path` after byte offset `start`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with open(path, "rb") as f:
                f.seek(start)
                if needle in f.read():
                    return True
        except FileNotFoundError:
            pass
        await asyncio.sleep(0.1)
    return False
