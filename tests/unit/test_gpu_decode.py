"""galleryrank.consumer.images.gpu_decode without a GPU: the CPU fallback and the batched torchvision code path."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from galleryrank.consumer.images.decode import decode_image
from galleryrank.consumer.images.gpu_decode import decode_batch


@pytest.fixture(scope="module")
def bodies(sample_jpegs) -> list[bytes]:
    names = sorted(sample_jpegs)[:3]
    png = io.BytesIO()
    Image.new("RGB", (320, 200), (10, 200, 30)).save(png, "PNG")
    return [sample_jpegs[n] for n in names] + [png.getvalue(), b"<html>not an image</html>"]


@pytest.mark.parametrize("torchvision_on_cpu", [False, True])
def test_batch_matches_the_cpu_decoder_and_reports_failures(bodies, torchvision_on_cpu):
    out = decode_batch(bodies, 224, device="cuda", torchvision_on_cpu=torchvision_on_cpu)
    assert out.ok == [0, 1, 2, 3]  # the PNG takes the CPU path, the HTML fails alone
    assert set(out.failed) == {4} and out.failed[4].reason == "not_image"
    assert out.on_gpu == (3 if torchvision_on_cpu else 0)
    assert tuple(out.pixels.shape) == (4, 3, 224, 224) and str(out.pixels.dtype) == "torch.uint8"
    reference = np.stack([decode_image(b).pixels for b in bodies[:4]])
    diff = np.abs(out.pixels.numpy().astype(np.int16) - reference.astype(np.int16))
    # Full decode + antialiased bilinear vs Pillow's draft + bilinear: off by rounding only.
    assert diff.mean() < 1.0 and diff.max() <= 40


def test_declared_size_cap_applies_before_the_batched_decoder(sample_jpegs):
    body = sample_jpegs[sorted(sample_jpegs)[0]]
    out = decode_batch([body], 224, device="cuda", max_pixels=1000, torchvision_on_cpu=True)
    assert out.ok == [] and out.failed[0].reason == "too_many_pixels"


async def test_gpu_decoder_batches_concurrent_bodies_and_fails_only_the_bad_one(bodies):
    import asyncio

    from galleryrank.consumer.images.decode import DecodeError
    from galleryrank.consumer.images.gpu_decode import GpuDecoder

    decoder = GpuDecoder("cpu", 224, 50_000_000, max_batch=8, torchvision_on_cpu=True)
    calls: list[int] = []
    original = decoder._decode_many
    decoder._decode_many = lambda batch: calls.append(len(batch)) or original(batch)
    decoder.start()
    try:
        results = await asyncio.gather(*(decoder.decode(b) for b in bodies), return_exceptions=True)
    finally:
        await decoder.stop()
    assert sum(calls) == len(bodies) and len(calls) < len(bodies)  # decoded in batches, not one by one
    assert isinstance(results[4], DecodeError) and results[4].reason == "not_image"
    for body, got in zip(bodies[:4], results[:4]):
        want = decode_image(body)
        assert (got.width, got.height) == (want.width, want.height)
        assert np.abs(got.pixels.astype(np.int16) - want.pixels.astype(np.int16)).mean() < 1.0
        assert bin(got.phash ^ want.phash).count("1") <= 6  # near-identical pixels: near-identical pHash
