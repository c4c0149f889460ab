"""The hardware decode path without a GPU: path selection, fallbacks with reasons, the header checks
before any byte reaches nvImageCodec, and its code run on nvImageCodec's CPU backend."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from galleryrank.consumer import metrics
from galleryrank.consumer.images import decode_path, hw_decode
from galleryrank.consumer.images.decode import DecodeError, decode_image, phash_int
from tests.hostile_images import progressive_scan_bomb

try:
    import nvidia.nvimgcodec  # noqa: F401

    HAVE_NVIMGCODEC = True
except ImportError:
    HAVE_NVIMGCODEC = False
needs_nvimgcodec = pytest.mark.skipif(not HAVE_NVIMGCODEC, reason="nvImageCodec (extra [gpu]) not installed")


def _jpeg(size=(320, 240), mode="RGB", **save) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (40, 120, 200) if mode == "RGB" else (10, 20, 30, 40)).save(out, "JPEG", **save)
    return out.getvalue()


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (200, 100), (10, 200, 30)).save(out, "PNG")
    return out.getvalue()


# --- selection ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("setting", "device", "check", "path", "reason"),
    [
        ("auto", "cpu", None, "cpu", "auto"),
        ("cpu", "cuda", None, "cpu", "forced"),
        ("hardware", "cpu", None, "cpu", "hardware asked for: no_cuda_device"),
        ("nvjpeg", "cpu", None, "cpu", "nvjpeg asked for: no_cuda_device"),
        ("auto", "cuda", lambda d: None, "hardware", "auto"),
        ("hardware", "cuda:1", lambda d: None, "hardware", "forced"),
        ("auto", "cuda", lambda d: "nvimgcodec_not_installed", "nvjpeg", "auto: hardware unavailable: nvimgcodec_not_installed"),
        ("hardware", "cuda", lambda d: "no_hardware_decoder", "nvjpeg", "hardware asked for: no_hardware_decoder"),
        ("nvjpeg", "cuda", lambda d: pytest.fail("not probed"), "nvjpeg", "forced"),
    ],
)  # fmt: skip
def test_choice_by_setting_and_device(monkeypatch, setting, device, check, path, reason):
    monkeypatch.setattr(decode_path, "_cuda", lambda d: d.startswith("cuda"))
    choice = decode_path.choose(setting, device, hardware_check=check)
    assert (choice.path, choice.reason) == (path, reason)


def test_no_cuda_means_cpu_even_on_a_cuda_device_name():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert decode_path.choose("auto", "cuda").path == "cpu"
    assert decode_path.choose("hardware", "cuda").reason == "hardware asked for: no_cuda_device"


def test_unknown_setting_is_refused():
    with pytest.raises(ValueError, match="decode_path"):
        decode_path.choose("gpu", "cpu")


def test_missing_hardware_module_is_a_reason_not_a_crash(monkeypatch):
    monkeypatch.setitem(sys.modules, "nvidia.nvimgcodec", None)  # import raises ImportError
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert hw_decode.hardware_check("cuda") == "nvimgcodec_not_installed"
    monkeypatch.setattr(decode_path, "_cuda", lambda d: True)
    choice = decode_path.choose("auto", "cuda")
    assert (choice.path, choice.reason) == ("nvjpeg", "auto: hardware unavailable: nvimgcodec_not_installed")
    assert decode_path.choose("nvimgcodec-cpu", "cpu").reason == "nvimgcodec-cpu asked for: nvimgcodec_not_installed"
    with pytest.raises(hw_decode.HardwareUnavailable) as exc:
        hw_decode.Codec("cuda")
    assert exc.value.reason == "nvimgcodec_not_installed"


def test_build_reports_the_path_in_metrics(monkeypatch):
    class Cpu:
        device, input_size = "cpu", 224

    async def fallback(data):
        raise AssertionError

    assert decode_path.build("hardware", Cpu(), 50_000_000, 8, fallback) is None
    text = metrics.REGISTRY.get_sample_value(
        "galleryrank_decode_path", {"path": "cpu", "reason": "hardware asked for: no_cuda_device"}
    )
    assert text == 1.0


def test_a_cpu_scorer_never_imports_the_hardware_module():
    """A real scorer's parts (runtime.build_parts) with default settings on a CPU model: neither
    hw_decode nor nvImageCodec load."""
    code = textwrap.dedent(
        """
        import asyncio, sys
        from galleryrank.consumer.runtime import build_parts
        from galleryrank.consumer.settings import Settings

        class Model:
            device, input_size, areas, model_version, backend = "cpu", 224, ["bathroom"], "m", "torch"
            def score(self, batch): raise AssertionError

        import redis.asyncio

        redis = redis.asyncio.Redis.from_url("redis://127.0.0.1:1")  # never connected
        async def parts():  # the Kafka clients want a running loop
            return build_parts(Settings(), Model(), redis)

        built = asyncio.run(parts())
        assert built.gpu_decoder is None
        built.decode_pool.close()
        loaded = sorted(m for m in sys.modules if "nvimgcodec" in m or m.endswith("images.hw_decode"))
        print("LOADED", loaded)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "LOADED []" in out.stdout


