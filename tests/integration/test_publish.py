"""`galleryrank publish` and live-first consumption on the real path: Tansu, Redis, HTTP downloads.

The model is bench/stubs.py's StubModel (the scoring-model interface answered from a bank, no
inference): these tests are about the publisher, the backfill topic and the scorer's priority,
and they push tens of thousands of events through a 2-core machine shared with others, where
the real model on ONNX Runtime scores ~10-100 images/s. Downloads (a real HTTP server that counts
requests), JPEG decodes (the decode pool), Kafka, Redis and the fences are all real.
"""

from __future__ import annotations

import asyncio
import csv
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import pytest_asyncio
from aiohttp import web

from bench.stubs import StubModel
from galleryrank.consumer.bluegreen.replay import run_replay
from galleryrank.consumer.catalogue import checkpoint as cp
from galleryrank.consumer.catalogue.publisher import PublishOptions, publish_catalogue
from galleryrank.consumer.catalogue.rows import catalogue_event_id
from galleryrank.consumer.dev.samples import ImageServer
from galleryrank.consumer.runtime import build_scorer, caught_up
from galleryrank.consumer.state import keys
from galleryrank.consumer.state.records import decode_stored
from galleryrank.consumer.stream.events import ImageUpserted, encode_event
from galleryrank.consumer.stream.kafka import create_topics, make_producer
from galleryrank.consumer.stream.priority import backfill_topic
from galleryrank.consumer.stream.produce import publish
from galleryrank.consumer.stream.scorer import Hooks
from tests.fault_support import small_jpegs
from tests.helpers import drop_namespace, galleries, headers, read_topic, run_until_caught_up, without_timestamps

pytestmark = pytest.mark.integration

PARTITIONS = 2
PER_HOTEL = 20


class CountingServer(ImageServer):
    """The sample photos, counting requests per path and query (one URL per catalogue row)."""

    def __init__(self, images: dict[str, bytes]):
        super().__init__(images)
        self.requests: Counter[str] = Counter()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests[request.path_qs] += 1
        return await super()._handle(request)


@pytest_asyncio.fixture
async def photos(sample_jpegs):
    server = await CountingServer(small_jpegs(sample_jpegs)).start()
    yield server
    await server.stop()


@pytest.fixture
def stub_model():
    return StubModel()


@pytest.fixture
def fast(settings):
    # The test's own labels topic (the default one is shared by every test's scorer).
    return settings.model_copy(update={"decode_workers": 1, "labels_topic": f"{settings.topic}.labels"})


