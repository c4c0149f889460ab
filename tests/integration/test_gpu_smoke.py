"""`bench/gpu.sh --cpu-smoke`: the unattended GPU run's script, end to end on the CPU (issue 26).

Its three parts (gpu_bench, N consumers, the stage profile) start their own Tansu, Redis and
image servers, so a broken script is found here and not on a lent GPU machine.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # minutes: in make test, not in make test-fast
@pytest.mark.timeout(1200)
def test_gpu_sh_cpu_smoke_prints_one_table_with_every_part():
    run = subprocess.run(
        ["bash", "bench/gpu.sh", "--cpu-smoke"], cwd=ROOT, capture_output=True, text=True, timeout=1150
    )
    out = run.stdout
    assert run.returncode == 0, (out[-3000:], run.stderr[-3000:])
    table = out[out.index("galleryrank GPU run") :]
    # correctness checks (fp16 vs fp32; the hardware path, here on nvImageCodec's CPU backend)
    assert re.search(r"fp16 on the device .*?: ok", table, re.S)
    assert re.search(r"hardware decode \((cpu|hardware)\) vs CPU decode.*?: ok", table, re.S) or (
        "hardware decode vs CPU decode" in table and "skipped" in table
    )
    assert table.count("decode + resize img/s") == 2  # both image sizes
    assert re.search(r"events/s, in-process:cpu, N = 1\s*│\s*[\d,]+\s", table)
    assert "CPU-ms/event: total (/proc)" in table
    profile = json.loads((ROOT / "bench" / "results" / "stage_profile_cpu.json").read_text())
    rows = {r["path"]: r for r in profile["rows"]}
    assert set(rows) == {"cpu", "nvimgcodec-cpu"}
    for r in rows.values():
        assert r["samples"] > 0 and r["cpu_ms_per_event"] > 0
        # the stages add up to the /proc total (all of the process's threads and its decode workers)
        assert sum(r["stages"].values()) == pytest.approx(r["cpu_ms_per_event"], rel=0.15)
    assert rows["cpu"]["stages"].get("decode (worker processes)", 0) > 0  # today's path decodes in the pool
