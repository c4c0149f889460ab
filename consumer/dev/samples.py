"""Sample photos served over real local HTTP, for the demo, tests and benchmarks.

By default the photos are the ones scikit-image ships (`skimage.data`, loaded
offline); `--images DIR` serves a user's own folder instead.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

# skimage.data photos that exist offline in the wheel (colour and grayscale).
SKIMAGE_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "hubble_deep_field",
    "immunohistochemistry",
    "motorcycle_left",
    "retina",
    "page",
    "moon",
    "text",
)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


def skimage_jpegs(quality: int = 90) -> dict[str, bytes]:
    """name.jpg -> JPEG bytes for the skimage sample photos that load offline."""
    import numpy as np
    from PIL import Image
    from skimage import data

    out = {}
    for name in SKIMAGE_PHOTOS:
        loader = getattr(data, name, None)
        if loader is None:
            continue
        try:
            arr = loader()
        except Exception:  # a sample that would need a download: skip it
            continue
        if isinstance(arr, tuple):
            arr = arr[0]
        arr = np.asarray(arr)
        if arr.dtype != np.uint8:
            arr = (255 * (arr - arr.min()) / max(1e-9, float(arr.max() - arr.min()))).astype(np.uint8)
        img = Image.fromarray(arr)
        if img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        out[f"{name}.jpg"] = buf.getvalue()
    return out


def folder_images(folder: str | Path) -> dict[str, bytes]:
    """A user's photos by name: a flat folder (``DIR/*.jpg``: the file name) or one folder per
    area as `train tagger` wants it (``DIR/<area>/*.jpg``: ``<area>/<file>``, so same-named files
    in different folders never collide; ``photo_label`` reads the area back)."""
    root = Path(folder)
    files = sorted(
        p
        for p in [*root.iterdir(), *(c for d in root.iterdir() if d.is_dir() for c in d.iterdir())]
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not files:
        raise ValueError(
            f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {root} or its sub-folders "
            "(flat DIR/*.jpg, or DIR/<area>/*.jpg)"
        )
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


def photo_label(name: str) -> str:
    """The sub-folder of a photo named by folder_images ('' for a flat folder)."""
    return name.rsplit("/", 1)[0] if "/" in name else ""


_CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}


@dataclass
class ImageServer:
    """An aiohttp server on loopback serving name -> bytes; unknown names answer 404."""

    images: dict[str, bytes]
    host: str = "127.0.0.1"
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, name: str) -> str:
        return f"{self.base_url}/images/{quote(name)}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        body = self.images.get(name)
        if body is None:
            raise web.HTTPNotFound()
        ctype = _CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")
        return web.Response(body=body, content_type=ctype)

    async def start(self) -> ImageServer:
        app = web.Application()
        app.router.add_get("/images/{name:.+}", self._handle)  # <area>/<file> names have a slash
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the port bound (self.port may be 0)
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
