"""`galleryrank sheet HOTEL`: the hotel's current gallery as a contact-sheet PNG.

What a person looks at to judge an order: each position's photo with its number,
score, area and confidence, and the reason for its place. Reads the gallery
document from Redis (the read contract, active namespace unless --namespace) and
downloads the photos under the scorer's download rules (allowed networks, size
and time limits). A photo that cannot be downloaded gets a grey tile that says so.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from PIL import Image, ImageDraw

from .options import settings, split_settings

TILE_W, TILE_H, CAPTION_H, COLUMNS = 200, 150, 46, 8
Tile = tuple[Image.Image | Path | None, str, str, str]  # photo (None = missing), three caption lines


def render_sheet(title: str, tiles: Sequence[Tile], out: Path, columns: int = COLUMNS) -> Path:
    """One PNG grid of thumbnails in display order, three caption lines under each."""
    rows = max(1, -(-len(tiles) // columns))
    sheet = Image.new("RGB", (columns * TILE_W, 24 + rows * (TILE_H + CAPTION_H)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 5), title, fill="black")
    for k, (photo, *lines) in enumerate(tiles):
        x, y = (k % columns) * TILE_W, 24 + (k // columns) * (TILE_H + CAPTION_H)
        thumb = _thumbnail(photo)
        if thumb is None:
            draw.rectangle((x + 2, y + 2, x + TILE_W - 3, y + TILE_H - 3), fill=(200, 200, 200))
            draw.text((x + 8, y + TILE_H // 2), "(photo not downloaded)", fill="black")
        else:
            sheet.paste(thumb, (x + (TILE_W - thumb.width) // 2, y + (TILE_H - thumb.height) // 2))
        for j, line in enumerate(lines):
            draw.text((x + 3, y + TILE_H + 1 + 14 * j), line[:34], fill="black" if j else "darkblue")
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def _thumbnail(photo: Image.Image | Path | None) -> Image.Image | None:
    if photo is None:
        return None
    img = Image.open(photo) if isinstance(photo, Path) else photo
    try:
        thumb = img.convert("RGB")
        thumb.thumbnail((TILE_W - 4, TILE_H - 4))
        return thumb
    finally:
        if isinstance(photo, Path):
            img.close()


def tiles_of(document: dict[str, Any], photos: Sequence[Image.Image | None]) -> list[Tile]:
    """Caption lines of each image entry of a gallery document (README's read contract)."""
    tiles: list[Tile] = []
    for pos, (entry, photo) in enumerate(zip(document.get("images", []), photos)):
        score = entry.get("aesthetic")
        conf = entry.get("area_confidence")
        tiles.append(
            (
                photo,
                f"#{pos + 1}  {score:.2f}" if isinstance(score, int | float) else f"#{pos + 1}",
                f"{entry.get('area', '?')} {conf:.2f}"
                if isinstance(conf, int | float)
                else str(entry.get("area", "?")),
                str(entry.get("reason", "")),
            )
        )
    return tiles


async def _photos(settings_: Any, urls: Sequence[str]) -> list[Image.Image | None]:
    from PIL import UnidentifiedImageError

    from ..images.download import DownloadError, ImageDownloader

    async with ImageDownloader(settings_) as downloader:

        async def one(url: str) -> Image.Image | None:
            try:
                body = await downloader.fetch(url)
                img = Image.open(io.BytesIO(body))
                img.draft("RGB", (TILE_W * 2, TILE_H * 2))  # a thumbnail needs no full decode
                return img.convert("RGB")
            except (DownloadError, UnidentifiedImageError, OSError, ValueError):
                return None

        return list(await asyncio.gather(*(one(u) for u in urls)))


@click.command()
@click.argument("hotel")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="[default: sheet-HOTEL.png]")
@click.option(
    "--limit", type=click.IntRange(1), default=40, show_default=True, help="Positions shown (Booking shows 40)"
)
@settings("redis", "download")
def sheet(hotel: str, out: Path | None, limit: int, **kwargs: Any) -> None:
    """Render HOTEL's current gallery as a contact sheet PNG: position, photo, area + confidence, score, reason."""
    import orjson

    from ..runtime import redis_client
    from ..state import keys
    from ..state.namespace import active_namespace

    cfg, _ = split_settings(kwargs)

    async def read() -> tuple[str, bytes | None]:
        redis = redis_client(cfg)
        try:
            namespace = cfg.namespace or await active_namespace(redis)
            return namespace, await redis.get(keys.gallery_key(namespace, hotel))
        finally:
            await redis.aclose()

    namespace, raw = asyncio.run(read())
    if raw is None:
        click.echo(f"no gallery for hotel {hotel!r} in namespace {namespace}", err=True)
        sys.exit(1)
    document = orjson.loads(raw)
    document["images"] = document.get("images", [])[:limit]
    photos = asyncio.run(_photos(cfg, [str(e.get("url", "")) for e in document["images"]]))
    title = f"hotel {hotel}  namespace {namespace}  model {document.get('model_version', '?')}  updated {document.get('updated_at', '?')}"
    path = render_sheet(title, tiles_of(document, photos), out or Path(f"sheet-{hotel}.png"))
    missing = sum(p is None for p in photos)
    click.echo(f"wrote {path}: {len(photos)} positions" + (f", {missing} photos not downloaded" if missing else ""))
