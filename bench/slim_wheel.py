"""Cut a wheel down to what one machine loads, so bench/gpu.sh's wheels fit what a lent GPU machine is sent.

nvImageCodec's wheel (25 MB packed, 67 MB unpacked) holds its binding for nine Python ABIs and
codec extensions for JPEG 2000, TIFF and OpenCV; the scorer needs one ABI and the JPEG decoders
(nvJPEG for the GPU, libjpeg-turbo for the CPU backend). The slimmed wheel keeps those files,
the package's Python files and its metadata, with RECORD rewritten (sha256, sizes).

    python bench/slim_wheel.py .whl/nvidia_nvimgcodec_cu13-*.whl --python cp312 \
        --drop-glob 'nvidia/nvimgcodec/extensions/lib{nvjpeg2k,nvtiff,tiff,opencv,nvbmp,nvpnm}_ext*'
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import re
import sys
import zipfile
from pathlib import Path

DEFAULT_DROP = (
    "nvidia/nvimgcodec/extensions/libnvjpeg2k_ext*",
    "nvidia/nvimgcodec/extensions/libnvtiff_ext*",
    "nvidia/nvimgcodec/extensions/libtiff_ext*",
    "nvidia/nvimgcodec/extensions/libopencv_ext*",
    "nvidia/nvimgcodec/extensions/libnvbmp_ext*",
    "nvidia/nvimgcodec/extensions/libnvpnm_ext*",
    "nvidia/nvimgcodec/include/*",
)


def slim(src: Path, dst: Path, python: str, drop: tuple[str, ...]) -> tuple[int, int]:
    """Write the slimmed copy of `src` to `dst`; returns (files kept, files dropped)."""
    abi = re.compile(r"\.cpython-(\d+t?)-")
    want = python.removeprefix("cp")
    kept, dropped = [], 0
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        record_name = next(n for n in zin.namelist() if n.endswith(".dist-info/RECORD"))
        for info in zin.infolist():
            name = info.filename
            m = abi.search(name)
            if name == record_name or (m and m.group(1) != want) or any(fnmatch.fnmatch(name, g) for g in drop):
                dropped += name != record_name
                continue
            data = zin.read(name)
            zout.writestr(info, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            kept.append(f"{name},sha256={digest},{len(data)}")
        zout.writestr(record_name, "\n".join([*kept, f"{record_name},,"]) + "\n")
    return len(kept), dropped


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("wheel", type=Path)
    p.add_argument("--python", default=f"cp{sys.version_info.major}{sys.version_info.minor}")
    p.add_argument("--drop-glob", action="append", default=None, help="paths to leave out (default: non-JPEG codecs)")
    p.add_argument("--out", type=Path, default=None, help="default: replace the wheel in place")
    a = p.parse_args(argv)
    out = a.out or a.wheel.with_suffix(".slim")
    kept, dropped = slim(a.wheel, out, a.python, tuple(a.drop_glob or DEFAULT_DROP))
    before = a.wheel.stat().st_size
    if a.out is None:
        out.replace(a.wheel)
        out = a.wheel
    print(
        f"{a.wheel.name}: {before / 2**20:.1f} MB -> {out.stat().st_size / 2**20:.1f} MB ({kept} files kept, {dropped} dropped)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
