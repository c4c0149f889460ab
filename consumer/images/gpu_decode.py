"""Batched JPEG decode + resize on the GPU (nvJPEG via torchvision), with a CPU fallback.

On a GPU machine the CPU becomes the bottleneck long before the model does:
one CPU thread decodes ~80-170 1600x1200 JPEGs/s (docs/references.md) while an H200
scores > 20,000 img/s. ``torchvision.io.decode_jpeg(list, device="cuda")``
decodes a whole list in one batched nvJPEG call (~7,800 img/s on one A100,
pytorch/vision PR #8496), and the resize to the model size runs there too.

Same safety rules as :mod:`galleryrank.consumer.images.decode`: the header is parsed by Pillow
first (format allow-list, declared-size cap) before nvJPEG sees a byte, and
anything that is not a baseline/progressive JPEG nvJPEG accepts (PNG, WebP,
CMYK JPEG, corrupt data) goes through the CPU decoder, which keeps its own
checks and reasons. Output matches ``models.preprocess.preprocess_image``:
uint8 (N, 3, size, size), squashed with antialiased bilinear resampling.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import numpy as np

from ..tasks import cancel_and_wait, next_batch
from .decode import (
    _TRANSPOSING_ORIENTATIONS,
    DecodedImage,
    DecodeError,
    _check_dimensions,
    _exif_orientation,
    check_jpeg_scans,
    decode_image,
    phash_int,
)

if TYPE_CHECKING:  # torch is imported lazily: the module loads on CPU-only, torch-less installs
    import torch

_JPEG_SOI = b"\xff\xd8\xff"


@dataclass
class DecodedBatch:
    pixels: torch.Tensor  # uint8 (N_ok, 3, size, size) on the requested device, in input order minus failures
    ok: list[int]  # input indices that decoded, in pixels order
    failed: dict[int, DecodeError] = field(default_factory=dict)  # input index -> why
    on_gpu: int = 0  # how many of `ok` took the batched torchvision path (nvJPEG on a GPU)
    sizes: dict[int, tuple[int, int]] = field(default_factory=dict)  # input index -> oriented (width, height)


def gpu_decode_available(device: str) -> bool:
    if not device.startswith("cuda"):
        return False  # no torch import on CPU scorers
    import torch

    return torch.cuda.is_available()


def _jpeg_header_ok(data: bytes, max_pixels: int) -> tuple[int, int] | None:
    """(width, height) of the oriented image when Pillow sees a plain RGB/greyscale JPEG within
    the pixel cap (header only, no decode); None for anything the CPU path should take."""
    from PIL import Image

    if not data.startswith(_JPEG_SOI):
        return None
    try:
        with Image.open(io.BytesIO(data), formats=("JPEG",)) as img:
            _check_dimensions(img.width, img.height, max_pixels)
            check_jpeg_scans(data)  # a scan bomb is as slow for nvJPEG's CPU stage as for libjpeg
            if img.mode not in ("RGB", "L"):  # CMYK/YCCK JPEGs: Pillow's CPU path converts them properly
                return None
            swap = _exif_orientation(img) in _TRANSPOSING_ORIENTATIONS
            return (img.height, img.width) if swap else (img.width, img.height)
    except DecodeError:
        raise
    except Exception:  # noqa: BLE001 - not a JPEG Pillow can read: let the CPU path name the reason
        return None


def resize_batch(images: list[torch.Tensor], size: int) -> torch.Tensor:
    """(3, H, W) uint8 tensors of any sizes -> (N, 3, size, size) uint8, antialiased bilinear like Pillow."""
    import torch

    out = torch.empty((len(images), 3, size, size), dtype=torch.uint8, device=images[0].device)
    for i, img in enumerate(images):
        x = img.unsqueeze(0).float()
        if img.shape[1:] != (size, size):
            x = torch.nn.functional.interpolate(
                x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
        out[i] = x.round_().clamp_(0, 255)[0].to(torch.uint8)
    return out


def decode_batch(
    datas: list[bytes],
    size: int = 224,
    device: str = "cuda",
    max_pixels: int = 50_000_000,
    torchvision_on_cpu: bool = False,
) -> DecodedBatch:
    """Decode and resize a list of image bodies; nvJPEG for the JPEGs it can take, the CPU path for the rest.

    Without a GPU everything takes ``galleryrank.consumer.images.decode`` (Pillow with draft: the
    fastest CPU decoder here) unless ``torchvision_on_cpu`` asks for the GPU
    code path run by torchvision's CPU decoder (to test that path without a GPU).
    """
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    target = device if gpu_decode_available(device) else "cpu"
    results: dict[int, torch.Tensor] = {}
    failed: dict[int, DecodeError] = {}
    sizes: dict[int, tuple[int, int]] = {}
    gpu_idx: list[int] = []
    if target != "cpu" or torchvision_on_cpu:
        for i, data in enumerate(datas):
            try:
                size_wh = _jpeg_header_ok(data, max_pixels)
            except DecodeError as exc:
                failed[i] = exc
                continue
            if size_wh is not None:
                gpu_idx.append(i)
                sizes[i] = size_wh
    on_gpu = 0
    if gpu_idx:
        tensors = [torch.frombuffer(bytearray(datas[i]), dtype=torch.uint8) for i in gpu_idx]
        try:
            decoded = decode_jpeg(tensors, mode=ImageReadMode.RGB, device=target, apply_exif_orientation=True)
        except RuntimeError:
            decoded = None  # one bad body fails the batched call: fall back per image below
        if decoded is not None:
            resized = resize_batch(decoded, size)
            for j, i in enumerate(gpu_idx):
                results[i] = resized[j]
            on_gpu = len(gpu_idx)
    for i, data in enumerate(datas):
        if i in results or i in failed:
            continue
        try:
            decoded = decode_image(data, size, max_pixels)
        except DecodeError as exc:
            failed[i] = exc
            continue
        results[i] = torch.from_numpy(np.ascontiguousarray(decoded.pixels)).to(target)
        sizes[i] = (decoded.width, decoded.height)
    ok = sorted(results)
    if ok:
        pixels = torch.stack([results[i] for i in ok])
    else:
        pixels = torch.empty((0, 3, size, size), dtype=torch.uint8, device=target)
    return DecodedBatch(pixels=pixels, ok=ok, failed=failed, on_gpu=on_gpu, sizes=sizes)


class GpuDecoder:
    """The scorer's decode stage on a GPU: bodies from many tasks, decoded in batches.

    Same pattern as :class:`galleryrank.consumer.stream.batcher.MicroBatcher`: when the worker is
    free it takes every queued body (up to ``max_batch``) and decodes them in
    one ``decode_batch`` call on its own thread. Each caller gets a
    :class:`~galleryrank.consumer.images.decode.DecodedImage` like ``decode_image`` returns
    (host uint8 pixels: 150 KB copied back per image, needed for the pHash
    anyway and cheap next to the ~0.3 MB JPEG that went up), or its own
    :class:`DecodeError`.
    """

    def __init__(self, device: str, size: int, max_pixels: int, max_batch: int = 256, torchvision_on_cpu: bool = False):
        self.device, self.size, self.max_pixels, self.max_batch = device, size, max_pixels, max_batch
        self.torchvision_on_cpu = torchvision_on_cpu
        self._queue: asyncio.Queue[tuple[bytes, asyncio.Future[DecodedImage]]] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpu-decode")
        self._hash_pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="phash")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="gpu-decoder")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._executor.shutdown(wait=True)
        self._hash_pool.shutdown(wait=True)

    async def decode(self, data: bytes) -> DecodedImage:
        fut: asyncio.Future[DecodedImage] = asyncio.get_running_loop().create_future()
        await self._queue.put((data, fut))
        return await fut

    def _decode_many(self, bodies: list[bytes]) -> list[DecodedImage | DecodeError]:
        from PIL import Image

        batch = decode_batch(bodies, self.size, self.device, self.max_pixels, self.torchvision_on_cpu)
        host = batch.pixels.cpu().numpy()
        out: list[DecodedImage | DecodeError | None] = [batch.failed.get(i) for i in range(len(bodies))]
        # pHash on the CPU (~0.6 ms each, Pillow and scipy release the GIL for most of it):
        # spread over the cores, or one thread would cap the scorer at ~1,700 img/s.
        pixels = [np.ascontiguousarray(host[j]) for j in range(len(batch.ok))]
        hashes = self._hash_pool.map(
            lambda px: phash_int(Image.fromarray(np.ascontiguousarray(px.transpose(1, 2, 0)), "RGB")), pixels
        )
        for i, px, phash in zip(batch.ok, pixels, hashes):
            width, height = batch.sizes[i]
            out[i] = DecodedImage(pixels=px, phash=phash, width=width, height=height)
        return cast("list[DecodedImage | DecodeError]", out)  # every index is in batch.failed or batch.ok

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await next_batch(self._queue, self.max_batch)
            if not items:
                continue
            results: Sequence[DecodedImage | Exception]
            try:
                results = await loop.run_in_executor(self._executor, self._decode_many, [d for d, _ in items])
            except Exception as exc:  # noqa: BLE001 - a GPU failure fails this batch, not the service
                results = [exc] * len(items)
            for (_, fut), res in zip(items, results):
                if fut.done():
                    continue
                if isinstance(res, BaseException):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)
