"""bench/gpu.sh's one table: the three parts' JSON results (bench/results/) side by side.

python -m bench.gpu_report            # after bench/gpu.sh (cuda results)
python -m bench.gpu_report --smoke    # after bench/gpu.sh --cpu-smoke
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def rows(gpu: dict | None, msb: dict | None, prof: dict | None) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    if gpu is None:
        out.append(("part 1 (gpu_bench)", "missing: it failed or ran out of time", ""))
    else:
        c = gpu["correctness"]
        s = c["bf16_same_pixels"]
        out.append((
            "fp16 on the device (auto backend) vs fp32 CPU, same pixels",
            f"|Δaesthetic| {s['aesthetic_max_abs']:.4f}, |Δarea| {s['area_max_abs']:.4f}, cos {s['embedding_cos_min']:.4f}",
            f"≤ 0.02 / ≤ 0.01 / ≥ 0.999 (bf16 failed: |Δarea| 0.154): {'ok' if c['bf16_same_pixels_ok'] else 'FAILED'}",
        ))  # fmt: skip
        if "hw_decode_path_ok" in c:
            d = c["hw_decode_path"]
            out.append((
                f"hardware decode ({gpu['hardware']['backend']}) vs CPU decode, same files",
                f"pixels mean {c['hw_decode_pixel_mean_abs']:.2f} max {c['hw_decode_pixel_max_abs']}, pHash ≤ "
                f"{c['hw_decode_phash_bits_max']} bits; scores |Δaesthetic| {d['aesthetic_max_abs']:.3f} |Δarea| "
                f"{d['area_max_abs']:.3f}",
                f"mean ≤ 1.0, pHash ≤ 6 bits, |Δaesthetic| ≤ 0.10, |Δarea| ≤ 0.05: "
                f"{'ok' if c['hw_decode_path_ok'] else 'FAILED'}",
            ))  # fmt: skip
        else:
            out.append(("hardware decode vs CPU decode", f"skipped: {gpu['hardware']['unavailable']}", ""))
        for r in gpu.get("decode", []):
            hw = f"{r['hardware_img_per_s']:,.0f} ({r['hardware_cpu_ms']:.2f})" if "hardware_img_per_s" in r else "-"
            out.append((
                f"decode + resize img/s {r['size']} (~{r['kb']} KB): hardware / nvJPEG / CPU",
                f"{hw} / {r['nvjpeg_img_per_s']:,.0f} ({r['nvjpeg_cpu_ms']:.2f}) / {r['cpu_img_per_s']:,.0f}",
                f"(host CPU-ms per image); CPU = Pillow draft on {r['cpu_cores']} cores",
            ))  # fmt: skip
        for bs, m in gpu["model_only"].items():
            out.append((f"model only, batch {bs}", f"{m['on_device_img_per_s']:,.0f} img/s",
                        f"from host numpy: {m['from_host_img_per_s']:,.0f}"))  # fmt: skip
        e2e = f"nvJPEG {gpu['end_to_end_img_per_s']:,.0f}"
        if "end_to_end_hw_img_per_s" in gpu:
            e2e = f"hardware {gpu['end_to_end_hw_img_per_s']:,.0f} / " + e2e
        out.append((f"end to end from JPEG bytes, batch {gpu['end_to_end_batch']}", f"{e2e} img/s", "target ≥ 5,000"))
    if msb is None:
        out.append(("part 2 (events/s, N processes)", "missing: it failed or ran out of time", ""))
    else:
        for r in msb["rows"]:
            label = f"events/s, {r['mode']}, N = {r['processes']}"
            if "skipped" in r:
                out.append((label, f"skipped: {r['skipped'][:90]}", ""))
            else:
                out.append((label, f"{r['events_per_s']:,.0f}",
                            f"{r['consumer_cpu_ms_per_event']:.2f} CPU-ms/event, batch {r['mean_batch']:.0f}, "
                            f"load {r['load_avg']:.1f}; ran {r.get('decode_path') or '?'}"))  # fmt: skip
    if prof is None:
        out.append(("part 3 (CPU-ms per event by stage)", "missing: it failed or ran out of time", ""))
    else:
        paths = [r["path"] for r in prof["rows"]]
        stages: list[str] = []
        for r in prof["rows"]:
            stages += [s for s in r["stages"] if s not in stages]
        head = " / ".join(paths)
        for s in stages:
            out.append((f"CPU-ms/event: {s}", " / ".join(f"{r['stages'].get(s, 0.0):.2f}" for r in prof["rows"]), head))
        out.append(("CPU-ms/event: total (/proc)", " / ".join(f"{r['cpu_ms_per_event']:.2f}" for r in prof["rows"]),
                    f"{head}; target ≤ 3 on the hardware path"))  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args(argv)
    dev = "cpu" if a.smoke else "cuda"
    gpu = _load("gpu_cpu_smoke.json" if a.smoke else "gpu.json")
    from rich.console import Console
    from rich.table import Table

    title = "galleryrank GPU run" + (f" ({gpu['gpu'] or gpu['device']}, torch {gpu['torch']})" if gpu else "")
    t = Table(title=title + (": CPU smoke, tiny sizes, not performance figures" if a.smoke else ""))
    for col in ("measure", "value", "target / note"):
        t.add_column(col)
    table = rows(gpu, _load(f"model_server_{dev}.json"), _load(f"stage_profile_{dev}.json"))
    for r in table:
        t.add_row(*r)
    Console(width=170).print(t)
    print(f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
    # A part that is missing or a row that failed makes the run fail (pytriton rows aside: optional).
    broken = [r[0] for r in table if r[1].startswith(("missing", "skipped: failed")) or "FAILED" in r[2]]
    for name in broken:
        print(f"not measured or failed: {name}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
