"""A quiet install and start: our packaging raises no setuptools warnings, and exporting the
scoring graph (the first model load of every service) raises no library warnings."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_building_the_wheel_prints_no_packaging_warnings(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    for needle in ("BuildBackendWarning", "deprecated", "would be ignored", "SetuptoolsDeprecationWarning"):
        assert needle not in text, text[-3000:]


def test_exporting_the_scoring_graph_raises_no_warnings(tmp_path):
    from galleryrank.models.export import export_graph
    from galleryrank.models.scoring import load_scoring_model

    model = load_scoring_model(None, device="cpu", backend="torch").torch_module()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_graph(model, tmp_path / "m.onnx")
    # What a normal start prints: Python's default filters hide DeprecationWarnings raised inside
    # libraries (torch's note on its TorchScript exporter), so those are not counted here.
    shown = [w for w in caught if not issubclass(w.category, DeprecationWarning | PendingDeprecationWarning)]
    assert [f"{w.category.__name__}: {str(w.message)[:120]}" for w in shown] == []
    assert (tmp_path / "m.onnx").stat().st_size > 1_000_000
