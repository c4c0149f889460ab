"""`galleryrank demo`: the whole path on embedded defaults, one command.

Starts Tansu and Redis on loopback, serves sample photos (or yours: `--images DIR`,
flat or DIR/<area>/*.jpg) over local HTTP, publishes events for a few hotels plus
three scripted ones (a photo uploaded and deleted again, an unreachable image, a
record that is not JSON; none of them touches your photos), runs the real scorer
until the backlog is done, prints each hotel's ranked gallery and where every
dead letter went (by file name), and shuts everything down. With `--serve` it keeps
broker, Redis and photo server up and serves the read API and gallery page until
Ctrl-C. On an external Redis ($REDIS_URL) it writes into a namespace it creates
and deletes only that.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import orjson
from rich.console import Console
from rich.table import Table

from ..runtime import load_model, redis_client, run_scorer
from ..settings import Settings
from ..state import keys
from ..stream.events import Event
from ..stream.kafka import create_topics, make_consumer
from ..stream.produce import deleted, publish, upserted
from .embedded import EmbeddedKafka, EmbeddedRedis
from .samples import ImageServer, folder_images, photo_label, skimage_jpegs

if TYPE_CHECKING:
    from aiokafka.structs import ConsumerRecord


# The scripted events' image ids: never one of the photos' (img-<n>), so they never touch yours.
DELETED_ID = "demo-deleted"
MISSING_ID = "demo-missing"
MISSING_PHOTO = "no-such-photo.jpg"


@dataclass
class DemoPlan:
    events: list[Event | tuple[bytes, bytes]]
    photo_of: dict[tuple[str, str], str]  # (hotel, image id) -> photo name, for the photos' upserts
    expected_dlq: dict[str, str] = field(default_factory=dict)  # scripted event -> reason it must get


def demo_events(server: ImageServer, names: list[str], hotels: int, per_hotel: int, seed: int = 7) -> DemoPlan:
    """Events for `hotels` hotels, each showing a random subset of the photos, then the scripted ones."""
    rng = random.Random(seed)
    events: list[Event | tuple[bytes, bytes]] = []
    photo_of: dict[tuple[str, str], str] = {}
    for h in range(hotels):
        hotel = f"h-{1000 + h}"
        for i, name in enumerate(rng.sample(names, min(per_hotel, len(names)))):
            events.append(upserted(hotel, f"img-{i}", server.url(name)))
            photo_of[(hotel, f"img-{i}")] = name
    # A photo uploaded and deleted again (its own id: your photos stay), one that cannot be
    # fetched, one record that is not JSON.
    events.append(upserted("h-1000", DELETED_ID, server.url(names[0])))
    events.append(deleted("h-1000", DELETED_ID))
    events.append(upserted("h-1001", MISSING_ID, server.url(MISSING_PHOTO)))
    events.append((b"h-1002", b"{this is not json"))
    expected = {MISSING_ID: "http_404", "not JSON": "invalid_json"}
    return DemoPlan(events, photo_of, expected)


async def read_dlq(settings: Settings, expected: int, timeout_s: float = 10.0) -> list[ConsumerRecord[bytes, bytes]]:
    consumer = make_consumer(settings, group_id=f"demo-dlq-reader-{time.time_ns()}")
    consumer.subscribe([settings.dlq_topic])
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                records.extend(recs)
    finally:
        await consumer.stop()
    return records


def print_galleries(console: Console, galleries: dict[str, dict], photo_of: dict[tuple[str, str], str]) -> None:
    labelled = any(photo_label(n) for n in photo_of.values())  # DIR/<area>/*.jpg: show your label too
    for hotel_id, doc in galleries.items():
        table = Table(title=f"{hotel_id}  (model {doc['model_version']})", title_justify="left")
        cols = ["position", "image_id", "area", "area conf.", "aesthetic", "why here", "photo"]
        if labelled:
            cols.insert(3, "your label")
        longest = max((len(n) for n in photo_of.values()), default=10)
        for col in cols:
            justify: Literal["left", "right"] = "right" if col in ("position", "area conf.", "aesthetic") else "left"
            if col == "photo":  # a file name is never cut: it is how you find the photo again
                table.add_column(col, justify=justify, no_wrap=True, min_width=min(longest, 60))
            else:
                table.add_column(col, justify=justify)
        for pos, img in enumerate(doc["images"], start=1):
            name = photo_of.get((hotel_id, img["image_id"]), img["url"].rsplit("/", 1)[-1])
            row = [
                str(pos),
                img["image_id"],
                img["area"],
                f"{img['area_confidence']:.2f}",
                f"{img['aesthetic']:.2f}",
                img.get("reason", ""),
                name,
            ]
            if labelled:
                row.insert(3, photo_label(name))
            table.add_row(*row)
        console.print(table)


def describe_dead_letter(rec: ConsumerRecord[bytes, bytes], plan: DemoPlan) -> tuple[str, str, str]:
    """(which event: a photo's file name or the scripted event, reason, error) of one DLQ record."""
    headers = {k: v.decode("utf-8", "replace") for k, v in rec.headers}
    reason, error = headers.get("reason", "?"), headers.get("error", "")
    try:
        event = orjson.loads(rec.value or b"")
    except orjson.JSONDecodeError:
        return "not JSON", reason, error
    if not isinstance(event, dict):
        return "not an object", reason, error
    hotel, image = str(event.get("hotel_id", "")), str(event.get("image_id", ""))
    if image in (MISSING_ID, DELETED_ID):
        return image, reason, error
    return plan.photo_of.get((hotel, image), f"{hotel}/{image}"), reason, error


def load_photos(images_dir: str | None) -> dict[str, bytes]:
    """Your photos (ValueError with one line when the folder has none), else the samples."""
    return folder_images(images_dir) if images_dir else skimage_jpegs()


async def run_demo(
    settings: Settings, images: dict[str, bytes], hotels: int, per_hotel: int, serve: bool = False, own: bool = False
) -> int:
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(f"[bold]galleryrank demo[/]: {len(images)} {'of your' if own else 'sample'} photos, {hotels} hotels")
    with EmbeddedKafka() as kafka, EmbeddedRedis() as redis_server:
        external = redis_server.proc is None  # $REDIS_URL: someone else's server, maybe someone else's data
        namespace = settings.namespace or (f"demo-{time.strftime('%Y%m%d-%H%M%S')}" if external else "demo")
        settings = settings.model_copy(
            update={
                "bootstrap_servers": kafka.bootstrap_servers,
                "redis_url": redis_server.url,
                "namespace": namespace,
                "download_allow_networks": "127.0.0.0/8",  # the sample server is on loopback
                "metrics_port": 0,
                "group_id": f"galleryrank-demo-{time.time_ns()}",
                # Tansu holds a JoinGroup for half the session timeout: 6 s keeps the join at ~3 s.
                "session_timeout_ms": 6000,
            }
        )
        console.print(
            f"Kafka (Tansu) at {kafka.bootstrap_servers}; Redis at {redis_server.url}"
            f"{' ($REDIS_URL)' if external else ''}; namespace '{namespace}'"
        )
        server = await ImageServer(images).start()
        redis = redis_client(settings)
        created = False  # the namespace is ours to delete only if it held nothing when we came
        try:
            if await _namespace_keys(redis, namespace):
                if external:
                    console.print(
                        f"[red]namespace '{namespace}' already holds data in {redis_server.url}; "
                        "the demo writes only into a namespace of its own: pass another --namespace[/]"
                    )
                    return 2
                await _drop_namespace(redis, namespace)  # our private server: a leftover of ours
            created = True
            await create_topics(settings, partitions=3)
            plan = demo_events(server, sorted(images), hotels, per_hotel)
            await publish(settings, plan.events)
            console.print(f"published {len(plan.events)} events to '{settings.topic}'")
            console.print("loading the model (ImageNet EfficientNet-Lite0 + shipped heads) ...")
            model = load_model(settings)
            summary = await run_scorer(
                settings, model, redis=redis, until_caught_up=True, install_signal_handlers=False
            )
            console.print(
                f"scored in {summary.seconds:.1f}s: {summary.events} events, {summary.applied} images applied, "
                f"{summary.deleted} deleted, {summary.dead_lettered} dead-lettered, {len(summary.hotels)} hotels"
            )
            galleries = {}
            for hid in sorted(summary.hotels):
                raw = await redis.get(keys.gallery_key(namespace, hid))
                if raw:
                    galleries[hid] = orjson.loads(raw)
            print_galleries(console, galleries, plan.photo_of)
            dead = await read_dlq(settings, summary.dead_lettered)
            yours = 0
            scripted: dict[str, str] = {}
            for rec in dead:
                what, reason, error = describe_dead_letter(rec, plan)
                console.print(f"DLQ {settings.dlq_topic}[{rec.partition}]@{rec.offset}: {what}: {reason} ({error})")
                if what in plan.expected_dlq:
                    scripted[what] = reason
                else:
                    yours += 1
            ok = _accounted(console, plan, galleries, summary.dead_lettered, dead, scripted, yours)
            console.print("[green]demo finished[/]" if ok else "[red]demo finished with unexpected counts[/]")
            if ok and serve:
                await serve_until_stopped(console, settings, redis, model, sorted(galleries))
            return 0 if ok else 1
        finally:
            if created:
                await _drop_namespace(redis, namespace)
            await redis.aclose()
            await server.stop()


def _accounted(
    console: Console,
    plan: DemoPlan,
    galleries: dict[str, dict],
    dead_lettered: int,
    dead: list,
    scripted: dict[str, str],
    yours: int,
) -> bool:
    """Every event ended where it should: the scripted ones in the DLQ with their reason, the
    deleted photo gone, each photo either in its hotel's gallery or in the DLQ (reported above)."""
    problems = [
        f"{what}: expected reason {want}, got {scripted.get(what, 'no dead letter')}"
        for what, want in plan.expected_dlq.items()
        if scripted.get(what) != want
    ]
    shown = {(h, img["image_id"]) for h, doc in galleries.items() for img in doc["images"]}
    if ("h-1000", DELETED_ID) in shown:
        problems.append(f"{DELETED_ID} still shown after its delete")
    lost = [p for p in plan.photo_of if p not in shown]
    if len(lost) != yours:
        problems.append(f"{len(lost)} photos missing from galleries, {yours} of them in the DLQ")
    if len(dead) != dead_lettered:
        problems.append(f"{dead_lettered} dead-lettered, {len(dead)} read back from the DLQ")
    if yours:
        console.print(f"{yours} events with your photos went to the DLQ (named above, with the reason)")
    for line in problems:
        console.print(f"[red]{line}[/]")
    return not problems


async def serve_until_stopped(console: Console, settings: Settings, redis, model, hotel_ids: list[str]) -> None:
    """The read API and gallery page on serve_host:serve_port over the demo's Redis, until Ctrl-C."""
    from aiohttp import web

    from ..api.serve import create_app

    app = create_app(settings, redis=redis)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.serve_host, settings.serve_port).start()
    except OSError as exc:
        await runner.cleanup()
        console.print(
            f"[red]cannot serve on {settings.serve_host}:{settings.serve_port} ({exc.strerror}): "
            "pass --serve-port (0 = any free port)[/]"
        )
        raise SystemExit(2) from None
    host, port = runner.addresses[0][:2]
    base = f"http://{host}:{port}/"
    first = f"{base}?hotel={hotel_ids[0]}" if hotel_ids else base
    console.print(f"gallery page: {first}  (all hotels: {base}); Ctrl-C stops the demo", soft_wrap=True)
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        console.print("stopping: page, photo server, scorer's Redis and broker")
        await runner.cleanup()


async def _namespace_keys(redis, namespace: str) -> int:
    n = 0
    async for _ in redis.scan_iter(match=keys.namespace_pattern(namespace), count=500):
        n += 1
    return n


async def _drop_namespace(redis, namespace: str) -> None:
    async for key in redis.scan_iter(match=keys.namespace_pattern(namespace), count=500):
        await redis.unlink(key)


def main(settings: Settings, images_dir: str | None, hotels: int, per_hotel: int, serve: bool = False) -> int:
    images = load_photos(images_dir)  # before anything starts: a folder without photos is one line
    return asyncio.run(run_demo(settings, images, hotels, per_hotel, serve, own=images_dir is not None))
