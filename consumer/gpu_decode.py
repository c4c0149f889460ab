"""Batched JPEG decode + resize on the GPU (nvJPEG via torchvision), with a CPU fallback.

On a GPU machine the CPU becomes the bottleneck long before the model does:
one CPU thread decodes ~80-170 1600x1200 JPEGs/s (anchors.md) while an H200
scores > 20,000 img/s. ``torchvision.io.decode_jpeg(list, device="cuda")``
decodes a whole list in one batched nvJPEG call (~7,800 img/s on one A100,
pytorch/vision PR #8496), and the resize to the model size runs there too.

Same safety rules as :mod:`consumer.decode`: the header is parsed by Pillow
first (format allow-list, declared-size cap) before nvJPEG sees a byte, and
anything that is not a baseline/progressive JPEG nvJPEG accepts (PNG, WebP,
CMYK JPEG, corrupt data) goes through the CPU decoder, which keeps its own
checks and reasons. Output matches ``models.preprocess.preprocess_image``:
uint8 (N, 3, size, size), squashed with antialiased bilinear resampling.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import torch

from .decode import DecodeError, _check_dimensions, decode_image

_JPEG_SOI = b"\xff\xd8\xff"


@dataclass
class DecodedBatch:
    pixels: torch.Tensor  # uint8 (N_ok, 3, size, size) on the requested device, in input order minus failures
    ok: list[int]  # input indices that decoded, in pixels order
    failed: dict[int, DecodeError] = field(default_factory=dict)  # input index -> why
    on_gpu: int = 0  # how many of `ok` took the batched torchvision path (nvJPEG on a GPU)


def gpu_decode_available(device: str) -> bool:
    return device.startswith("cuda") and torch.cuda.is_available()


def _jpeg_header_ok(data: bytes, max_pixels: int) -> bool:
    """True when Pillow sees a plain RGB/greyscale JPEG within the pixel cap (header only, no decode)."""
    from PIL import Image

    if not data.startswith(_JPEG_SOI):
        return False
    try:
        with Image.open(io.BytesIO(data), formats=("JPEG",)) as img:
            _check_dimensions(img.width, img.height, max_pixels)
            return img.mode in ("RGB", "L")  # CMYK/YCCK JPEGs: Pillow's CPU path converts them properly
    except DecodeError:
        raise
    except Exception:  # noqa: BLE001 - not a JPEG Pillow can read: let the CPU path name the reason
        return False


def resize_batch(images: list[torch.Tensor], size: int) -> torch.Tensor:
    """(3, H, W) uint8 tensors of any sizes -> (N, 3, size, size) uint8, antialiased bilinear like Pillow."""
    out = torch.empty((len(images), 3, size, size), dtype=torch.uint8, device=images[0].device)
    for i, img in enumerate(images):
        x = img.unsqueeze(0).float()
        if img.shape[1:] != (size, size):
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
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

    Without a GPU everything takes ``consumer.decode`` (Pillow with draft: the
    fastest CPU decoder here) unless ``torchvision_on_cpu`` asks for the GPU
    code path run by torchvision's CPU decoder (to test that path without a GPU).
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    target = device if gpu_decode_available(device) else "cpu"
    results: dict[int, torch.Tensor] = {}
    failed: dict[int, DecodeError] = {}
    gpu_idx: list[int] = []
    if target != "cpu" or torchvision_on_cpu:
        for i, data in enumerate(datas):
            try:
                if _jpeg_header_ok(data, max_pixels):
                    gpu_idx.append(i)
            except DecodeError as exc:
                failed[i] = exc
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
            pixels = decode_image(data, size, max_pixels).pixels
        except DecodeError as exc:
            failed[i] = exc
            continue
        results[i] = torch.from_numpy(np.ascontiguousarray(pixels)).to(target)
    ok = sorted(results)
    if ok:
        pixels = torch.stack([results[i] for i in ok])
    else:
        pixels = torch.empty((0, 3, size, size), dtype=torch.uint8, device=target)
    return DecodedBatch(pixels=pixels, ok=ok, failed=failed, on_gpu=on_gpu)
