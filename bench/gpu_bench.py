"""GPU benchmark (issue 4, item 7); run through bench/gpu.sh.

1. correctness against the CPU on the same inputs: the same CPU-decoded
   pixels scored in fp16 (the CUDA default backend) on the device vs PyTorch eager fp32 on the CPU
   (tolerances of tests/unit/test_backends.py), and the GPU decode path
   (galleryrank.consumer.images.gpu_decode, nvJPEG + antialiased resize) vs the CPU decode path;
2. model-only img/s at batch 64 and 256, fp16 autocast + channels_last, input
   already on the device; and through ``ScoringModel.score`` from host numpy
   (pinned memory, non-blocking copy, outputs back to the host);
3. end to end from JPEG bytes in host memory: batched GPU decode + resize +
   fp16 model + outputs back to the host, img/s (nvJPEG, and the hardware path);
4. decode img/s per image size (1600x1200 and 2880x1920): the GPU's hardware decoder
   (nvImageCodec, consumer/images/hw_decode.py: header checks + decode + resize + pHash),
   torchvision's nvJPEG, and Pillow on every core (a process per core); host CPU-ms per image;
5. the hardware path's pixels vs the CPU decode on the same files (tolerance HW_DECODE_TOL).

``--smoke`` runs tiny sizes on the CPU (the fallback path) to check the script; the hardware
path runs there on nvImageCodec's CPU backend (the same code, libjpeg-turbo instead of the engine).

Targets (issue 4): >= 20,000 img/s model-only, >= 5,000 img/s end to end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

RESULTS_DIR = Path(__file__).parent / "results"
# tests/unit/test_backends.py (fp16 vs eager fp32 on the same pixels). The first H200
# run scored bf16 and failed: |Δarea| 0.154, |Δaesthetic| 0.063 (the area prior's
# temperature multiplies bf16's error); fp16 measured 0.0075 on the CPU.
BF16_TOL = {"aesthetic": 0.02, "area": 0.01, "embedding_cos": 0.999}
# GPU decode (full decode + antialiased resize) vs the CPU path (draft + Pillow
# bilinear): measured on the CPU twin of the GPU path, mean |pixel diff| ~0.2 of
# 255, max 4 on the benchmark photos; scores may move a little more than fp16 alone.
DECODE_TOL = {"aesthetic": 0.10, "area": 0.05, "embedding_cos": 0.98, "pixel_mean": 1.0}
# The hardware path (full decode + antialiased bilinear on the device) vs the CPU path (draft +
# Pillow bilinear), same files: on nvImageCodec's CPU backend mean |pixel diff| 0.10-0.39 of
# 255 on the sample photos (tests/unit/test_hw_decode.py), pHash within 2 bits. The engine's
# IDCT/upsampling may differ from libjpeg-turbo's by a level or two more.
HW_DECODE_TOL = {**DECODE_TOL, "phash_bits": 6}
SIZES = ((1600, 1200), (2880, 1920))
SMOKE_SIZES = ((320, 240), (576, 384))


def hardware_codec(device: str, smoke: bool):
    """(Codec, None) for the hardware path here, or (None, why not)."""
    from galleryrank.consumer.images import hw_decode

    try:
        if smoke or not device.startswith("cuda"):
            return hw_decode.Codec(backend="cpu"), None
        why = hw_decode.hardware_check(device)
        return (None, why) if why else (hw_decode.Codec(device), None)
    except hw_decode.HardwareUnavailable as exc:
        return None, str(exc)


def _cpu_decode_chunk(bodies: list[bytes]) -> int:
    from galleryrank.consumer.images.decode import decode_image

    for b in bodies:
        decode_image(b)
    return len(bodies)


def cpu_pool_rate(bodies: list[bytes], seconds: float) -> tuple[float, int]:
    """Pillow (draft) decode + resize img/s on every core: one process per core."""
    import os
    from concurrent.futures import ProcessPoolExecutor

    cores = os.cpu_count() or 1
    with ProcessPoolExecutor(cores) as pool:
        chunk = max(1, len(bodies) // cores)
        parts = [bodies[i : i + chunk] for i in range(0, len(bodies), chunk)]
        sum(pool.map(_cpu_decode_chunk, parts))  # warm: imports, first decode
        done, t0 = 0, time.perf_counter()
        while done == 0 or time.perf_counter() - t0 < seconds:
            done += sum(pool.map(_cpu_decode_chunk, parts))
        return done / (time.perf_counter() - t0), cores


def host_cpu_ms(fn, items: int, device: str, calls: int | None = None) -> float:
    """Host CPU-ms per item of fn (this process, all threads)."""
    calls = MIN_CALLS if calls is None else calls
    fn()
    sync(device)
    t0 = time.process_time()
    for _ in range(calls):
        fn()
    sync(device)
    return 1000 * (time.process_time() - t0) / (calls * items)


def decode_rates(codec, device: str, smoke: bool, seconds: float, n_photos: int, batch: int) -> list[dict]:
    from bench.pipeline_bench import make_photos
    from galleryrank.consumer.images import hw_decode
    from galleryrank.consumer.images.gpu_decode import decode_batch

    rows = []
    for w, h in SMOKE_SIZES if smoke else SIZES:
        photos = list(make_photos(n_photos, w, h).values())
        bodies = [photos[i % len(photos)] for i in range(batch)]
        row: dict = {"size": f"{w}x{h}", "kb": sum(map(len, photos)) // len(photos) // 1024}
        if codec is not None:
            hw = lambda b=bodies: hw_decode.decode_batch(codec, b, 224, 50_000_000, None, 1 << 33, device)  # noqa: E731
            row["hardware_img_per_s"] = rate(hw, batch, seconds, device)
            row["hardware_cpu_ms"] = host_cpu_ms(hw, batch, device)
        nv = lambda b=bodies: decode_batch(b, 224, device=device, torchvision_on_cpu=smoke)  # noqa: E731
        row["nvjpeg_img_per_s"] = rate(nv, batch, seconds, device)
        row["nvjpeg_cpu_ms"] = host_cpu_ms(nv, batch, device)
        row["cpu_img_per_s"], row["cpu_cores"] = cpu_pool_rate(bodies, seconds)
        rows.append(row)
        print(f"[{time.strftime('%H:%M:%S')}] decode {row}", file=sys.stderr, flush=True)
    return rows


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


MIN_CALLS = 3  # calls per measurement at least (1 on the smoke)


def rate(fn, items: int, seconds: float, device: str, min_calls: int | None = None) -> float:
    min_calls = MIN_CALLS if min_calls is None else min_calls
    fn()
    sync(device)
    calls, t0 = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - t0 < seconds:
        fn()
        calls += 1
    sync(device)
    return calls * items / (time.perf_counter() - t0)


def compare(out, ref) -> dict:
    return {
        "aesthetic_max_abs": float(np.abs(out.aesthetic - ref.aesthetic).max()),
        "area_max_abs": float(np.abs(out.area_probs - ref.area_probs).max()),
        "embedding_cos_min": float((out.embedding * ref.embedding).sum(1).min()),
        "area_top1_agree": float((out.area_probs.argmax(1) == ref.area_probs.argmax(1)).mean()),
    }


def within(diff: dict, tol: dict) -> bool:
    return bool(
        diff["aesthetic_max_abs"] <= tol["aesthetic"]
        and diff["area_max_abs"] <= tol["area"]
        and diff["embedding_cos_min"] >= tol["embedding_cos"]
    )


def outputs_to_host(dist, area, emb):
    from galleryrank.models.scoring import _make_output

    return _make_output(dist.float().cpu().numpy(), area.float().cpu().numpy(), emb.float().cpu().numpy())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU fallback")
    p.add_argument("--device", default=None, help="default: cuda (cpu with --smoke)")
    p.add_argument("--photos", type=int, default=None, help="distinct 1600x1200 JPEGs (default 64; smoke 2)")
    p.add_argument("--seconds", type=float, default=None, help="per measurement (default 8; smoke 0.1)")
    p.add_argument("--batches", default=None, help="model-only batch sizes (default 64,256; smoke 2)")
    p.add_argument("--e2e-batch", type=int, default=None, help="end-to-end batch (default 256; smoke 2)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile(mode='max-autotune')")
    a = p.parse_args(argv)
    device = a.device or ("cpu" if a.smoke else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: run bench/gpu.sh --cpu-smoke for the CPU fallback", file=sys.stderr)
        return 2
    n_photos = a.photos or (2 if a.smoke else 64)
    seconds = a.seconds or (0.1 if a.smoke else 8.0)
    batches = [int(b) for b in (a.batches or ("2" if a.smoke else "64,256")).split(",")]
    e2e_batch = a.e2e_batch or (2 if a.smoke else 256)
    global MIN_CALLS
    MIN_CALLS = 1 if a.smoke else 3

    from bench.common import log
    from bench.pipeline_bench import make_photos
    from galleryrank.consumer.images.decode import decode_image
    from galleryrank.consumer.images.gpu_decode import decode_batch
    from galleryrank.models import load_scoring_model

    out: dict = {
        "device": device,
        "smoke": a.smoke,
        "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
        "torch": torch.__version__,
    }
    log(f"{n_photos} photos 1600x1200 on {device}")
    photos = list(make_photos(n_photos).values())
    k = min(len(photos), 32)
    cpu_pixels = np.stack([decode_image(b).pixels for b in photos[:k]])

    # 1. correctness against the CPU
    reference = load_scoring_model(backend="torch", device="cpu").score(cpu_pixels)
    model = load_scoring_model(backend="torch-fp16", device=device)
    same_pixels = compare(model.score(cpu_pixels), reference)
    if not device.startswith("cuda"):  # the smoke's rates: bf16 (CPU fp16 is emulated, ~100x slower)
        model = load_scoring_model(backend="torch-bf16", device=device)
    # --smoke: the same batched torchvision code path, run by its CPU decoder.
    gpu_dec = decode_batch(photos[:k], model.input_size, device=device, torchvision_on_cpu=a.smoke)
    assert gpu_dec.ok == list(range(k)), gpu_dec.failed
    pixel_diff = np.abs(gpu_dec.pixels.cpu().numpy().astype(np.int16) - cpu_pixels.astype(np.int16))
    net = model.torch_module()
    cuda = device.startswith("cuda")
    # fp16 as the CUDA backend; on the CPU smoke bf16 (torch's CPU fp16 is emulated: ~0.1 img/s here)
    amp = torch.float16 if cuda else torch.bfloat16
    autocast = lambda: torch.autocast(device_type="cuda" if cuda else "cpu", dtype=amp)  # noqa: E731
    with torch.inference_mode(), autocast():
        decoded_scores = outputs_to_host(*net(gpu_dec.pixels.contiguous(memory_format=torch.channels_last)))
    decode_path = compare(decoded_scores, reference)
    out["correctness"] = {
        "bf16_same_pixels": same_pixels,
        "bf16_same_pixels_ok": within(same_pixels, BF16_TOL),
        "gpu_decode_path": decode_path,
        "gpu_decode_pixel_mean_abs": float(pixel_diff.mean()),
        "gpu_decode_pixel_max_abs": int(pixel_diff.max()),
        "gpu_decoded_on_device": gpu_dec.on_gpu,
        "gpu_decode_path_ok": within(decode_path, DECODE_TOL) and bool(pixel_diff.mean() <= DECODE_TOL["pixel_mean"]),
    }
    codec, no_hw = hardware_codec(device, a.smoke)
    out["hardware"] = {"backend": None if codec is None else codec.backend, "unavailable": no_hw}
    if codec is not None:
        from galleryrank.consumer.images import hw_decode

        hw = hw_decode.decode_batch(codec, photos[:k], model.input_size, 50_000_000, None, 1 << 33, device)
        assert not hw.fallback and all(r is not None for r in hw.results), hw.fallback
        hw_pixels = np.stack([np.asarray(torch.as_tensor(r.pixels).cpu()) for r in hw.results])
        hw_diff = np.abs(hw_pixels.astype(np.int16) - cpu_pixels.astype(np.int16))
        ref_hash = [decode_image(b).phash for b in photos[:k]]
        bits = max(bin(r.phash ^ h).count("1") for r, h in zip(hw.results, ref_hash))
        with torch.inference_mode(), autocast():
            x = torch.from_numpy(hw_pixels).to(device).contiguous(memory_format=torch.channels_last)
            hw_scores = compare(outputs_to_host(*net(x)), reference)
        out["correctness"].update(
            hw_decode_path=hw_scores,
            hw_decode_pixel_mean_abs=float(hw_diff.mean()),
            hw_decode_pixel_max_abs=int(hw_diff.max()),
            hw_decode_phash_bits_max=bits,
            hw_decode_path_ok=within(hw_scores, HW_DECODE_TOL)
            and bool(hw_diff.mean() <= HW_DECODE_TOL["pixel_mean"])
            and bits <= HW_DECODE_TOL["phash_bits"],
        )
    log(f"correctness: {out['correctness']}")

    # 2. model only
    out["model_only"] = {}
    for bs in batches:
        x = torch.from_numpy(np.resize(cpu_pixels, (bs,) + cpu_pixels.shape[1:])).to(device)
        x = x.contiguous(memory_format=torch.channels_last)

        def forward(x=x):
            with torch.inference_mode(), autocast():
                return net(x)

        host = np.ascontiguousarray(np.resize(cpu_pixels, (bs,) + cpu_pixels.shape[1:]))
        out["model_only"][bs] = {
            "on_device_img_per_s": rate(forward, bs, seconds, device),
            "from_host_img_per_s": rate(lambda h=host: model.score(h), bs, seconds, device),
        }
        log(f"model-only batch {bs}: {out['model_only'][bs]}")
    if a.compile:
        compiled = torch.compile(net, mode="max-autotune")
        bs = batches[-1]
        x = torch.from_numpy(np.resize(cpu_pixels, (bs,) + cpu_pixels.shape[1:])).to(device)
        x = x.contiguous(memory_format=torch.channels_last)

        def forward_compiled():
            with torch.inference_mode(), autocast():
                return compiled(x)

        t0 = time.perf_counter()
        forward_compiled()
        sync(device)
        out["compiled"] = {
            "batch": bs,
            "compile_s": time.perf_counter() - t0,
            "img_per_s": rate(forward_compiled, bs, seconds, device),
        }
        log(f"torch.compile: {out['compiled']}")

    # 3. end to end from JPEG bytes in host memory
    bodies = [photos[i % len(photos)] for i in range(e2e_batch)]

    def decode_only():
        return decode_batch(bodies, model.input_size, device=device, torchvision_on_cpu=a.smoke)

    def end_to_end():
        batch = decode_batch(bodies, model.input_size, device=device, torchvision_on_cpu=a.smoke)
        with torch.inference_mode(), autocast():
            dist, area, emb = net(batch.pixels.contiguous(memory_format=torch.channels_last))
        return outputs_to_host(dist, area, emb)

    from galleryrank.consumer.images.gpu_decode import GpuDecoder

    # What GalleryScorer runs per batch on a GPU: GpuDecoder (decode + host pixels + pHash on
    # CPU threads) then ScoringModel.score from host numpy.
    scorer_decoder = GpuDecoder(device, model.input_size, 50_000_000, max_batch=e2e_batch, torchvision_on_cpu=a.smoke)

    def scorer_path():
        decoded = scorer_decoder._decode_many(bodies)
        return model.score(np.stack([d.pixels for d in decoded]))

    out["scorer_path_img_per_s"] = rate(scorer_path, e2e_batch, seconds, device)
    if codec is not None:
        from galleryrank.consumer.images import hw_decode

        def end_to_end_hw():
            got = hw_decode.decode_batch(codec, bodies, model.input_size, 50_000_000, None, 1 << 33, device)
            px = torch.stack([torch.as_tensor(r.pixels) for r in got.results]).to(device)
            with torch.inference_mode(), autocast():
                dist, area, emb = net(px.contiguous(memory_format=torch.channels_last))
            return outputs_to_host(dist, area, emb)

        out["end_to_end_hw_img_per_s"] = rate(end_to_end_hw, e2e_batch, seconds, device)
        out["end_to_end_hw_cpu_ms"] = host_cpu_ms(end_to_end_hw, e2e_batch, device)
    out["decode"] = decode_rates(codec, device, a.smoke, seconds, min(n_photos, 16), e2e_batch)
    out["decode_only_img_per_s"] = rate(decode_only, e2e_batch, seconds, device)
    out["end_to_end_img_per_s"] = rate(end_to_end, e2e_batch, seconds, device)
    out["end_to_end_batch"] = e2e_batch
    log(f"decode only {out['decode_only_img_per_s']:.0f} img/s, end to end {out['end_to_end_img_per_s']:.0f} img/s")

    print_table(out, batches)
    name = "gpu_cpu_smoke.json" if a.smoke else "gpu.json"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / name).write_text(json.dumps(out, indent=2, default=str))
    ok = out["correctness"]["bf16_same_pixels_ok"] and out["correctness"]["gpu_decode_path_ok"]
    ok = ok and out["correctness"].get("hw_decode_path_ok", True)
    return 0 if ok else 1


def print_table(out: dict, batches: list[int]) -> None:
    from rich.console import Console
    from rich.table import Table

    c = out["correctness"]
    t = Table(title=f"galleryrank GPU benchmark ({out['gpu'] or out['device']}, torch {out['torch']})")
    for col in ("measure", "value", "target / note"):
        t.add_column(col)
    s = c["bf16_same_pixels"]
    t.add_row(
        "fp16 on device vs fp32 CPU, same pixels",
        f"|Δaesthetic| {s['aesthetic_max_abs']:.4f}, |Δarea| {s['area_max_abs']:.4f}, cos {s['embedding_cos_min']:.4f}",
        f"{BF16_TOL}: {'ok' if c['bf16_same_pixels_ok'] else 'FAILED'}",
    )
    d = c["gpu_decode_path"]
    t.add_row(
        "GPU decode path vs CPU decode + fp32",
        f"|Δaesthetic| {d['aesthetic_max_abs']:.4f}, |Δarea| {d['area_max_abs']:.4f}, cos {d['embedding_cos_min']:.4f}, "
        f"pixels mean {c['gpu_decode_pixel_mean_abs']:.2f} max {c['gpu_decode_pixel_max_abs']}",
        f"{DECODE_TOL}: {'ok' if c['gpu_decode_path_ok'] else 'FAILED'} ({c['gpu_decoded_on_device']} via batched decode_jpeg)",
    )
    if "hw_decode_path" in c:
        d = c["hw_decode_path"]
        t.add_row(
            f"hardware decode path ({out['hardware']['backend']}) vs CPU decode + fp32",
            f"|Δaesthetic| {d['aesthetic_max_abs']:.4f}, |Δarea| {d['area_max_abs']:.4f}, cos {d['embedding_cos_min']:.4f}, "
            f"pixels mean {c['hw_decode_pixel_mean_abs']:.2f} max {c['hw_decode_pixel_max_abs']}, "
            f"pHash <= {c['hw_decode_phash_bits_max']} bits",
            f"{HW_DECODE_TOL}: {'ok' if c['hw_decode_path_ok'] else 'FAILED'}",
        )
    else:
        t.add_row("hardware decode path", f"skipped: {out['hardware']['unavailable']}", "")
    for r in out.get("decode", []):
        hw = (
            f"hardware {r['hardware_img_per_s']:,.0f} ({r['hardware_cpu_ms']:.2f} CPU-ms/img)"
            if "hardware_img_per_s" in r
            else "hardware -"
        )
        t.add_row(
            f"decode + resize img/s, {r['size']} (~{r['kb']} KB)",
            f"{hw} / nvJPEG {r['nvjpeg_img_per_s']:,.0f} ({r['nvjpeg_cpu_ms']:.2f} CPU-ms/img) / "
            f"CPU {r['cpu_img_per_s']:,.0f} at {r['cpu_cores']} cores",
            "hardware / torchvision nvJPEG / Pillow draft, a process per core",
        )
    if "end_to_end_hw_img_per_s" in out:
        t.add_row(
            "end to end from JPEG bytes, hardware path",
            f"{out['end_to_end_hw_img_per_s']:,.0f} img/s ({out['end_to_end_hw_cpu_ms']:.2f} host CPU-ms/img)",
            f">= 5,000; batch {out['end_to_end_batch']}, pixels stay on the device",
        )
    for bs in batches:
        m = out["model_only"][bs]
        t.add_row(
            f"model only, fp16, batch {bs}",
            f"{m['on_device_img_per_s']:,.0f} img/s",
            f">= 20,000; from host numpy via ScoringModel.score: {m['from_host_img_per_s']:,.0f} img/s",
        )
    if "compiled" in out:
        t.add_row(
            f"model only, torch.compile, batch {out['compiled']['batch']}",
            f"{out['compiled']['img_per_s']:,.0f} img/s",
            f"compile {out['compiled']['compile_s']:.0f} s",
        )
    t.add_row(
        "decode + resize only (1600x1200 JPEG)",
        f"{out['decode_only_img_per_s']:,.0f} img/s",
        f"batch {out['end_to_end_batch']}",
    )
    t.add_row(
        "end to end from JPEG bytes",
        f"{out['end_to_end_img_per_s']:,.0f} img/s",
        f">= 5,000; batch {out['end_to_end_batch']}, outputs back on the host",
    )
    t.add_row(
        "scorer's per-batch path (GpuDecoder + score)",
        f"{out['scorer_path_img_per_s']:,.0f} img/s",
        "adds host pixels + pHash on CPU threads, as GalleryScorer runs it",
    )
    Console().print(t)


if __name__ == "__main__":
    sys.exit(main())