# --- safety before the hardware decoder --------------------------------------------------------
class RecordingCodec:
    """Stands in for nvImageCodec (pure logic): records what reached the decoder."""

    device = "cpu"

    def __init__(self, refuse: set[bytes] = frozenset()):
        self.seen: list[bytes] = []
        self.refuse = refuse

    def decode(self, bodies):
        self.seen += bodies
        out = []
        for b in bodies:
            if b in self.refuse:
                out.append(None)
                continue
            img = Image.open(io.BytesIO(b)).convert("RGB")
            out.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))
        return out


def test_header_checks_run_before_any_byte_reaches_the_decoder():
    good, big = _jpeg(), _jpeg((3000, 2000))
    bomb = progressive_scan_bomb(256, 300)
    cmyk = _jpeg(mode="CMYK")
    refused = _jpeg((321, 241))
    bodies = [good, big, bomb, _png(), cmyk, b"<html>", b"", refused]
    codec = RecordingCodec(refuse={refused})
    out = hw_decode.decode_batch(codec, bodies, 224, 2_000_000, 768 << 20, 768 << 20, "cpu")
    assert codec.seen == [good, refused]  # nothing else reached the decoder
    assert out.results[1].reason == "too_many_pixels"
    assert out.results[2].reason == "too_many_scans"
    assert out.results[6].reason == "not_image"
    assert out.fallback == {3: "format_png", 4: "jpeg_mode_cmyk", 5: "header_unreadable", 7: "hw_refused"}
    assert out.results[0].pixels.shape == (3, 224, 224) and (out.results[0].width, out.results[0].height) == (320, 240)


def test_byte_estimate_bounds_each_decoder_call():
    bodies = [_jpeg((400, 300)) for _ in range(5)]
    calls: list[int] = []
    codec = RecordingCodec()
    real = codec.decode
    codec.decode = lambda b: calls.append(len(b)) or real(b)
    out = hw_decode.decode_batch(codec, bodies, 224, 50_000_000, None, 2 * 400 * 300 * 3, "cpu")
    assert calls == [2, 2, 1] and all(r.pixels.shape == (3, 224, 224) for r in out.results)


def test_a_library_failure_sends_the_chunk_to_the_fallback():
    class Broken(RecordingCodec):
        def decode(self, bodies):
            raise RuntimeError("CUDA error")

    out = hw_decode.decode_batch(Broken(), [_jpeg(), _jpeg()], 224, 50_000_000, None, 1 << 30, "cpu")
    assert out.fallback == {0: "hw_error", 1: "hw_error"} and out.results == [None, None]


def test_phash_on_the_device_recipe_equals_imagehash(sample_jpegs):
    pixels = np.stack([decode_image(b).pixels for b in sample_jpegs.values()])
    want = [phash_int(Image.fromarray(np.ascontiguousarray(p.transpose(1, 2, 0)), "RGB")) for p in pixels]
    assert hw_decode.phash_batch(torch.from_numpy(pixels)) == want


def test_resize_groups_by_shape_and_matches_per_image():
    imgs = [
        torch.randint(0, 256, (3, h, w), dtype=torch.uint8) for h, w in ((300, 400), (300, 400), (224, 224), (50, 90))
    ]
    got = hw_decode.resize_to(imgs, 224)
    from galleryrank.consumer.images.gpu_decode import resize_batch

    assert torch.equal(got, resize_batch(imgs, 224))


