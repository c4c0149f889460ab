"""The naive consumer the pipeline is measured against (bench/pipeline_bench.py, row (c)).

One event at a time, as a first version would be written: fetch one record,
download its image, decode it, score it as a batch of 1, write it to Redis in
its own `GalleryStore.apply`, commit its offset, then take the next record.
It reuses the real downloader, decoder, model and store, so the only
difference from `galleryrank.consumer.stream.scorer.GalleryScorer` is the architecture (no
overlap, no batching, one write and one commit per event).
"""

from __future__ import annotations

import time

from aiokafka import TopicPartition

from galleryrank.consumer.images.decode import DecodeError, decode_image
from galleryrank.consumer.images.download import DownloadError, ImageDownloader
from galleryrank.consumer.settings import Settings
from galleryrank.consumer.state.records import Fence, ImageChange
from galleryrank.consumer.state.store import GalleryStore
from galleryrank.consumer.stream.events import ImageDeleted, InvalidEvent, parse_event
from galleryrank.consumer.stream.kafka import make_consumer


async def run_naive(settings: Settings, model, redis, namespace: str, max_events: int) -> dict:
    """Consume up to `max_events` records one by one; returns counts and the rate after the first record."""
    store = GalleryStore(redis)
    consumer = make_consumer(settings, settings.group_id)
    consumer.subscribe([settings.topic])
    applied = failed = 0
    first_at = None
    async with ImageDownloader(settings) as downloader:
        await consumer.start()
        try:
            for _ in range(max_events):
                record = await consumer.getone()
                if first_at is None:
                    first_at = time.perf_counter()
                event = parse_event(record.key, record.value)
                if isinstance(event, (InvalidEvent, ImageDeleted)):
                    failed += isinstance(event, InvalidEvent)
                else:
                    try:
                        decoded = decode_image(await downloader.fetch(event.url), model.input_size)
                    except (DownloadError, DecodeError):
                        failed += 1
                    else:
                        out = model.score(decoded.pixels[None])  # batch of 1
                        rec = ImageChange(
                            image_id=event.image_id,
                            fence=Fence(record.partition, record.offset),
                            event_id=event.event_id,
                            url=event.url,
                            aesthetic=float(out.aesthetic[0]),
                            aesthetic_dist=tuple(float(x) for x in out.aesthetic_dist[0]),
                            area_probs={a: float(p) for a, p in zip(model.areas, out.area_probs[0])},
                            embedding=out.embedding[0],
                            phash=decoded.phash,
                            model_version=model.model_version,
                        )
                        await store.apply(namespace, [(event.hotel_id, rec)])
                        applied += 1
                await consumer.commit({TopicPartition(record.topic, record.partition): record.offset + 1})
        finally:
            await consumer.stop()
    seconds = time.perf_counter() - (first_at or time.perf_counter())
    return {
        "events": applied + failed,
        "applied": applied,
        "failed": failed,
        "seconds": seconds,
        "events_per_s": (applied + failed) / seconds if seconds else 0.0,
    }
