"""`galleryrank explain` as a user runs it: same-named photos in two folders get two files, a
manifest says which is which, and each PNG carries a caption band saying what it shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.integration


def test_explain_writes_one_captioned_file_per_input(tmp_path, sample_jpegs):
    names = sorted(sample_jpegs)
    inputs = []
    for area, name in (("bathroom", names[0]), ("kitchen", names[1])):
        (tmp_path / area).mkdir()
        photo = tmp_path / area / "house026.jpg"  # the same file name in both folders
        photo.write_bytes(sample_jpegs[name])
        inputs.append(str(photo))
    out_dir = tmp_path / "cams"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GALLERYRANK_")}
    out = subprocess.run(
        [sys.executable, "-m", "galleryrank", "explain", *inputs, "--area", "kitchen", "--out", str(out_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "Warning" not in out.stderr, out.stderr  # a quiet start: no library warnings
    result = json.loads(out.stdout)
    files = [f for image in result["images"] for f in image["overlays"].values()]
    assert len(files) == len(set(files)) >= 2, files  # never the same path twice
    assert {os.path.basename(f).split("_cam_")[0] for f in files} == {"bathroom__house026", "kitchen__house026"}
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert [i["image"] for i in manifest["images"]] == inputs

    for image in result["images"]:
        source = Image.open(image["image"])
        for area, path in image["overlays"].items():
            png = Image.open(path)
            caption = image["captions"][area]
            assert area in caption and result["model_version"] in caption and "p=" in caption
            # the overlay keeps the photo's aspect ratio; the caption band lies below it, with text in it
            overlay_h = round(png.width * source.height / source.width)
            band = np.asarray(png.convert("L"))[overlay_h + 1 :, :]
            assert band.shape[0] >= 10, (png.size, overlay_h)
            assert (band > 200).sum() > 50 and (band < 60).mean() > 0.5  # white text on a dark band