# --- nvImageCodec's own code path, on its CPU backend -------------------------------------------
@needs_nvimgcodec
def test_nvimgcodec_cpu_backend_pixels_match_the_cpu_decoder(sample_jpegs):
    codec = hw_decode.Codec(backend="cpu")
    bodies = list(sample_jpegs.values())
    out = hw_decode.decode_batch(codec, bodies, 224, 50_000_000, 768 << 20, 768 << 20, "cpu")
    assert out.fallback == {}
    for body, got in zip(bodies, out.results):
        want = decode_image(body)
        diff = np.abs(got.pixels.astype(np.int16) - want.pixels.astype(np.int16))
        # Full decode + antialiased bilinear vs Pillow's draft + bilinear (the tolerance bench/gpu.sh states).
        assert diff.mean() < 1.0, diff.mean()
        assert (got.width, got.height) == (want.width, want.height)
        assert bin(got.phash ^ want.phash).count("1") <= 6


@needs_nvimgcodec
def test_nvimgcodec_refuses_a_truncated_body_and_the_fallback_names_it(sample_jpegs):
    good = sample_jpegs[sorted(sample_jpegs)[0]]
    truncated = good[: len(good) // 2]
    out = hw_decode.decode_batch(
        hw_decode.Codec(backend="cpu"), [good, truncated], 224, 50_000_000, None, 1 << 30, "cpu"
    )
    assert out.results[0] is not None and out.fallback == {1: "hw_refused"}
    with pytest.raises(DecodeError) as exc:
        decode_image(truncated)  # what today's decoder says about it
    assert exc.value.reason == "truncated_image"


@needs_nvimgcodec
async def test_hardware_decoder_batches_and_falls_back_with_reasons(sample_jpegs):
    names = sorted(sample_jpegs)[:3]
    bodies = [sample_jpegs[n] for n in names] + [_png(), b"<html>not an image</html>"]
    used: list[bytes] = []

    async def fallback(data: bytes):
        used.append(data)
        return await asyncio.to_thread(decode_image, data)

    decoder = hw_decode.HardwareDecoder("cpu", 224, 50_000_000, fallback, codec=hw_decode.Codec(backend="cpu"))
    decoder.start()
    try:
        results = await asyncio.gather(*(decoder.decode(b) for b in bodies), return_exceptions=True)
    finally:
        await decoder.stop()
    assert used == bodies[3:]  # PNG and HTML took today's decoder
    assert decoder.fallbacks == {"format_png": 1, "header_unreadable": 1} and decoder.on_hardware == 3
    assert isinstance(results[4], DecodeError) and results[4].reason == "not_image"
    assert results[3].pixels.shape == (3, 224, 224)
    before = metrics.REGISTRY.get_sample_value(
        "galleryrank_decode_fallbacks_total", {"path": "hardware", "reason": "format_png"}
    )
    assert before and before >= 1


# --- straight into the model -------------------------------------------------------------------
def test_model_scores_a_tensor_batch_like_numpy(model):
    from galleryrank.consumer.stream.batcher import _stack

    pixels = [torch.randint(0, 256, (3, 224, 224), dtype=torch.uint8) for _ in range(3)]
    batch = _stack(pixels)
    assert isinstance(batch, torch.Tensor) and batch.shape == (3, 3, 224, 224)
    a, b = model.score(batch), model.score(batch.numpy())
    assert np.allclose(a.aesthetic, b.aesthetic) and np.allclose(a.area_probs, b.area_probs)
    with pytest.raises(ValueError, match="uint8"):
        model.score(batch.float())


@needs_nvimgcodec
def test_grey_exif_rotated_and_progressive_jpegs_take_the_hardware_path_with_the_same_pixels():
    rng = np.random.default_rng(0)
    base = (rng.random((300, 400, 3)) * 60 + np.linspace(0, 180, 400)[None, :, None]).astype(np.uint8)

    def jpeg(img: Image.Image, **kw) -> bytes:
        out = io.BytesIO()
        img.save(out, "JPEG", quality=90, **kw)
        return out.getvalue()

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: width and height swap
    bodies = [
        jpeg(Image.fromarray(base[..., 0], "L")),
        jpeg(Image.fromarray(base, "RGB"), exif=exif.tobytes()),
        jpeg(Image.fromarray(base, "RGB"), progressive=True),
    ]
    out = hw_decode.decode_batch(hw_decode.Codec(backend="cpu"), bodies, 224, 50_000_000, None, 1 << 30, "cpu")
    assert out.fallback == {}
    for body, got in zip(bodies, out.results):
        want = decode_image(body)
        assert (got.width, got.height) == (want.width, want.height)
        assert np.abs(got.pixels.astype(np.int16) - want.pixels.astype(np.int16)).mean() < 1.0
