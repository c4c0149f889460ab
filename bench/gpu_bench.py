"""GPU benchmark (issue 4, item 7); run through bench/gpu.sh.

1. correctness against the CPU on the same inputs: the same CPU-decoded
   pixels scored in fp16 (the CUDA default backend) on the device vs PyTorch eager fp32 on the CPU
   (tolerances of tests/unit/test_backends.py), and the GPU decode path
   (galleryrank.consumer.images.gpu_decode, nvJPEG + antialiased resize) vs the CPU decode path;
2. model-only img/s at batch 64 and 256, fp16 autocast + channels_last, input
   already on the device; and through ``ScoringModel.score`` from host numpy
   (pinned memory, non-blocking copy, outputs back to the host);
3. end to end from JPEG bytes in host memory: batched GPU decode + resize +
   fp16 model + outputs back to the host, img/s.

``--smoke`` runs tiny sizes on the CPU (the fallback path) to check the script.
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


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def rate(fn, items: int, seconds: float, device: str, min_calls: int = 3) -> float:
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
    p.add_argument("--photos", type=int, default=None, help="distinct 1600x1200 JPEGs (default 64; smoke 4)")
    p.add_argument("--seconds", type=float, default=None, help="per measurement (default 8; smoke 0.5)")
    p.add_argument("--batches", default=None, help="model-only batch sizes (default 64,256; smoke 4,8)")
    p.add_argument("--e2e-batch", type=int, default=None, help="end-to-end batch (default 256; smoke 8)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile(mode='max-autotune')")
    a = p.parse_args(argv)
    device = a.device or ("cpu" if a.smoke else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: run bench/gpu.sh --cpu-smoke for the CPU fallback", file=sys.stderr)
        return 2
    n_photos = a.photos or (4 if a.smoke else 64)
    seconds = a.seconds or (0.5 if a.smoke else 8.0)
    batches = [int(b) for b in (a.batches or ("4,8" if a.smoke else "64,256")).split(",")]
    e2e_batch = a.e2e_batch or (8 if a.smoke else 256)

    from bench.pipeline_bench import make_photos
    from galleryrank.consumer.images.decode import decode_image
    from galleryrank.consumer.images.gpu_decode import decode_batch
    from galleryrank.models import load_scoring_model

    log = lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", file=sys.stderr, flush=True)  # noqa: E731
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
    # --smoke: the same batched torchvision code path, run by its CPU decoder.
    gpu_dec = decode_batch(photos[:k], model.input_size, device=device, torchvision_on_cpu=a.smoke)
    assert gpu_dec.ok == list(range(k)), gpu_dec.failed
    pixel_diff = np.abs(gpu_dec.pixels.cpu().numpy().astype(np.int16) - cpu_pixels.astype(np.int16))
    net = model.torch_module()
    cuda = device.startswith("cuda")
    autocast = lambda: torch.autocast(device_type="cuda" if cuda else "cpu", dtype=torch.float16)  # noqa: E731
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
    out["decode_only_img_per_s"] = rate(decode_only, e2e_batch, seconds, device)
    out["end_to_end_img_per_s"] = rate(end_to_end, e2e_batch, seconds, device)
    out["end_to_end_batch"] = e2e_batch
    log(f"decode only {out['decode_only_img_per_s']:.0f} img/s, end to end {out['end_to_end_img_per_s']:.0f} img/s")

    print_table(out, batches)
    name = "gpu_cpu_smoke.json" if a.smoke else "gpu.json"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / name).write_text(json.dumps(out, indent=2, default=str))
    ok = out["correctness"]["bf16_same_pixels_ok"] and out["correctness"]["gpu_decode_path_ok"]
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
    for bs in batches:
        m = out["model_only"][bs]
        t.add_row(
            f"model only, bf16, batch {bs}",
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
