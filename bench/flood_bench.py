"""Two floods, old design against new in one run (issue 20): peak RSS, wall and CPU time.

1. Loading a hotel of 2,000 identical photos (same embedding, same pHash) against 2,000
   distinct ones: ``HotelState.from_redis`` of their stored records, what every restart,
   rebalance, eviction or version conflict does. The old design kept every near-duplicate
   edge (N^2 / 2 of them for identical photos).
2. 40,000 ``image.hidden`` events of distinct never-seen ids in one hotel against 40,000
   ``image.deleted`` events, decided the way ``GalleryStore.apply`` does (chunks of 32
   changes, then the document and the overrides encoded for the write). The old design
   scanned every flag per override (quadratic): it runs 10,000 of each here (x16 for 40,000).

Each case runs in its own child process (bench/baseline.py: the old side is a git worktree
of the commit before issue 20), so peak RSS (VmHWM, reset through /proc/self/clear_refs
after the input is built) is the case's own.

    python -m bench.flood_bench            # the table
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time

BASELINE = "2e39f6c"  # the last commit before issue 20's changes


def _status_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def _child(case: str, n: int) -> dict:
    import numpy as np

    from galleryrank.consumer.state import records
    from galleryrank.consumer.state.hotel import HotelState
    from galleryrank.consumer.state.overrides import HideChange, encode_overrides
    from galleryrank.ranking.types import RankingConfig

    change_type = getattr(records, "ImageChange", None) or records.ImageState
    config = RankingConfig()
    rng = np.random.default_rng(0)
    if case.startswith("load"):
        identical = case == "load-identical"
        base = rng.normal(size=128).astype(np.float32)
        fields = {}
        for i in range(n):
            emb = base if identical else rng.normal(size=128).astype(np.float32)
            rec = change_type(
                f"img-{i}",
                records.Fence(0, i, "t", None, 1_700_000_000_000 + i),
                f"e-{i}",
                url=f"https://cdn.example.com/{i}.jpg",
                aesthetic=5.0 + (i % 100) / 100,
                aesthetic_dist=(0.1,) * 10,
                area_probs={"bedroom": 0.7, "bathroom": 0.3},
                embedding=emb / np.linalg.norm(emb),
                phash=12345 if identical else int(rng.integers(0, 2**63)),
                model_version="m",
            )
            fields[f"img-{i}".encode()] = records.encode_record(rec)
        _reset_peak()
        rss0 = _status_kb("VmRSS")
        wall, cpu = time.perf_counter(), time.process_time()
        state = HotelState.from_redis("h", config, fields, None, None, None)
        state.render()
    else:
        changes = []
        for i in range(n):
            fence = records.Fence(0, i, "t", None, 1_700_000_000_000 + i)
            if case == "hides":
                changes.append(HideChange(f"img-{i}", fence, f"e-{i}", hidden=True))
            else:
                changes.append(change_type(f"img-{i}", fence, f"e-{i}", deleted=True))
        state = HotelState("h", config)
        _reset_peak()
        rss0 = _status_kb("VmRSS")
        wall, cpu = time.perf_counter(), time.process_time()
        for start in range(0, n, 32):  # the writer's ENOUGH_TO_WRITE chunk, decided as the store does
            overrides = False
            for change in changes[start : start + 32]:
                overrides |= state.apply(change).overrides
            state.render()
            if overrides:
                encode_overrides(state.overrides)
    return {
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "peak_mb": (_status_kb("VmHWM") - rss0) / 1024,
        "weight": state.weight,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=2, metavar=("CASE", "N"))
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--old-events", type=int, default=10_000)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], int(args.child[1]))))
        return

    from bench.baseline import child_command, child_env, describe

    cases = [
        ("load-distinct", args.photos, args.photos),
        ("load-identical", args.photos, args.photos),
        ("deletes", args.events, args.old_events),
        ("hides", args.events, args.old_events),
    ]
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    print(f"{'case':<16} {'side':<16} {'n':>7} {'wall s':>8} {'CPU s':>8} {'CPU-us/item':>11} {'peak MB':>8}")
    for case, n_new, n_old in cases:
        for side in ("old", "new"):
            n = n_old if side == "old" else n_new
            out = subprocess.run(
                child_command("bench.flood_bench", "--child", case, str(n)),
                env=child_env(side, BASELINE),
                capture_output=True,
                text=True,
            )
            if out.returncode:
                print(f"{case:<16} {describe(side, BASELINE):<16} failed: {out.stderr.strip()[-300:]}", file=sys.stderr)
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{case:<16} {describe(side, BASELINE):<16} {n:>7} {r['wall_s']:>8.2f} {r['cpu_s']:>8.2f}"
                f" {r['cpu_s'] / n * 1e6:>11.0f} {r['peak_mb']:>8.1f}"
            )


if __name__ == "__main__":
    main()
