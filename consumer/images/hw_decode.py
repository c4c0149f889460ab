"""Batched JPEG decode on the GPU's hardware decoder (nvImageCodec), resize and pHash on the GPU.

Why: on a GPU host the CPU per event is the limit, not the model (docs/serving.md). Pillow
spends 5-10 CPU-ms on one listing photo, and torchvision's nvJPEG path
(:mod:`.gpu_decode`) still runs the Huffman stage on the CPU. A100, H100 and H200 have a
hardware JPEG engine; nvImageCodec's ``HW_GPU_ONLY`` backend drives it, batched. Chosen
over DALI: nvImageCodec is one call per batch that fits the scorer's own micro-batching
(DALI wants a pipeline that owns the batching), its wheel is 25 MB + 4 MB of nvJPEG
(DALI's is several hundred MB: too large to carry to a lent GPU machine), and DALI's
``decoders.image`` is built on the same nvImageCodec decoders.

What stays as today (:mod:`.decode`): Pillow parses the header first (format allow-list,
declared-size cap, JPEG scan limit, the decode byte estimate) before any byte reaches a
decoder; a bad header is the event's fault (``DecodeError``, DLQ). What the hardware path
does not take (PNG, WebP, CMYK JPEGs, a header Pillow cannot read, a body nvImageCodec
refuses) goes to today's decoder (the scorer's killable worker pool), which names the
reason if the bytes are bad; each such fallback is counted by reason
(``galleryrank_decode_fallbacks_total``) and logged once per reason.

The pixels stay on the GPU: resized there (antialiased bilinear, grouped by shape) and
handed to the model as a device tensor (``ScoringModel.score`` takes one); the 64-bit
pHash is computed there too, with imagehash's recipe (Pillow's L conversion, Lanczos to
32x32 in Pillow's fixed point, DCT-II, median of the 8x8 low band), so only 8 bytes per
image come back to the host.

This module imports nvImageCodec only when a decoder is built: a CPU-only install never
imports it (:mod:`.decode_path` chooses; tests check ``sys.modules``).
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .. import metrics
from ..tasks import cancel_and_wait, next_batch
from .decode import (
    _TRANSPOSING_ORIENTATIONS,
    ALLOWED_FORMATS,
    MAX_JPEG_SCANS,
    DecodedImage,
    DecodeError,
    _check_cost,
    _exif_orientation,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

MODULE = "nvidia.nvimgcodec"
_JPEG_MODES = ("RGB", "L")  # CMYK/YCCK: Pillow converts them properly, nvImageCodec's colour handling differs


@dataclass
class Header:
    """What Pillow read from a body's header: where it goes and the oriented original size."""

    refused: str | None  # None: the hardware path takes it; else the fallback reason
    width: int = 0
    height: int = 0
    decoded_bytes: int = 0  # device bytes of the full-size RGB decode


def read_header(
    data: bytes, size: int, max_pixels: int, max_bytes: int | None, max_scans: int = MAX_JPEG_SCANS
) -> Header:
    """Today's header checks (raises DecodeError: the event's fault), then the hardware path's own
    eligibility. Header only: no pixel is decoded."""
    from PIL import Image

    if not data:
        raise DecodeError("not_image", "empty body")
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as img:
            _check_cost(img, data, size, max_pixels, max_bytes, max_scans)
            if img.format not in ("JPEG", "MPO"):
                return Header(refused=f"format_{str(img.format).lower()}")
            if img.mode not in _JPEG_MODES:
                return Header(refused=f"jpeg_mode_{img.mode.lower()}")
            w, h = img.size
            if _exif_orientation(img) in _TRANSPOSING_ORIENTATIONS:
                w, h = h, w
            return Header(refused=None, width=w, height=h, decoded_bytes=w * h * 3)
    except DecodeError:
        raise
    except Exception:  # noqa: BLE001 - a header Pillow cannot read: today's decoder names the reason
        return Header(refused="header_unreadable")


