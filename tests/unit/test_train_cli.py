"""`galleryrank train tagger` from the shell: a short summary on stdout, the whole result in the
file it names; data mistakes are one line, exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.unit.test_models_training import synthetic


def train(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GALLERYRANK_")}
    return subprocess.run(
        [sys.executable, "-m", "galleryrank", "train", "tagger", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_train_prints_a_summary_and_names_the_full_result(tmp_path: Path):
    rng = np.random.default_rng(1)
    data = tmp_path / "data"
    for kind in ("stripes", "blobs"):
        (data / kind).mkdir(parents=True)
        for i in range(8):
            synthetic(kind, rng, size=96).save(data / kind / f"{kind}{i}.png")
    out_dir = tmp_path / "run"
    out = train(
        "--data", str(data), "--out", str(out_dir), "--epochs-heads", "1", "--epochs-all", "0",
        "--device", "cpu", "--batch-size", "8", "--no-progress", "--no-feature-cache",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert 4 <= len(lines) <= 15, out.stdout  # a summary, not the JSON dump
    full = next(line for line in lines if line.startswith("full result"))
    path = Path(full.split()[-1])
    assert path == out_dir / "history.json"
    result = json.loads(path.read_text())
    assert result["task"] == "tagger" and result["history"] and set(result["classes"]) == {"stripes", "blobs"}
    assert any(line.startswith("val accuracy") for line in lines)


def test_data_mistakes_are_one_line(tmp_path: Path):
    rng = np.random.default_rng(2)
    copies, broken = tmp_path / "copies", tmp_path / "broken"
    for kind in ("stripes", "blobs"):
        (copies / kind).mkdir(parents=True)
        (broken / kind).mkdir(parents=True)
        one = synthetic(kind, rng, size=64)
        for i in range(3):
            one.save(copies / kind / f"{i}.png")  # the same photo three times: nothing to validate on
            synthetic(kind, rng, size=64).save(broken / kind / f"{i}.png")
    (broken / "blobs" / "not-an-image.jpg").write_bytes(b"text, not a JPEG")
    for data, needle in ((copies, "not enough distinct images"), (broken, "not-an-image.jpg")):
        out = train("--data", str(data), "--out", str(tmp_path / "run"), "--device", "cpu", "--no-progress")
        assert out.returncode == 2, out.stderr[-2000:]
        assert "Traceback" not in out.stderr
        errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and needle in errors[0], out.stderr[-2000:]