def catalogue(server: CountingServer, rows: int, tag: str, bad_every: int = 97) -> tuple[list[dict], dict, set]:
    """rows (hotel_id, image_id, url), {row number: expected reject reason}, {row numbers that 404}."""
    names = sorted(server.images)
    out, bad, missing = [], {}, set()
    kinds = ["invalid_hotel_id", "bad_scheme", "missing_field", "bad_occurred_at"]
    for i in range(rows):
        number = i + 1
        hotel, j = f"{tag}-h{i // PER_HOTEL}", i % PER_HOTEL
        row = {
            "hotel_id": hotel,
            "image_id": f"p{j}",
            "url": server.url(names[j % len(names)]) + f"?row={number}",
            "occurred_at": "",
        }
        if number % bad_every == 0:
            kind = kinds[(number // bad_every) % len(kinds)]
            bad[number] = kind
            if kind == "invalid_hotel_id":
                row["hotel_id"] = f"{hotel} x"
            elif kind == "bad_scheme":
                row["url"] = "ftp://example.com/x.jpg"
            elif kind == "missing_field":
                row["image_id"] = ""
            else:
                row["occurred_at"] = "yesterday"
        elif number % 1009 == 0:  # a valid event whose photo is gone: the consumer's DLQ, not a reject
            row["url"] = server.url("missing.jpg") + f"?row={number}"
            missing.add(number)
        out.append(row)
    return out, bad, missing


def write_csv(path: Path, rows: list[dict], broken_line_after: int | None = None) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["hotel_id", "image_id", "url", "occurred_at"])
        w.writeheader()
        for i, row in enumerate(rows, 1):
            w.writerow(row)
            if i == broken_line_after:
                f.write("h-broken,p0,http://x/y.jpg,,one-field-too-many\n")


def read_rejects(path: Path) -> dict[int, str]:
    with open(path, newline="") as f:
        return {int(r["row"]): r["reason"] for r in csv.DictReader(f)}


async def image_event_ids(redis, namespace: str, hotel_ids) -> dict[tuple[str, str], str]:
    """(hotel, image) -> the event_id its stored record applied last."""
    out = {}
    for hid in hotel_ids:
        for image_id, raw in (await redis.hgetall(keys.images_key(namespace, hid))).items():
            rec, _ = decode_stored(image_id.decode(), raw)
            out[(hid, rec.image_id)] = rec.event_id
    return out


def expected_images(rows: list[dict], good: set[int]) -> dict[tuple[str, str], str]:
    return {
        (r["hotel_id"], r["image_id"]): catalogue_event_id(r["hotel_id"], r["image_id"], r["url"])
        for n, r in enumerate(rows, 1)
        if n in good
    }


def options(settings, tmp_path: Path, paths, **kw) -> PublishOptions:
    return PublishOptions(
        [str(p) for p in paths],
        backfill_topic(settings),
        rejects=tmp_path / "rejects.csv",
        checkpoint=tmp_path / "checkpoint.json",
        **kw,
    )


@pytest.mark.slow
async def test_catalogue_csv_then_parquet_every_good_row_scored_once_bad_rows_rejected(
    fast, stub_model, redis, photos, tmp_path
):
    settings = fast
    rows, bad, missing = catalogue(photos, 10_000, "cat")
    broken_after = 5000  # a CSV line with one field too many, after row 5000: it becomes row 5001
    shifted = {n if n <= broken_after else n + 1: r for n, r in bad.items()}
    shifted[broken_after + 1] = "unreadable_row"
    write_csv(tmp_path / "catalogue.csv", rows, broken_line_after=broken_after)
    await create_topics(settings, partitions=PARTITIONS)
    try:
        summary = await publish_catalogue(settings, options(settings, tmp_path, [tmp_path / "catalogue.csv"]))
        assert summary.complete and summary.rows == 10_001
        assert summary.rejected == len(shifted) and summary.sent == 10_000 - len(bad)
        assert read_rejects(tmp_path / "rejects.csv") == shifted  # every bad row, its reason, its row number

        result = await run_until_caught_up(settings, stub_model, redis, partitions=PARTITIONS)
        good = set(range(1, 10_001)) - set(bad) - missing
        hotels = sorted({r["hotel_id"] for r in rows if " " not in r["hotel_id"]})
        applied = await image_event_ids(redis, settings.namespace, hotels)
        assert applied == expected_images(rows, good)  # every good row, once, by its own event
        docs = await galleries(redis, settings.namespace, hotels)
        in_galleries = {(h, img["image_id"]) for h, d in docs.items() for img in d["images"]}
        assert in_galleries == set(expected_images(rows, good))
        # The DLQ holds the rows whose photo is gone, and nothing else.
        dlq = await read_topic(settings, settings.dlq_topic, expected=len(missing))
        dlq_rows = {int(orjson.loads(r.value)["url"].rsplit("=", 1)[1]) for r in dlq}
        assert dlq_rows == missing and result.dead_lettered == len(missing)
        assert {headers(r)["reason"] for r in dlq} == {"http_404"}
        good_paths = [r["url"][len(photos.base_url) :] for n, r in enumerate(rows, 1) if n in good]
        assert {photos.requests[p] for p in good_paths} == {1}  # each photo downloaded once
        downloads = {p: photos.requests[p] for p in good_paths}
        before = without_timestamps(docs)

        # The same catalogue as Parquet (what a data lake exports): the same event ids, so the
        # consumer downloads nothing and no gallery changes.
        table = pa.Table.from_pylist(rows)
        parts = tmp_path / "lake"
        parts.mkdir()
        pq.write_table(table.slice(0, 6000), parts / "part-00000.parquet", row_group_size=2000)
        pq.write_table(table.slice(6000), parts / "part-00001.parquet", row_group_size=2000)
        again = await publish_catalogue(
            settings,
            PublishOptions(
                [str(parts)],
                backfill_topic(settings),
                rejects=tmp_path / "rejects-2.csv",
                checkpoint=tmp_path / "checkpoint-2.json",
            ),
        )
        assert again.complete and again.sent == summary.sent and read_rejects(tmp_path / "rejects-2.csv") == bad
        second = await run_until_caught_up(settings, stub_model, redis, partitions=PARTITIONS)
        # Known events are not downloaded; only the photos that were missing are tried again.
        assert second.applied == 0 and second.stale == summary.sent - len(missing)
        assert second.dead_lettered == len(missing)
        assert {p: photos.requests[p] for p in good_paths} == downloads  # not one more request
        after = without_timestamps(await galleries(redis, settings.namespace, hotels))
        assert after == before
    finally:
        await drop_namespace(redis, settings.namespace)


@pytest.mark.slow
async def test_sigkill_mid_run_then_resume_applies_every_row_once(fast, stub_model, redis, photos, tmp_path):
    settings = fast
    rows, bad, missing = catalogue(photos, 6000, "kill", bad_every=101)
    write_csv(tmp_path / "catalogue.csv", rows)
    await create_topics(settings, partitions=PARTITIONS)
    command = [
        sys.executable,
        "-m",
        "galleryrank.consumer.cli.main",
        "publish",
        str(tmp_path / "catalogue.csv"),
        "--rate",
        "1500",
        "--rejects",
        str(tmp_path / "rejects.csv"),
        "--checkpoint-file",
        str(tmp_path / "checkpoint.json"),
        "--bootstrap-servers",
        settings.bootstrap_servers,
        "--topic",
        settings.topic,
        "--no-progress",
    ]
    env = {**os.environ, "GALLERYRANK_LOG_LEVEL": "WARNING"}
    try:
        first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        state = None
        while time.monotonic() < deadline:  # kill once a checkpoint says some rows are done
            state = cp.load(tmp_path / "checkpoint.json") if (tmp_path / "checkpoint.json").exists() else None
            if state is not None and state.rows_done >= 1500:
                break
            await asyncio.sleep(0.1)
        assert state is not None and state.rows_done >= 1500, first.communicate(timeout=5)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        killed_at = cp.load(tmp_path / "checkpoint.json")
        assert killed_at is not None and not killed_at.complete and killed_at.rows_done < 6000

        resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr
        assert "complete" in resumed.stdout and f"after {killed_at.rows_done:,} done" in resumed.stdout
        final = cp.load(tmp_path / "checkpoint.json")
        assert final is not None and final.complete and final.rows_done == 6000
        assert read_rejects(tmp_path / "rejects.csv") == bad  # each bad row once, also across the kill

        # On the topic: every good row; twice only rows acknowledged after the last checkpoint.
        good_total = 6000 - len(bad)
        records = await read_topic(settings, backfill_topic(settings), expected=good_total, timeout_s=30)
        ids = Counter(orjson.loads(r.value)["event_id"] for r in records)
        wanted = {
            catalogue_event_id(r["hotel_id"], r["image_id"], r["url"]) for n, r in enumerate(rows, 1) if n not in bad
        }
        assert set(ids) == wanted
        twice = [e for e, c in ids.items() if c > 1]
        # re-sent: only rows acknowledged after the last checkpoint (written each second, at 1,500 rows/s)
        assert all(c <= 2 for c in ids.values()) and len(twice) <= 1500

        result = await run_until_caught_up(settings, stub_model, redis, partitions=PARTITIONS)
        good = set(range(1, 6001)) - set(bad) - missing
        hotels = sorted({r["hotel_id"] for r in rows if " " not in r["hotel_id"]})
        assert await image_event_ids(redis, settings.namespace, hotels) == expected_images(rows, good)
        gone = [
            catalogue_event_id(r["hotel_id"], r["image_id"], r["url"]) for n, r in enumerate(rows, 1) if n in missing
        ]
        assert result.dead_lettered == sum(ids[e] for e in gone)  # each record of a gone photo, re-sent ones too
        # Each photo downloaded once, except a re-sent row whose two copies met in one fetch.
        per_row = [photos.requests[r["url"].split(photos.base_url, 1)[1]] for n, r in enumerate(rows, 1) if n in good]
        assert min(per_row) == 1 and sum(c > 1 for c in per_row) <= len(twice)
    finally:
        await drop_namespace(redis, settings.namespace)


async def _fenced_url(settings, model, redis, first, second) -> str:
    """Publish `first` (topic, event), consume, then `second`, consume; the stored URL."""
    for topic, event in (first, second):
        await publish(settings, [event], topic=topic)
        await run_until_caught_up(settings, model, redis, partitions=1)
    raw = await redis.hget(keys.images_key(settings.namespace, event.hotel_id), event.image_id)
    return decode_stored(event.image_id, raw)[0].url


@pytest.mark.slow
async def test_fencing_orders_live_and_backfill_of_the_same_photo_both_ways(fast, stub_model, redis, photos):
    settings = fast
    names = sorted(photos.images)
    live_topic, bulk_topic = settings.topic, backfill_topic(settings)
    await create_topics(settings, partitions=1)
    old, new = photos.url(names[0]) + "?v=catalogue", photos.url(names[1]) + "?v=upload"

    def row(hotel: str, at: str) -> ImageUpserted:  # what publish sends for a catalogue row
        return ImageUpserted(catalogue_event_id(hotel, "p", old), hotel, "p", old, at)

    def upload(hotel: str, at: str) -> ImageUpserted:
        return ImageUpserted(f"live-{hotel}", hotel, "p", new, at)

    try:
        catalogue_time, upload_time = "2026-01-01T00:00:00Z", "2026-03-01T12:00:00Z"
        # The hotelier's upload is newer than the catalogue export: it wins whichever comes first.
        got = await _fenced_url(
            settings,
            stub_model,
            redis,
            (live_topic, upload("f1", upload_time)),
            (bulk_topic, row("f1", catalogue_time)),
        )
        assert got == new
        got = await _fenced_url(
            settings,
            stub_model,
            redis,
            (bulk_topic, row("f2", catalogue_time)),
            (live_topic, upload("f2", upload_time)),
        )
        assert got == new
        # A catalogue exported after the upload is the newer one: it wins both ways too.
        later = "2026-06-01T00:00:00Z"
        got = await _fenced_url(
            settings, stub_model, redis, (live_topic, upload("f3", upload_time)), (bulk_topic, row("f3", later))
        )
        assert got == old
        got = await _fenced_url(
            settings, stub_model, redis, (bulk_topic, row("f4", later)), (live_topic, upload("f4", upload_time))
        )
        assert got == old
    finally:
        await drop_namespace(redis, settings.namespace)


@pytest.mark.slow  # > 7 s: in make test, not in make test-fast
async def test_replay_covers_the_backfill_topic(fast, stub_model, redis, photos, tmp_path):
    settings = fast
    rows, bad, _ = catalogue(photos, 60, "rp", bad_every=1000)
    write_csv(tmp_path / "c.csv", rows)
    await create_topics(settings, partitions=PARTITIONS)
    names = sorted(photos.images)
    live = [ImageUpserted(f"live-{i}", f"rp-live-{i}", "p", photos.url(names[i]), None) for i in range(4)]
    await publish(settings, live)
    await publish_catalogue(settings, options(settings, tmp_path, [tmp_path / "c.csv"]))
    namespace = f"{settings.namespace}-replay"
    try:
        result = await run_replay(settings, namespace, stub_model, redis)
        assert (
            result.complete
            and result.total == 64
            and {p.topic for p in result.plans}
            >= {
                settings.topic,
                backfill_topic(settings),
            }
        )
        hotels = [f"rp-h{i}" for i in range(3)] + [f"rp-live-{i}" for i in range(4)]
        docs = await galleries(redis, namespace, hotels)
        assert {h: len(d["images"]) for h, d in docs.items()} == {
            **dict.fromkeys(hotels[:3], 20),
            **dict.fromkeys(hotels[3:], 1),
        }
    finally:
        await drop_namespace(redis, namespace)
        await drop_namespace(redis, settings.namespace)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


@pytest.mark.slow
async def test_live_upserts_do_not_wait_behind_a_backfill(fast, stub_model, redis, photos, tmp_path, capsys):
    """Live events never wait behind more than the backfill's bounded share of the pipeline
    (counted at every backfill admission), and the issue's measurement: p99 latency of live
    upserts (sent -> durable in Redis) during a 20,000-event backfill vs the same live load on
    an idle scorer, in this run (printed; asserted only with a generous bound, see below)."""
    settings = fast
    names = sorted(photos.images)
    await create_topics(settings, partitions=PARTITIONS)
    rows = [
        {
            "hotel_id": f"bf-h{i // PER_HOTEL}",
            "image_id": f"p{i % PER_HOTEL}",
            "url": photos.url(names[i % len(names)]) + f"?b={i}",
        }
        for i in range(20_000)
    ]
    write_csv(tmp_path / "backfill.csv", [{**r, "occurred_at": ""} for r in rows])
    everything_sent = asyncio.Event()

    async def stop_at(scorer) -> bool:  # not while idle between the phases
        return everything_sent.is_set() and await caught_up(scorer)

    scorer = build_scorer(settings, stub_model, redis, control=Hooks(stop_at=stop_at))
    applied_at: dict[str, float] = {}
    write = scorer.writer.write

    async def timed_write(hotel_id, change):  # when each live event became durable
        await write(hotel_id, change)
        applied_at[change.event_id] = time.monotonic()

    scorer.writer.write = timed_write  # type: ignore[method-assign]
    # What makes "live first" true, counted: a backfill event is let into the pipeline while a
    # live event is in flight (or live lags) only while the backfill holds less than its share.
    gate = scorer.priority
    gate_slot = gate.slot
    admitted_while_live: list[int] = []  # backfill events in the pipeline at each such admission
    backfill_ahead_of_live: list[int] = []  # backfill events in the pipeline as each live event enters

    @asynccontextmanager
    async def counted_slot(topic: str):
        async with gate_slot(topic):  # nothing is awaited between admission and these counts
            if not gate.is_backfill(topic):
                backfill_ahead_of_live.append(gate.backfill_in_flight)
            elif gate.live_busy():
                admitted_while_live.append(gate.backfill_in_flight)
            yield

    gate.slot = counted_slot
    live_rate, live_count = 25, 200

    async def live_load(tag: str) -> list[float]:
        sent_at: dict[str, float] = {}
        producer = make_producer(settings)
        await producer.start()
        try:
            for i in range(live_count):
                url = photos.url(names[i % len(names)]) + f"?{tag}={i}"
                key, value = encode_event(ImageUpserted(f"{tag}-{i}", f"live-{tag}-{i % 40}", f"u{i}", url, None))
                started = sent_at[f"{tag}-{i}"] = time.monotonic()
                await producer.send_and_wait(settings.topic, value=value, key=key)
                await asyncio.sleep(max(0.0, 1 / live_rate - (time.monotonic() - started)))
        finally:
            await producer.stop()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(e in applied_at for e in sent_at):
            await asyncio.sleep(0.05)
        assert all(e in applied_at for e in sent_at), "live events not applied"
        return [applied_at[e] - t for e, t in sent_at.items()]

    run = asyncio.create_task(scorer.run())
    try:
        while not scorer.progress().ready:
            await asyncio.sleep(0.1)
        idle = await live_load("idle")
        published = await publish_catalogue(settings, options(settings, tmp_path, [tmp_path / "backfill.csv"]))
        assert published.sent == 20_000
        while scorer.progress().summary.applied < 2_000:  # the backfill is flowing
            assert not run.done(), run
            await asyncio.sleep(0.1)
        applied_before = scorer.progress().summary.applied
        busy = await live_load("busy")
        everything_sent.set()
        applied_after = scorer.progress().summary.applied
        done_during = applied_after - applied_before - live_count  # backfill events, during the live load
        assert applied_after - live_count * 2 < 20_000, "the backfill ended before the live load did"
        summary = await asyncio.wait_for(run, timeout=300)
        backfilled = 0
        for h in range(20_000 // PER_HOTEL):
            backfilled += len(await redis.hkeys(keys.images_key(settings.namespace, f"bf-h{h}")))
        assert backfilled == 20_000 and summary.dead_lettered == 0  # the backfill finishes afterwards
        line = (
            f"live p99 {p99(idle) * 1000:.0f} ms idle, {p99(busy) * 1000:.0f} ms during the backfill "
            f"(p50 {sorted(idle)[len(idle) // 2] * 1000:.0f} / {sorted(busy)[len(busy) // 2] * 1000:.0f} ms); "
            f"backfill: {done_during} events applied during the live load, {applied_before - live_count} before it; "
            f"backfill partitions paused {scorer.progress().backfill_holds} times; "
            f"{len(admitted_while_live)} backfill admissions while live was busy, at most "
            f"{max(admitted_while_live, default=0)} backfill events in the pipeline then (share {gate.busy_cap}); "
            f"backfill events ahead of a live one: p99 {p99([float(n) for n in backfill_ahead_of_live]):.0f}, "
            f"max {max(backfill_ahead_of_live)} (cap {gate.backfill_cap})"
        )
        with capsys.disabled():
            print("\n" + line)
        assert admitted_while_live, "the backfill must keep flowing while live events are in flight"
        assert max(admitted_while_live) <= gate.busy_cap, line
        # The wall-clock ratio follows the load of this shared machine, not only the gate: at
        # load ~10 it measured 0.8x and 1.9x (issue 25 notes). The counted bound above
        # is the guarantee; this generous one only catches live events queueing behind the
        # whole backfill (20,000 events, at 64 in flight, would be far beyond 5x).
        assert p99(busy) <= 5 * p99(idle), line
    finally:
        if not run.done():
            scorer.stop()
            await asyncio.gather(run, return_exceptions=True)
        await drop_namespace(redis, settings.namespace)
