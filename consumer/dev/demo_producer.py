"""`galleryrank demo-producer`: sample photos over HTTP plus events that point at them.

For a real deployment's smoke test (the `demo` profile of compose.yaml): it
serves the scikit-image sample photos (or `--images DIR`), publishes
`--hotels` hotels' worth of `image.upserted` events whose URLs use
`--public-base-url` (the name the scorer reaches this container by), then
keeps serving so the scorer can download them.
"""

from __future__ import annotations

import asyncio
import random

import click

from ..cli.options import settings, split_settings
from ..logs import setup_logging
from ..stream.produce import publish, upserted
from .samples import ImageServer, folder_images, skimage_jpegs


async def _run(settings, images_dir, hotels, per_hotel, host, port, public_base_url, serve_seconds, seed) -> None:
    images = folder_images(images_dir) if images_dir else skimage_jpegs()
    server = await ImageServer(images, host=host, port=port).start()
    base = (public_base_url or server.base_url).rstrip("/")
    rng = random.Random(seed)
    names = sorted(images)
    events = [
        upserted(f"h-{1000 + h}", f"img-{i}", f"{base}/images/{name}")
        for h in range(hotels)
        for i, name in enumerate(rng.sample(names, min(per_hotel, len(names))))
    ]
    sent = await publish(settings, events)
    click.echo(
        f"published {sent} events for {hotels} hotels to {settings.topic}; serving {len(images)} photos at {base}"
    )
    try:
        if serve_seconds > 0:
            await asyncio.sleep(serve_seconds)
        else:
            await asyncio.Event().wait()  # serve until stopped
    finally:
        await server.stop()


def register(group: click.Group) -> None:
    @group.command("demo-producer")
    @click.option(
        "--images",
        "images_dir",
        type=click.Path(exists=True, file_okay=False),
        default=None,
        help="Folder of photos instead of the scikit-image samples",
    )
    @click.option("--hotels", type=int, default=20, show_default=True)
    @click.option("--per-hotel", type=int, default=8, show_default=True)
    @click.option("--listen-host", default="0.0.0.0", show_default=True, help="Address the photo server binds")
    @click.option("--port", type=int, default=8000, show_default=True, help="Port of the photo server")
    @click.option("--public-base-url", default=None, help="Base URL the scorer uses to reach this server")
    @click.option("--serve-seconds", type=float, default=0, show_default=True, help="Stop after this long (0 = never)")
    @click.option("--seed", type=int, default=7, show_default=True)
    @settings("kafka", "topic", "logging")
    def demo_producer(images_dir, hotels, per_hotel, listen_host, port, public_base_url, serve_seconds, seed, **kwargs):
        """Serve sample photos over HTTP and publish events that point at them."""
        settings, _ = split_settings(kwargs)
        setup_logging(settings.log_level, settings.log_json)
        asyncio.run(
            _run(settings, images_dir, hotels, per_hotel, listen_host, port, public_base_url, serve_seconds, seed)
        )
