"""Which decoder a scorer runs (setting ``decode_path``), chosen once at start, with the reason kept.

* ``hardware``: the GPU's JPEG engine through nvImageCodec (:mod:`.hw_decode`, extra ``gpu``);
  pixels stay on the GPU; what it refuses falls back to the CPU decode pool.
* ``nvjpeg``: torchvision's batched nvJPEG (:mod:`.gpu_decode`): Huffman on the CPU, the rest on the GPU.
* ``cpu``: Pillow in the killable worker pool (:mod:`.decode_pool`).
* ``auto``: ``hardware`` where a CUDA device has a JPEG engine and nvImageCodec is installed,
  else ``nvjpeg`` on CUDA, else ``cpu``.
* ``nvimgcodec-cpu``: the hardware path's code on nvImageCodec's CPU backend (in-process
  libjpeg-turbo). For tests and benchmarks on machines without a GPU, not for production: its
  decode runs in the scorer's process, outside the pool's CPU budget.

A path that cannot run here (forced ``hardware`` without a GPU, nvImageCodec not installed)
falls back to the next one with its reason in the log and in ``galleryrank_decode_path``.
Nothing here imports torch or nvImageCodec unless the device is CUDA or the path asks for it,
so CPU-only installs never load them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from .. import metrics
from .decode import DecodedImage

log = logging.getLogger(__name__)

DecodePath = Literal["auto", "hardware", "nvjpeg", "cpu", "nvimgcodec-cpu"]
DECODE_PATHS: tuple[str, ...] = ("auto", "hardware", "nvjpeg", "cpu", "nvimgcodec-cpu")


class BatchedDecoder(Protocol):
    def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def decode(self, data: bytes) -> DecodedImage: ...


@dataclass(frozen=True)
class Choice:
    path: str  # hardware | nvjpeg | cpu | nvimgcodec-cpu
    reason: str  # why this one ("forced", "auto", or why the asked-for path could not run)


def _cuda(device: str) -> bool:
    if not device.startswith("cuda"):
        return False  # no torch import for a CPU scorer's choice
    import torch

    return bool(torch.cuda.is_available())


def choose(setting: str, device: str, hardware_check: Callable[[str], str | None] | None = None) -> Choice:
    """The decode path for ``setting`` on ``device``; ``hardware_check`` (tests) replaces the probe."""
    if setting not in DECODE_PATHS:
        raise ValueError(f"decode_path must be one of {DECODE_PATHS}, not {setting!r}")
    if setting == "cpu":
        return Choice("cpu", "forced")
    if setting == "nvimgcodec-cpu":
        try:
            import nvidia.nvimgcodec  # noqa: F401
        except ImportError:
            return Choice("cpu", "nvimgcodec-cpu asked for: nvimgcodec_not_installed")
        return Choice("nvimgcodec-cpu", "forced")
    if not _cuda(device):
        return Choice("cpu", "auto" if setting == "auto" else f"{setting} asked for: no_cuda_device")
    if setting in ("auto", "hardware"):
        if hardware_check is None:
            from . import hw_decode  # only now: a CUDA device asked for the hardware path

            hardware_check = hw_decode.hardware_check
        why = hardware_check(device)
        if why is None:
            return Choice("hardware", "auto" if setting == "auto" else "forced")
        if setting == "hardware":
            return Choice("nvjpeg", f"hardware asked for: {why}")
        return Choice("nvjpeg", f"auto: hardware unavailable: {why}")
    return Choice("nvjpeg", "forced")


def build(
    setting: str,
    model: Any,
    max_pixels: int,
    max_batch: int,
    fallback: Callable[[bytes], Awaitable[DecodedImage]],
    max_bytes: int | None = None,
) -> BatchedDecoder | None:
    """The scorer's batched decoder for the chosen path, or None for the CPU decode pool."""
    device = str(getattr(model, "device", "cpu"))
    choice = choose(setting, device)
    (log.warning if choice.reason not in ("auto", "forced") else log.info)(
        "decode path: %s (%s)", choice.path, choice.reason
    )
    metrics.DECODE_PATH.labels(path=choice.path, reason=choice.reason).set(1)
    if choice.path == "cpu":
        return None
    size = model.input_size
    if choice.path == "nvjpeg":
        from .gpu_decode import GpuDecoder

        return GpuDecoder(device, size, max_pixels, max_batch=max_batch)
    from .hw_decode import Codec, HardwareDecoder, HardwareUnavailable

    try:
        codec = Codec(device, backend="cpu" if choice.path == "nvimgcodec-cpu" else "hardware")
    except HardwareUnavailable as exc:  # the probe passed but the decoder would not build: say so, go on
        log.warning("decode path: hardware decoder failed to start (%s); nvjpeg instead", exc)
        metrics.DECODE_PATH.labels(path=choice.path, reason=choice.reason).set(0)
        metrics.DECODE_PATH.labels(path="nvjpeg", reason=f"hardware start failed: {exc.reason}").set(1)
        from .gpu_decode import GpuDecoder

        return GpuDecoder(device, size, max_pixels, max_batch=max_batch)
    return HardwareDecoder(device, size, max_pixels, fallback, max_batch=max_batch, max_bytes=max_bytes, codec=codec)
