"""Zero-cost stand-ins for the model and the JPEG decode, and a cheap HTTP image server.

They let a benchmark measure what the *software* around the model costs
(Kafka, parsing, downloads, bookkeeping, Redis, commits) with the model and the
decode taken out (bench/software_ceiling.py; also usable by any benchmark that
wants "the pipeline minus the model", e.g. several consumers against one model
server):

* :class:`StubModel` has the scoring-model interface the scorer uses (``score``,
  ``areas``, ``input_size``, ``model_version``, ``device``, ``backend``) and answers
  from a precomputed bank: per image it costs one numpy fancy-index, no
  inference. Outputs differ per image (the bank row is picked from a byte the
  stub decode writes into the pixels), so ranking sees distinct scores and
  embeddings, not 200 duplicates.
* :func:`stub_decode` has ``decode_image``'s signature and result type: a CRC32 of
  the body picks a preallocated pixel array and a pHash; non-JPEG bytes still
  raise ``DecodeError("not_image")``.
* :class:`StaticHttpServer` is a real HTTP/1.1 server on loopback (keep-alive,
  ``Content-Length``, ``image/jpeg``) written on a bare asyncio protocol that
  answers from prebuilt responses: ~10x less CPU per request than an aiohttp
  web server, so on a 2-core machine the server does not decide the rate.
* :func:`tiny_jpegs` makes small distinct JPEGs (64 px by default).
"""

from __future__ import annotations

import asyncio
import io
import zlib

import numpy as np

from galleryrank.consumer.images.decode import DecodedImage, DecodeError
from galleryrank.ranking.synthetic import AREAS

STUB_INPUT_SIZE = 64
STUB_EMBEDDING_DIM = 128
_BANK = 256


class _StubOutput:
    __slots__ = ("aesthetic_dist", "aesthetic", "area_probs", "embedding")

    def __init__(self, dist, aesthetic, area, emb):
        self.aesthetic_dist, self.aesthetic, self.area_probs, self.embedding = dist, aesthetic, area, emb

    def __len__(self) -> int:
        return len(self.aesthetic)


class StubModel:
    """The scoring-model interface with no model behind it (see the module docstring)."""

    backend = "stub"
    device = "cpu"

    def __init__(self, input_size: int = STUB_INPUT_SIZE, embedding_dim: int = STUB_EMBEDDING_DIM, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.areas = list(AREAS)
        self.input_size = input_size
        self.embedding_dim = embedding_dim
        self.model_version = f"stub-{input_size}px"
        logits = rng.normal(0, 1.5, (_BANK, 10))
        dist = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        self._dist = dist.astype(np.float32)
        self._aesthetic = (self._dist @ np.arange(1, 11, dtype=np.float32)).astype(np.float32)
        area = np.exp(rng.normal(0, 2, (_BANK, len(self.areas))))
        self._area = (area / area.sum(1, keepdims=True)).astype(np.float32)
        emb = rng.normal(0, 1, (_BANK, embedding_dim))
        self._emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
        self.batches: list[int] = []  # batch sizes seen (a benchmark reports them)

    def score(self, batch: np.ndarray) -> _StubOutput:
        idx = batch[:, 0, 0, 0]
        self.batches.append(len(idx))
        return _StubOutput(self._dist[idx], self._aesthetic[idx], self._area[idx], self._emb[idx])


_PIXELS: dict[int, list[np.ndarray]] = {}


def _pixel_bank(size: int) -> list[np.ndarray]:
    bank = _PIXELS.get(size)
    if bank is None:
        bank = []
        for i in range(_BANK):
            px = np.zeros((3, size, size), np.uint8)
            px[0, 0, 0] = i
            px.flags.writeable = False
            bank.append(px)
        _PIXELS[size] = bank
    return bank


def stub_decode(data: bytes, size: int = 224, max_pixels: int = 50_000_000) -> DecodedImage:
    """``decode_image`` without the decode: bytes -> a preallocated pixel array picked by CRC32."""
    if not data.startswith(b"\xff\xd8"):
        raise DecodeError("not_image", "stub decode: not a JPEG")
    crc = zlib.crc32(data)
    phash = (crc * 0x9E3779B97F4A7C15) & 0x7FFF_FFFF_FFFF_FFFF
    return DecodedImage(_pixel_bank(size)[crc & 0xFF], phash, size, size)


def tiny_jpegs(count: int, size: int = STUB_INPUT_SIZE, seed: int = 0) -> dict[str, bytes]:
    """``count`` distinct size x size JPEGs (random colour blocks), name -> bytes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = {}
    for i in range(count):
        blocks = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        img = Image.fromarray(blocks).resize((size, size), Image.NEAREST)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        out[f"tiny-{i:04d}.jpg"] = buf.getvalue()
    return out


class _StaticProtocol(asyncio.Protocol):
    def __init__(self, responses: dict[bytes, bytes], counter: list[int]):
        self._responses = responses
        self._counter = counter
        self._buf = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head, buf = buf[:end], buf[end + 4 :]
            parts = head.split(b" ", 2)
            path = parts[1] if len(parts) > 1 else b""
            response = self._responses.get(path, _NOT_FOUND) if parts[0] == b"GET" else _NOT_FOUND
            self._counter[0] += 1
            self._transport.write(response)
        self._buf = buf


_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


class StaticHttpServer:
    """HTTP/1.1 GET server on loopback answering ``/images/<name>`` from memory (prebuilt responses)."""

    def __init__(self, images: dict[str, bytes], host: str = "127.0.0.1"):
        self.host = host
        self.port = 0
        self.requests = [0]
        self._responses = {
            f"/images/{name}".encode(): b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
            for name, body in images.items()
        }
        self._server: asyncio.Server | None = None

    def url(self, name: str) -> str:
        return f"http://{self.host}:{self.port}/images/{name}"

    async def start(self) -> StaticHttpServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _StaticProtocol(self._responses, self.requests), self.host, 0, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class StubDecodePool:
    """The scorer's decode-pool interface (``decode``, ``close``, ``busy``, ``oldest_busy_s``) with
    :func:`stub_decode` behind one thread hand-off per image, as a thread-pool decode costs the
    event loop. A benchmark puts it in place of the real pool so that decode work is zero in
    every mode compared while the hand-off stays."""

    def __init__(self, workers: int = 2):
        from concurrent.futures import ThreadPoolExecutor

        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")

    async def decode(self, data: bytes, size: int) -> DecodedImage:
        return await asyncio.get_running_loop().run_in_executor(self._executor, stub_decode, data, size)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def busy(self) -> int:
        return 0

    def oldest_busy_s(self) -> float:
        return 0.0
