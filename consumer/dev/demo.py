"""`galleryrank demo`: the whole path on embedded defaults, one command.

Starts Tansu and Redis on loopback, serves sample photos over local HTTP,
publishes events for a few hotels (plus one bad event and one unreachable
image), runs the real scorer until the backlog is done, prints each hotel's
ranked gallery and where the dead letters went, and shuts everything down.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from typing import TYPE_CHECKING

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
from .samples import ImageServer, folder_images, skimage_jpegs

if TYPE_CHECKING:
    from aiokafka.structs import ConsumerRecord


def demo_events(
    server: ImageServer, names: list[str], hotels: int, per_hotel: int, seed: int = 7
) -> list[Event | tuple[bytes, bytes]]:
    """Events for `hotels` hotels, each showing a random subset of the photos."""
    rng = random.Random(seed)
    events: list[Event | tuple[bytes, bytes]] = []
    for h in range(hotels):
        hotel = f"h-{1000 + h}"
        chosen = rng.sample(names, min(per_hotel, len(names)))
        for i, name in enumerate(chosen):
            events.append(upserted(hotel, f"img-{i}", server.url(name)))
    # One image removed again, one that cannot be fetched, one that is not JSON.
    events.append(deleted("h-1000", "img-0"))
    events.append(upserted("h-1001", "img-missing", server.url("no-such-photo.jpg")))
    events.append((b"h-1002", b"{this is not json"))
    return events


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


def print_galleries(console: Console, galleries: dict[str, dict]) -> None:
    for hotel_id, doc in galleries.items():
        table = Table(title=f"{hotel_id}  (model {doc['model_version']})", title_justify="left")
        for col in ("position", "image_id", "area", "area conf.", "aesthetic", "why here", "url"):
            table.add_column(col, justify="right" if col in ("position", "area conf.", "aesthetic") else "left")
        for pos, img in enumerate(doc["images"], start=1):
            table.add_row(
                str(pos),
                img["image_id"],
                img["area"],
                f"{img['area_confidence']:.2f}",
                f"{img['aesthetic']:.2f}",
                img.get("reason", ""),
                img["url"].rsplit("/", 1)[-1],
            )
        console.print(table)


async def run_demo(settings: Settings, images_dir: str | None, hotels: int, per_hotel: int) -> int:
    console = Console(width=None if sys.stdout.isatty() else 120)
    images = folder_images(images_dir) if images_dir else skimage_jpegs()
    console.print(f"[bold]galleryrank demo[/]: {len(images)} sample photos, {hotels} hotels")
    with EmbeddedKafka() as kafka, EmbeddedRedis() as redis_server:
        namespace = settings.namespace or "demo"
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
            f"Kafka (Tansu) at {kafka.bootstrap_servers}; Redis at {redis_server.url}; namespace '{namespace}'"
        )
        server = await ImageServer(images).start()
        redis = redis_client(settings)
        try:
            await _drop_namespace(redis, namespace)
            await create_topics(settings, partitions=3)
            events = demo_events(server, sorted(images), hotels, per_hotel)
            await publish(settings, events)
            console.print(f"published {len(events)} events to '{settings.topic}'")
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
            print_galleries(console, galleries)
            dead = await read_dlq(settings, summary.dead_lettered)
            for rec in dead:
                headers = {k: v.decode() for k, v in rec.headers}
                console.print(
                    f"DLQ {settings.dlq_topic}[{rec.partition}]@{rec.offset}: key={rec.key!r} "
                    f"reason={headers.get('reason')} ({headers.get('error')})"
                )
            ok = len(galleries) == hotels and summary.dead_lettered == 2 and len(dead) == 2
            console.print("[green]demo finished[/]" if ok else "[red]demo finished with unexpected counts[/]")
            return 0 if ok else 1
        finally:
            await _drop_namespace(redis, namespace)
            await redis.aclose()
            await server.stop()


async def _drop_namespace(redis, namespace: str) -> None:
    async for key in redis.scan_iter(match=keys.namespace_pattern(namespace), count=500):
        await redis.unlink(key)


def main(settings: Settings, images_dir: str | None, hotels: int, per_hotel: int) -> int:
    return asyncio.run(run_demo(settings, images_dir, hotels, per_hotel))