class HardwareUnavailable(RuntimeError):
    """The hardware path cannot run here; ``reason`` is a short stable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _codec() -> Any:
    try:
        import nvidia.nvimgcodec as nvimgcodec
    except ImportError as exc:
        raise HardwareUnavailable("nvimgcodec_not_installed", str(exc)[:200]) from None
    return nvimgcodec


class Codec:
    """One nvImageCodec decoder: ``hardware`` = the GPU's JPEG engine, then nvImageCodec's CUDA
    decoder for what the engine does not take (progressive); ``cpu`` = its libjpeg-turbo
    backend into host memory (the same code path on a machine without a GPU: tests, CPU smoke)."""

    def __init__(self, device: str = "cuda", backend: str = "hardware", cpu_threads: int = 1):
        n = _codec()
        self.backend = backend
        params = {"apply_exif_orientation": True, "color_spec": n.ColorSpec.SRGB}
        self.params = n.DecodeParams(**params, sample_format=n.SampleFormat.I_RGB)
        try:
            if backend == "cpu":
                self.device = "cpu"
                self._decoder = n.Decoder(
                    device_id=n.NVIMGCODEC_DEVICE_CPU_ONLY,
                    max_num_cpu_threads=cpu_threads,
                    backends=[n.Backend(n.BackendKind.CPU_ONLY)],
                )
            else:
                import torch

                self.device = device
                index = torch.device(device).index or 0
                self._decoder = n.Decoder(
                    device_id=index,
                    max_num_cpu_threads=cpu_threads,
                    backends=[n.Backend(n.BackendKind.HW_GPU_ONLY), n.Backend(n.BackendKind.GPU_ONLY)],
                )
        except Exception as exc:  # noqa: BLE001 - no CUDA, no nvJPEG library, a driver too old: say which
            raise HardwareUnavailable("decoder_init_failed", f"{type(exc).__name__}: {str(exc)[:200]}") from None
        self._n = n

    def decode(self, bodies: list[bytes]) -> list[torch.Tensor | None]:
        """(3, H, W) uint8 tensors (on the device, or the host for ``cpu``); None where refused."""
        import torch

        if not bodies:
            return []
        streams = [self._n.CodeStream(b) for b in bodies]
        kwargs: dict[str, Any] = {"params": self.params}
        if self.device != "cpu":
            kwargs["cuda_stream"] = torch.cuda.current_stream(self.device).cuda_stream
        images = self._decoder.decode(streams, **kwargs)
        out: list[torch.Tensor | None] = []
        for img in images:
            # zero-copy (DLPack); HWC interleaved -> CHW view, made contiguous by the resize
            if img is None:
                out.append(None)
            elif self.device == "cpu":  # host buffer: numpy's array interface (DLPack export wants CUDA)
                out.append(torch.from_numpy(np.asarray(img)).permute(2, 0, 1))
            else:
                out.append(torch.from_dlpack(img).permute(2, 0, 1))
        return out


def hardware_check(device: str) -> str | None:
    """None when the hardware path can run on ``device``; else the reason it cannot (never raises).

    Decodes one small baseline JPEG with the hardware backend alone: the library loads on
    GPUs without a JPEG engine (L40S, A10, consumer cards) and then returns nothing.
    """
    if not device.startswith("cuda"):
        return "no_cuda_device"
    try:
        import torch

        if not torch.cuda.is_available():
            return "no_cuda_device"
        n = _codec()
        from PIL import Image

        probe = io.BytesIO()
        # A plain photo-like baseline 4:2:0 JPEG, large enough for any engine's minimum size.
        Image.linear_gradient("L").convert("RGB").save(probe, "JPEG", quality=85)
        index = torch.device(device).index or 0
        decoder = n.Decoder(device_id=index, backends=[n.Backend(n.BackendKind.HW_GPU_ONLY)])
        got = decoder.decode(n.CodeStream(probe.getvalue()))
        if got is None:
            return "no_hardware_decoder"
    except HardwareUnavailable as exc:
        return exc.reason
    except Exception as exc:  # noqa: BLE001 - any failure of the probe means: do not pick this path
        return f"hardware_probe_failed: {type(exc).__name__}: {str(exc)[:120]}"
    return None


def resize_to(images: list[torch.Tensor], size: int) -> torch.Tensor:
    """(3, H, W) uint8 tensors -> (N, 3, size, size) uint8: antialiased bilinear (Pillow's squash),
    one interpolate call per distinct input shape (listing photos share a few sizes)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    out = torch.empty((len(images), 3, size, size), dtype=torch.uint8, device=images[0].device)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(tuple(img.shape), []).append(i)
    for shape, idx in groups.items():
        x = torch.stack([images[i] for i in idx]).float()
        if shape[1:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[torch.tensor(idx, device=out.device)] = x.round_().clamp_(0, 255).to(torch.uint8)
    return out


# --- pHash on the device: imagehash.phash(Image.fromarray(pixels)) without the host ----------
_PRECISION_BITS = 22  # Pillow's 8-bit resampling fixed point (libImaging/Resample.c)


def _lanczos(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < 3.0, np.sinc(x) * np.sinc(x / 3.0), 0.0)


def pillow_resample_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's Lanczos coefficients (precompute_coeffs + normalize_coeffs_8bpc) as an integer
    (out, in) matrix in units of 2**-22."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    m = np.zeros((out_size, in_size), dtype=np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        w = _lanczos((np.arange(xmin, xmax) - center + 0.5) / filterscale)
        w = w / w.sum()
        m[xx, xmin:xmax] = np.where(
            w < 0, np.trunc(-0.5 + w * (1 << _PRECISION_BITS)), np.trunc(0.5 + w * (1 << _PRECISION_BITS))
        )
    return m


def _dct_matrix(n: int) -> np.ndarray:
    """scipy.fftpack.dct type II, norm=None: y[k] = 2 sum_n x[n] cos(pi k (2n+1) / 2N)."""
    k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return 2.0 * np.cos(np.pi * k * (2 * i + 1) / (2 * n))


@dataclass
class _HashConsts:
    resample: torch.Tensor  # (32, size) float64
    dct: torch.Tensor  # (8, 32) float64: the first 8 rows of the 32-point DCT


_HASH_CONSTS: dict[tuple[str, int], _HashConsts] = {}


def phash_batch(pixels: torch.Tensor) -> list[int]:
    """64-bit pHash per image of a (N, 3, S, S) uint8 batch, as ``decode.phash_int`` computes it on
    the host (same bits but where a DCT coefficient ties the median within float rounding)."""
    import torch

    if len(pixels) == 0:
        return []
    size = pixels.shape[-1]
    key = (str(pixels.device), size)
    c = _HASH_CONSTS.get(key)
    if c is None:
        c = _HashConsts(
            resample=torch.tensor(pillow_resample_matrix(size, 32), dtype=torch.float64, device=pixels.device),
            dct=torch.tensor(_dct_matrix(32)[:8], dtype=torch.float64, device=pixels.device),
        )
        _HASH_CONSTS[key] = c
    p = pixels.to(torch.int64)
    # Pillow's RGB -> L: (R*19595 + G*38470 + B*7471 + 0x8000) >> 16
    grey = ((p[:, 0] * 19595 + p[:, 1] * 38470 + p[:, 2] * 7471 + 0x8000) >> 16).to(torch.float64)
    half, one = float(1 << (_PRECISION_BITS - 1)), float(1 << _PRECISION_BITS)
    # Horizontal pass then vertical, each rounded and clipped to 8 bits as Pillow does (exact in float64).
    horiz = torch.floor((grey @ c.resample.T + half) / one).clamp_(0, 255)
    small = torch.floor((c.resample @ horiz + half) / one).clamp_(0, 255)  # (N, 32, 32)
    low = c.dct @ small @ c.dct.T  # (N, 8, 8): rows = DCT along axis 0, cols along axis 1
    flat = low.reshape(len(pixels), 64)
    ordered = flat.sort(dim=1).values
    median = (ordered[:, 31] + ordered[:, 32]) / 2  # numpy.median of 64 values
    bits = (flat > median[:, None]).to(torch.int64)
    weights = torch.tensor([1 << (31 - j) for j in range(32)], dtype=torch.int64, device=pixels.device)
    hi, lo = (bits[:, :32] * weights).sum(1), (bits[:, 32:] * weights).sum(1)
    return [(int(a) << 32) | int(b) for a, b in zip(hi.tolist(), lo.tolist())]


# --- the scorer's decode stage -----------------------------------------------------------
@dataclass
class BatchResult:
    """One batch through the hardware path, in input order."""

    results: list[DecodedImage | DecodeError | None]  # None: falls back (see `fallback`)
    fallback: dict[int, str] = field(default_factory=dict)  # input index -> reason


def decode_batch(
    codec: Codec,
    bodies: list[bytes],
    size: int,
    max_pixels: int,
    max_bytes: int | None,
    batch_bytes: int,
    device: str,
) -> BatchResult:
    """Header checks, then hardware decode in chunks of at most ``batch_bytes`` decoded bytes, resize
    and pHash on the device. Pixels come back as (3, size, size) uint8 tensors on ``device``."""
    out = BatchResult(results=[None] * len(bodies))
    take: list[int] = []
    headers: dict[int, Header] = {}
    for i, data in enumerate(bodies):
        try:
            header = read_header(data, size, max_pixels, max_bytes)
        except DecodeError as exc:
            out.results[i] = exc
            continue
        if header.refused is not None:
            out.fallback[i] = header.refused
        else:
            take.append(i)
            headers[i] = header
    chunk: list[int] = []
    held = 0
    for i in take + [-1]:
        if i >= 0 and (not chunk or held + headers[i].decoded_bytes <= batch_bytes):
            chunk.append(i)
            held += headers[i].decoded_bytes
            continue
        if chunk:
            _decode_chunk(codec, bodies, chunk, headers, size, device, out)
        chunk, held = ([i], headers[i].decoded_bytes) if i >= 0 else ([], 0)
    return out


def _decode_chunk(
    codec: Codec,
    bodies: list[bytes],
    chunk: list[int],
    headers: dict[int, Header],
    size: int,
    device: str,
    out: BatchResult,
) -> None:
    try:
        decoded = codec.decode([bodies[i] for i in chunk])
    except Exception as exc:  # noqa: BLE001 - a library failure sends the chunk to today's decoder
        log.warning("hardware decode of %d images failed (%s); they take the fallback path", len(chunk), exc)
        for i in chunk:
            out.fallback[i] = "hw_error"
        return
    ok = [(i, t) for i, t in zip(chunk, decoded) if t is not None]
    for i, t in zip(chunk, decoded):
        if t is None:
            out.fallback[i] = "hw_refused"  # nvImageCodec could not decode it: today's decoder names why
    if not ok:
        return
    pixels = resize_to([t for _, t in ok], size).to(device)
    hashes = phash_batch(pixels)
    # On the device the pixels stay tensors (the model takes them as they are); on the host
    # (nvImageCodec's CPU backend) they are numpy, as every other decoder returns.
    per_image: list[Any] = list(pixels) if device != "cpu" else list(pixels.numpy())
    for (i, _), px, phash in zip(ok, per_image, hashes):
        h = headers[i]
        out.results[i] = DecodedImage(pixels=cast(np.ndarray, px), phash=phash, width=h.width, height=h.height)


class HardwareDecoder:
    """The scorer's decode stage on the hardware path; same interface as ``GpuDecoder``.

    Bodies from many tasks queue up; when the worker thread is free it takes every queued
    body (up to ``max_batch``) and runs :func:`decode_batch`. A body the hardware path does
    not take is decoded by ``fallback`` (the scorer's decode pool: killable, budgeted) and
    its pixels moved to the device, so every image reaches the model as a device tensor.
    """

    def __init__(
        self,
        device: str,
        size: int,
        max_pixels: int,
        fallback: Callable[[bytes], Awaitable[DecodedImage]],
        *,
        max_batch: int = 256,
        max_bytes: int | None = 768 << 20,
        codec: Codec | None = None,
    ):
        self.codec = codec or Codec(device)
        self.device = device if self.codec.device != "cpu" else "cpu"
        self.size, self.max_pixels, self.max_batch = size, max_pixels, max_batch
        self.max_bytes = max_bytes
        # Device memory one decode call may hold (full-size RGB): the byte estimate's GPU twin.
        self.batch_bytes = max_bytes if max_bytes is not None else 768 << 20
        self.fallback = fallback
        self.fallbacks: dict[str, int] = {}  # reason -> count (tests, bench)
        self.on_hardware = 0  # images decoded by the hardware path
        self._queue: asyncio.Queue[tuple[bytes, asyncio.Future[DecodedImage]]] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hw-decode")
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="hw-decoder")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        for t in list(self._pending):
            t.cancel()
        self._executor.shutdown(wait=True)

    async def decode(self, data: bytes) -> DecodedImage:
        fut: asyncio.Future[DecodedImage] = asyncio.get_running_loop().create_future()
        await self._queue.put((data, fut))
        return await fut

    def _decode_many(self, bodies: list[bytes]) -> BatchResult:
        result = decode_batch(
            self.codec, bodies, self.size, self.max_pixels, self.max_bytes, self.batch_bytes, self.device
        )
        if self.device != "cpu":
            import torch

            torch.cuda.current_stream(self.device).synchronize()  # pixels ready before the model thread reads them
        return result

    def _count_fallback(self, reason: str) -> None:
        first = reason not in self.fallbacks
        self.fallbacks[reason] = self.fallbacks.get(reason, 0) + 1
        metrics.DECODE_FALLBACKS.labels(path="hardware", reason=reason).inc()
        (log.info if first else log.debug)("hardware decode path: %s -> today's decoder", reason)

    async def _via_fallback(self, data: bytes, fut: asyncio.Future[DecodedImage]) -> None:
        try:
            got = await self.fallback(data)
            if self.device != "cpu":
                import torch

                got.pixels = cast(np.ndarray, torch.from_numpy(np.ascontiguousarray(got.pixels)).to(self.device))
        except BaseException as exc:  # noqa: BLE001 - the caller's future carries it (DecodeError -> DLQ)
            if not fut.done():
                if isinstance(exc, asyncio.CancelledError):
                    fut.cancel()
                else:
                    fut.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        if not fut.done():
            fut.set_result(got)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await next_batch(self._queue, self.max_batch)
            if not items:
                continue
            try:
                batch = await loop.run_in_executor(self._executor, self._decode_many, [d for d, _ in items])
            except Exception as exc:  # noqa: BLE001 - a GPU failure fails this batch, not the service
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for i, ((data, fut), res) in enumerate(zip(items, batch.results)):
                if res is None:
                    self._count_fallback(batch.fallback.get(i, "hw_refused"))
                    task = asyncio.create_task(self._via_fallback(data, fut))
                    self._pending.add(task)
                    task.add_done_callback(self._pending.discard)
                    continue
                if fut.done():
                    continue
                if isinstance(res, BaseException):
                    fut.set_exception(res)
                else:
                    self.on_hardware += 1
                    fut.set_result(res)
