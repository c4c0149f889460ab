"""Decode cost of hostile images: peak memory per mode at the pixel cap, and CPU of a scan bomb.

Each image is decoded in a fresh process (so one's peak does not hide another's) by
the decode of this tree, and, with ``--baseline FILE``, by another version of
``consumer/images/decode.py`` (e.g. ``git show REV:consumer/images/decode.py > old.py``),
side by side. Prints one table; nothing is downloaded, nothing leaves the machine.

    python -m bench.decode_bench [--baseline old_decode.py]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import importlib.util, json, sys, time
from galleryrank.consumer.images.decode_pool import _import_preprocess_without_torch, peak_rss_bytes
_import_preprocess_without_torch()
if {module!r}:
    spec = importlib.util.spec_from_file_location("decode_under_test", {module!r})
    decode = sys.modules["decode_under_test"] = importlib.util.module_from_spec(spec); spec.loader.exec_module(decode)
else:
    from galleryrank.consumer.images import decode
data = open({path!r}, "rb").read()
base = peak_rss_bytes()
t = time.process_time()
try:
    decode.decode_image(data, 224, 50_000_000)
    outcome = "ok"
except decode.DecodeError as exc:
    outcome = exc.reason
print(json.dumps({{"peak_mb": (peak_rss_bytes() - base) / 2**20,
                  "cpu_s": time.process_time() - t, "outcome": outcome}}))
"""


def measure(path: str, module: str, timeout_s: float) -> dict:
    code = _CHILD.format(module=module, path=path)
    started = time.monotonic()
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s, check=True
        ).stdout
        return json.loads(out.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        return {"peak_mb": float("nan"), "cpu_s": time.monotonic() - started, "outcome": f">{timeout_s:g} s (killed)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="", help="another decode.py to compare with")
    ap.add_argument("--timeout-s", type=float, default=60.0, help="per decode")
    args = ap.parse_args()
    from tests.hostile_images import at_cap_images, progressive_scan_bomb

    cases = dict(at_cap_images())
    cases["jpeg_scan_bomb_4096_2000"] = progressive_scan_bomb(4096, 2_000)
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "galleryrank-decode-bench"
    tmp.mkdir(exist_ok=True)
    rows = []
    for name, data in cases.items():
        path = tmp / name
        path.write_bytes(data)
        row = {"case": name, "kb": len(data) // 1024, "now": measure(str(path), "", args.timeout_s)}
        if args.baseline:
            row["baseline"] = measure(str(path), os.path.abspath(args.baseline), args.timeout_s)
        rows.append(row)
    head = "| image (7000x7000 unless named) | file KB | peak MB now | CPU s now | outcome now |"
    head += " peak MB baseline | CPU s baseline | outcome baseline |" if args.baseline else ""
    print(head)
    print("|" + " --- |" * (head.count("|") - 1))
    for r in rows:
        line = (
            f"| {r['case']} | {r['kb']} | {r['now']['peak_mb']:.0f} | {r['now']['cpu_s']:.2f} | {r['now']['outcome']} |"
        )
        if args.baseline:
            b = r["baseline"]
            line += f" {b['peak_mb']:.0f} | {b['cpu_s']:.2f} | {b['outcome']} |"
        print(line)


if __name__ == "__main__":
    main()
