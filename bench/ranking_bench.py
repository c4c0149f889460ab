"""Gallery ranking benchmark: every strategy, side by side, on synthetic
galleries with known truth (ranking/synthetic.py), sizes 10 to 5,000.

One run does three things:
1. tunes each diversifying strategy's trade-off on a *tuning* set (its own
   seeds): the most area coverage (S-recall@8 relative to the best achievable)
   whose mean aesthetic@8 stays >= 0.90 + margin of the pure-aesthetic order
   with no injected duplicate in the first 10; the strategy that covers most
   becomes the measured default;
2. evaluates every strategy (tuned), the code's default config and two
   variants of it (hero rule, per-area cap) on a separate *evaluation* set:
   alpha-nDCG@10, S-recall@8, aesthetic@8, duplicates@10, stability;
3. times rank() (input conversion included) at 133 and 2,000 images;
4. when houses-dev is there (bench/houses_galleries.py), ranks galleries of ~40
   real listing photos (ten houses merged into one hotel) with the same configs.

Beside the classic columns: the longest same-area run in the first 12 and in the
head (by the tagger's top area, what the ranker sees, and by the true area, what
a person sees), the head's share deviation from the gallery's area shares (total
variation), and the share of hotels whose hero is in a hero area among those that
have a confident hero-area photo within hero_tolerance of the best.
"today's default" is the pre-issue-22 default (xquad 0.9, no hero rule, no run
limit, no confidence floor), measured in the same run.

Prints rich tables and writes bench/results/ranking.json (+ ranking.md, the
same tables in Markdown for docs/ranking.md).

    nice -n 10 python -m bench.ranking_bench

The script sets OPENBLAS_NUM_THREADS=1 unless the environment already sets
it: that is how the scorer should run rank(). On a busy 2-core machine a
multi-threaded BLAS call waits for a second core and a 2 ms matmul takes tens
of ms (measured while writing this: p50 72 ms instead of 16 ms at 2,000
images). Latency is reported as wall time (p50, p99) and as the CPU time of
the calling thread (p50), which other processes on a shared machine do not
inflate.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS

import argparse
import json
import platform
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from galleryrank.ranking import DEFAULT_STRATEGY, STRATEGIES, RankingConfig, build_gallery, rank
from galleryrank.ranking import metrics as M
from galleryrank.ranking.duplicates import near_duplicate_mask
from galleryrank.ranking.pipeline import pick_hero
from galleryrank.ranking.synthetic import SyntheticGallery, synthetic_gallery

K_COVER, K_NDCG, K_DUP = 8, 10, 10
TARGET_COVER_SHARE = 0.95  # S-recall@8 >= 0.95 of the best achievable
TARGET_AESTHETIC = 0.88  # mean aesthetic@8 >= 88 % of the pure-aesthetic order (issue 22)
TUNING_MARGIN = 0.01  # tune to aesthetic >= 0.89 so the evaluation set keeps >= 0.88
TARGET_P50_MS = {133: 1.0, 2000: 10.0}
TARGET_RUN = 2  # longest same-area run in the first 12, where >= 3 areas have >= 3 photos
K_RUN = 12
DIVERSITY_GRID = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
TUNABLE = ("mmr", "dpp", "xquad", "pm2", "seats")
UTILITY_TIE = 0.005
# The default before issue 22, kept in every run as the reference.
TODAY_LABEL = "today's default (xquad, before #22)"
TODAY = RankingConfig(
    strategy="xquad", diversity=0.9, hero_areas=(), hero_tolerance=0.5, area_confidence=0.0, max_run=None
)

EVAL_SIZES = {10: 300, 30: 200, 133: 150, 500: 40, 2000: 30, 5000: 6}
TUNE_SIZES = {30: 80, 133: 80, 500: 20}
LATENCY_REPEATS = {133: 3, 2000: 2}


def galleries(sizes: dict[int, int], seed: int) -> dict[int, list[SyntheticGallery]]:
    rng = np.random.default_rng(seed)
    return {
        n: [synthetic_gallery(n, rng, id_prefix=f"s{seed}-n{n}-g{i}") for i in range(count)]
        for n, count in sizes.items()
    }


def run_eligible(labels: np.ndarray) -> bool:
    """>= 3 areas with >= 3 photos each: a gallery where a run of 3 is avoidable."""
    return int((np.bincount(labels) >= 3).sum()) >= 3


def quality_metrics(g: SyntheticGallery, order: list[int], config: RankingConfig | None = None) -> dict[str, float]:
    config = config or RankingConfig()
    best = M.best_s_recall(g.true_area, K_COVER)
    cover = M.s_recall(order, g.true_area, K_COVER)
    tags = np.array([int(np.argmax(c.area_probs)) for c in g.candidates], dtype=np.int64)
    head = min(config.head_size, len(order))
    eligible = run_eligible(tags)
    # Hero rule measured with the production rule (default hero areas, floor, tolerance)
    # whatever the config, so "today's default" is judged by the same yardstick.
    yardstick = RankingConfig()
    gallery = build_gallery(g.candidates, g.areas)
    dup = near_duplicate_mask(gallery, yardstick.duplicate_cosine, yardstick.duplicate_hamming)
    qualifying = pick_hero(gallery, yardstick, dup) is not None
    hero_names = set(yardstick.hero_areas)
    hero_tag = g.areas[tags[order[0]]] if order else ""
    return {
        "alpha_ndcg@10": M.alpha_ndcg(order, g.true_area, K_NDCG),
        "s_recall@8": cover,
        "s_recall@8_of_best": cover / best if best > 0 else 1.0,
        "aesthetic@8": M.aesthetic_ratio(order, g.aesthetic, K_COVER),
        "duplicates@10": M.duplicates_at(order, g.group, K_DUP),
        "run@12": float(M.longest_run(tags[order[:K_RUN]].tolist())) if eligible else np.nan,
        "run@12_true": float(M.longest_run(g.true_area[order[:K_RUN]].tolist()))
        if run_eligible(g.true_area)
        else np.nan,
        "run@head": float(M.longest_run(tags[order[:head]].tolist())) if eligible else np.nan,
        "share_dev@head": M.share_deviation(order, g.true_area, head) if len(order) > head else np.nan,
        "hero_in_hero_area": float(hero_tag in hero_names) if qualifying else np.nan,
        "hero_any_hero_area": float(hero_tag in hero_names),
    }


RUN_KEYS = ("run@12", "run@12_true", "run@head")
MEAN_KEYS = ("share_dev@head", "hero_in_hero_area", "hero_any_hero_area")


def summarise(rows: list[dict]) -> dict:
    summary = {}
    for key in rows[0]:
        values = np.array([r[key] for r in rows], dtype=np.float64)
        values = values[~np.isnan(values)]
        if key in RUN_KEYS:
            summary[key] = float(values.max()) if values.size else np.nan
            summary[key + "_ok"] = float((values <= TARGET_RUN).mean()) if values.size else np.nan
        else:
            summary[key] = float(values.mean()) if values.size else np.nan
    return summary


def stability(g: SyntheticGallery, config: RankingConfig, rng: np.random.Generator) -> float:
    """Mean |position change| of the other images when one image is added to the gallery."""
    singletons = [i for i in range(len(g.candidates)) if (g.group == g.group[i]).sum() == 1]
    if not singletons:
        return 0.0
    added = int(rng.choice(singletons))
    before = [c for i, c in enumerate(g.candidates) if i != added]
    after_ids = [g.candidates[i].image_id for i in rank(g.candidates, g.areas, config)]
    before_ids = [before[i].image_id for i in rank(before, g.areas, config)]
    return M.position_shift(before_ids, after_ids)


def evaluate(config: RankingConfig, sets: dict[int, list[SyntheticGallery]], with_stability: bool) -> dict[int, dict]:
    rng = np.random.default_rng(99)
    out: dict[int, dict] = {}
    for n, gs in sets.items():
        rows = [quality_metrics(g, rank(g.candidates, g.areas, config), config) for g in gs]
        summary = summarise(rows)
        summary["duplicates@10"] = int(sum(r["duplicates@10"] for r in rows))
        summary["galleries"] = len(gs)
        if with_stability:
            summary["stability"] = float(np.mean([stability(g, config, rng) for g in gs]))
        out[n] = summary
    return out


def pooled(per_size: dict[int, dict]) -> dict[str, float]:
    """Gallery-weighted mean over sizes."""
    weights = {n: s["galleries"] for n, s in per_size.items()}
    total = sum(weights.values())
    keys = ("alpha_ndcg@10", "s_recall@8_of_best", "aesthetic@8")
    result = {k: sum(per_size[n][k] * w for n, w in weights.items()) / total for k in keys}
    result["duplicates@10"] = sum(s["duplicates@10"] for s in per_size.values())
    devs = [(s["share_dev@head"], weights[n]) for n, s in per_size.items() if not np.isnan(s["share_dev@head"])]
    result["share_dev@head"] = sum(d * w for d, w in devs) / sum(w for _, w in devs) if devs else 0.0
    runs = [s["run@12"] for s in per_size.values() if not np.isnan(s["run@12"])]
    result["run@12"] = max(runs) if runs else 0.0
    return result


CLASSIC_HEADERS = ["α-nDCG@10", "S-recall@8", "S-rec@8 / best", "aesthetic@8", "dups@10", "stability (Δpos)"]
RULE_HEADERS = ["run@12 max (ok %)", "run@12 true max (ok %)", "run@head max", "head share dev", "hero in hero area"]


def _num(x: float, fmt: str = ".3f") -> str:
    return "n/a" if x is None or np.isnan(x) else format(x, fmt)


def classic_cells(r: dict) -> list[str]:
    return [
        f"{r['alpha_ndcg@10']:.3f}",
        f"{r['s_recall@8']:.3f}",
        f"{r['s_recall@8_of_best']:.3f}",
        f"{r['aesthetic@8']:.3f}",
        str(r["duplicates@10"]),
        _num(r.get("stability", np.nan), ".2f"),
    ]


def rule_cells(r: dict) -> list[str]:
    def run(key: str) -> str:
        if np.isnan(r[key]):
            return "n/a"
        return f"{r[key]:.0f} ({100 * r[key + '_ok']:.0f} %)"

    return [
        run("run@12"),
        run("run@12_true"),
        _num(r["run@head"], ".0f"),
        _num(r["share_dev@head"]),
        _num(r["hero_in_hero_area"], ".2f"),
    ]


def houses_sets(galleries_n: int, cache_dir: str) -> list[SyntheticGallery] | None:
    """houses-dev galleries of ~40 photos as SyntheticGallery (truth = the folder's area,
    every photo its own duplicate group); None when houses-dev is absent."""
    from bench.houses import houses_dev_dir

    root = houses_dev_dir()
    if root is None or galleries_n <= 0:
        return None
    import torch

    from bench.houses_galleries import candidates, gallery_houses, gallery_paths, score_photos
    from galleryrank.models.defaults import load_default_model

    torch.set_num_threads(1)
    model, _ = load_default_model()
    out = []
    for houses in gallery_houses(root, galleries_n, seed=0):
        photos = score_photos(model, gallery_paths(root, houses), cache_dir)
        areas = photos.areas
        true = np.array([areas.index(a) for a in photos.true_area], dtype=np.int64)
        out.append(
            SyntheticGallery(
                candidates=candidates(photos),
                areas=areas,
                true_area=true,
                aesthetic=photos.aesthetic,
                group=np.arange(len(true)),
                is_copy=np.zeros(len(true), dtype=bool),
            )
        )
    return out


def tune(sets: dict[int, list[SyntheticGallery]]) -> tuple[dict, dict[str, float]]:
    grid: dict[str, dict[float, dict]] = {}
    chosen: dict[str, float] = {}
    for name in TUNABLE:
        grid[name] = {}
        for diversity in DIVERSITY_GRID:
            grid[name][diversity] = pooled(evaluate(RankingConfig(strategy=name, diversity=diversity), sets, False))
        feasible = [
            d
            for d, r in grid[name].items()
            if r["aesthetic@8"] >= TARGET_AESTHETIC + TUNING_MARGIN and r["duplicates@10"] == 0
        ]
        pick = max(
            feasible or [min(DIVERSITY_GRID)],
            key=lambda d: (grid[name][d]["s_recall@8_of_best"], grid[name][d]["alpha_ndcg@10"]),
        )
        chosen[name] = pick
    return grid, chosen


def latency(configs: dict[str, RankingConfig], sets: dict[int, list[SyntheticGallery]]) -> dict[str, dict[int, dict]]:
    """Time rank() per config; configs are interleaved per gallery so that load
    from other processes spreads evenly over them."""
    wall: dict[str, dict[int, list[float]]] = {label: {n: [] for n in LATENCY_REPEATS} for label in configs}
    cpu: dict[str, dict[int, list[float]]] = {label: {n: [] for n in LATENCY_REPEATS} for label in configs}
    for n, repeats in LATENCY_REPEATS.items():
        for g in sets[n]:
            for _ in range(repeats):
                for label, config in configs.items():
                    start_cpu, start = time.thread_time(), time.perf_counter()
                    rank(g.candidates, g.areas, config)
                    wall[label][n].append((time.perf_counter() - start) * 1e3)
                    cpu[label][n].append((time.thread_time() - start_cpu) * 1e3)
    return {
        label: {
            n: {
                "p50_ms": float(np.percentile(wall[label][n], 50)),
                "p99_ms": float(np.percentile(wall[label][n], 99)),
                "cpu_p50_ms": float(np.percentile(cpu[label][n], 50)),
                "samples": len(wall[label][n]),
            }
            for n in LATENCY_REPEATS
        }
        for label in configs
    }


def choose_default(grid: dict, chosen: dict[str, float], timings: dict[str, dict[int, dict]]) -> tuple[str, list[str]]:
    """The measured default: among tuned strategies that meet every target on the
    tuning set, the best quality utility (mean of S-recall@8/best, alpha-nDCG@10
    and aesthetic@8); utilities within UTILITY_TIE of the best count as a tie
    (smaller than the spread between seeds), broken by CPU time at 2,000 images."""
    notes = []
    utility = {}
    # A latency target that today's default misses in the same run measures the machine's load
    # (or the shared duplicate pass), not the strategy: reported, not used to choose.
    latency_sizes = [n for n in TARGET_P50_MS if timings["today"][n]["cpu_p50_ms"] <= TARGET_P50_MS[n]]
    for n in TARGET_P50_MS:
        if n not in latency_sizes:
            notes.append(
                f"today's default misses p50 <= {TARGET_P50_MS[n]:g} ms at {n} images in this run "
                f"({timings['today'][n]['cpu_p50_ms']:.2f} ms CPU): not used to choose"
            )
    for s in TUNABLE:
        r = grid[s][chosen[s]]
        feasible = (
            r["s_recall@8_of_best"] >= TARGET_COVER_SHARE
            and r["aesthetic@8"] >= TARGET_AESTHETIC
            and r["duplicates@10"] == 0
            and all(timings[s][n]["cpu_p50_ms"] <= TARGET_P50_MS[n] for n in latency_sizes)
        )
        feasible = feasible and r["run@12"] <= TARGET_RUN
        utility[s] = (r["s_recall@8_of_best"] + r["alpha_ndcg@10"] + r["aesthetic@8"] + 1 - r["share_dev@head"]) / 4
        notes.append(
            f"{s} d={chosen[s]:g}: utility {utility[s]:.4f}, cpu p50 {timings[s][2000]['cpu_p50_ms']:.1f} ms at 2000, {'meets' if feasible else 'misses'} the targets"
        )
        if not feasible:
            utility[s] = -1.0
    best = max(utility.values())
    tied = [s for s in TUNABLE if utility[s] >= best - UTILITY_TIE]
    return min(tied, key=lambda s: timings[s][2000]["cpu_p50_ms"]), notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a tenth of the galleries (smoke run)")
    parser.add_argument("--houses", type=int, default=20, help="houses-dev galleries of ~40 photos (0 = none)")
    parser.add_argument("--cache-dir", default="~/.cache/galleryrank", help="backbone feature cache (models.features)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ranking.json")
    args = parser.parse_args()
    eval_sizes, tune_sizes = EVAL_SIZES, TUNE_SIZES
    if args.quick:
        eval_sizes = {n: max(2, c // 10) for n, c in EVAL_SIZES.items()}
        tune_sizes = {n: max(2, c // 10) for n, c in TUNE_SIZES.items()}
    console = Console(width=160)
    started = time.time()

    tune_sets = galleries(tune_sizes, seed=args.seed + 1000)
    grid, chosen = tune(tune_sets)
    code_default = RankingConfig()
    configs: dict[str, RankingConfig] = {
        "aesthetic": RankingConfig(strategy="aesthetic"),
        "aesthetic_dedup": RankingConfig(strategy="aesthetic_dedup"),
        "interleave": RankingConfig(strategy="interleave"),
        **{f"{s} d={chosen[s]:g}": RankingConfig(strategy=s, diversity=chosen[s]) for s in TUNABLE},
        TODAY_LABEL: TODAY,
        "default (code)": code_default,
        "default, no hero rule": replace(code_default, hero_areas=()),
        "default + cap 3/area": replace(code_default, max_per_area=3),
    }
    assert set(STRATEGIES) <= {c.strategy for c in configs.values()}, "a registered strategy is missing from the bench"

    eval_sets = galleries(eval_sizes, seed=args.seed)
    results = {label: evaluate(config, eval_sets, True) for label, config in configs.items()}
    timings = latency(configs, eval_sets)
    # The choice reads the evaluation run's timings (150 galleries x 3 at 133 images, every
    # config interleaved per gallery): the small tuning timing set flipped it on a loaded machine.
    choice_timings = {s: timings[f"{s} d={chosen[s]:g}"] for s in TUNABLE} | {"today": timings[TODAY_LABEL]}
    measured_default, choice_notes = choose_default(grid, chosen, choice_timings)

    # --- tables ------------------------------------------------------------------
    md: list[str] = []
    tuning_table = Table(
        title=f"Tuning set (sizes {tune_sizes}): trade-off per strategy, most coverage with aesthetic@8 >= {TARGET_AESTHETIC + TUNING_MARGIN:.2f}"
    )
    for col in ("strategy", "diversity", "S-recall@8 / best", "aesthetic@8", "α-nDCG@10", "dups@10"):
        tuning_table.add_column(col, justify="right")
    md.append(f"**Tuning set {tune_sizes} (size: galleries), pooled; ◀ = chosen trade-off**\n")
    md.append(
        "| strategy | diversity | S-recall@8 / best | aesthetic@8 | α-nDCG@10 | dups@10 |\n|---|---|---|---|---|---|"
    )
    for name in TUNABLE:
        for d, r in grid[name].items():
            mark = " ◀" if d == chosen[name] else ""
            cells = [
                name,
                f"{d:g}{mark}",
                f"{r['s_recall@8_of_best']:.3f}",
                f"{r['aesthetic@8']:.3f}",
                f"{r['alpha_ndcg@10']:.3f}",
                str(r["duplicates@10"]),
            ]
            tuning_table.add_row(*cells)
            md.append("| " + " | ".join(cells) + " |")
    console.print(tuning_table)
    for note in choice_notes:
        console.print(f"  {note}")

    headers = ["config", *CLASSIC_HEADERS, *RULE_HEADERS]
    for n in eval_sizes:
        extra = ["p50 ms", "p99 ms", "CPU p50 ms"] if n in LATENCY_REPEATS else []
        table = Table(title=f"{n} images per gallery, {eval_sizes[n]} galleries")
        for col in headers + extra:
            table.add_column(col, justify="right")
        md.append(f"\n**{n} images per gallery, {eval_sizes[n]} galleries**\n")
        md.append("| " + " | ".join(headers + extra) + " |")
        md.append("|" + "---|" * len(headers + extra))
        for label in configs:
            r = results[label][n]
            cells = [label, *classic_cells(r), *rule_cells(r)]
            if extra:
                t = timings[label][n]
                cells += [f"{t['p50_ms']:.2f}", f"{t['p99_ms']:.2f}", f"{t['cpu_p50_ms']:.2f}"]
            table.add_row(*cells)
            md.append("| " + " | ".join(cells) + " |")
        console.print(table)

    houses = houses_sets(args.houses, args.cache_dir)
    house_results: dict[str, dict] = {}
    if houses:
        house_results = {label: evaluate(config, {40: houses}, False)[40] for label, config in configs.items()}
        title = f"houses-dev: {len(houses)} galleries of ~40 real photos (10 houses each; truth = folder area)"
        table = Table(title=title)
        for col in headers:
            table.add_column(col, justify="right")
        md.append(f"\n**{title}**\n")
        md.append("| " + " | ".join(headers) + " |")
        md.append("|" + "---|" * len(headers))
        for label in configs:
            cells = [label, *classic_cells(house_results[label]), *rule_cells(house_results[label])]
            table.add_row(*cells)
            md.append("| " + " | ".join(cells) + " |")
        console.print(table)

    d_pooled = pooled(results["default (code)"])
    d_lat = timings["default (code)"]
    rule_sets = {
        f"{n} synthetic": results["default (code)"][n] for n in (30, 133, 500) if n in results["default (code)"]
    }
    if house_results:
        rule_sets["houses-dev 40"] = house_results["default (code)"]
    checks = [
        *[
            check
            for name, r in rule_sets.items()
            for check in (
                (
                    f"run@12 max, tags ({name}, >= 3 areas x 3 photos)",
                    f"<= {TARGET_RUN}",
                    r["run@12"],
                    r["run@12"] <= TARGET_RUN,
                ),
                (
                    f"hero in a hero area where one qualifies ({name})",
                    "= 1",
                    r["hero_in_hero_area"],
                    r["hero_in_hero_area"] == 1.0,
                ),
                (
                    f"aesthetic@8 ({name})",
                    f">= {TARGET_AESTHETIC}",
                    r["aesthetic@8"],
                    r["aesthetic@8"] >= TARGET_AESTHETIC,
                ),
                (
                    f"S-recall@8 / best ({name})",
                    f">= {TARGET_COVER_SHARE}",
                    r["s_recall@8_of_best"],
                    r["s_recall@8_of_best"] >= TARGET_COVER_SHARE,
                ),
            )
        ],
        (
            "S-recall@8 / best (all sizes)",
            f">= {TARGET_COVER_SHARE}",
            d_pooled["s_recall@8_of_best"],
            d_pooled["s_recall@8_of_best"] >= TARGET_COVER_SHARE,
        ),
        *[
            (
                f"  S-recall@8 / best at {n} images",
                f">= {TARGET_COVER_SHARE}",
                r["s_recall@8_of_best"],
                r["s_recall@8_of_best"] >= TARGET_COVER_SHARE,
            )
            for n, r in results["default (code)"].items()
        ],
        (
            "aesthetic@8 (all sizes)",
            f">= {TARGET_AESTHETIC}",
            d_pooled["aesthetic@8"],
            d_pooled["aesthetic@8"] >= TARGET_AESTHETIC,
        ),
        *[
            (
                f"  aesthetic@8 at {n} images",
                f">= {TARGET_AESTHETIC}",
                r["aesthetic@8"],
                r["aesthetic@8"] >= TARGET_AESTHETIC,
            )
            for n, r in results["default (code)"].items()
        ],
        (
            "injected duplicates in first 10 (all galleries)",
            "= 0",
            d_pooled["duplicates@10"],
            d_pooled["duplicates@10"] == 0,
        ),
        *[
            (
                f"p50 latency at {n} images, {kind} (ms)",
                f"< {TARGET_P50_MS[n]:g}",
                d_lat[n][key],
                d_lat[n][key] < TARGET_P50_MS[n],
            )
            for n in TARGET_P50_MS
            for kind, key in (("wall", "p50_ms"), ("CPU", "cpu_p50_ms"))
        ],
    ]
    target_table = Table(
        title=f"Targets for the default: strategy={code_default.strategy!r} -> {DEFAULT_STRATEGY}, diversity={code_default.diversity:g}"
    )
    for col in ("target", "wanted", "measured", "ok"):
        target_table.add_column(col, justify="right")
    md.append(f"\n**Targets for the default ({DEFAULT_STRATEGY}, diversity {code_default.diversity:g})**\n")
    md.append("| target | wanted | measured | ok |\n|---|---|---|---|")
    for name, wanted, value, ok in checks:
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        target_table.add_row(name, wanted, shown, "yes" if ok else "NO")
        md.append(f"| {name} | {wanted} | {shown} | {'yes' if ok else 'NO'} |")
    console.print(target_table)

    matches = DEFAULT_STRATEGY == measured_default and code_default.diversity == chosen[measured_default]
    verdict = f"measured default: {measured_default} at diversity {chosen[measured_default]:g}; " + (
        "the code's default matches."
        if matches
        else f"the code's default ({DEFAULT_STRATEGY}, {code_default.diversity:g}) does NOT match: update ranking/registry.py and ranking/types.py."
    )
    console.print(verdict)
    md.append(f"\n{verdict}")
    md.extend(f"- {note}" for note in choice_notes)

    meta = {
        "seed": args.seed,
        "quick": args.quick,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
        "wall_s": round(time.time() - started, 1),
        "k": {"cover": K_COVER, "ndcg": K_NDCG, "duplicates": K_DUP},
    }
    console.print(f"[dim]{meta}[/dim]")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "meta": meta,
        "tuning": {s: {str(d): r for d, r in grid[s].items()} for s in TUNABLE},
        "chosen_diversity": chosen,
        "choice_latency": {s: {str(n): t for n, t in per.items()} for s, per in choice_timings.items()},
        "default_choice_notes": choice_notes,
        "measured_default": {"strategy": measured_default, "diversity": chosen[measured_default]},
        "code_default": {**asdict(code_default), "resolved_strategy": DEFAULT_STRATEGY},
        "code_default_matches": matches,
        "results": {label: {str(n): r for n, r in per.items()} for label, per in results.items()},
        "latency": {label: {str(n): t for n, t in per.items()} for label, per in timings.items()},
        "houses_dev": house_results,
        "targets": [{"target": n, "wanted": w, "measured": v, "ok": bool(ok)} for n, w, v, ok in checks],
    }
    args.out.write_text(json.dumps(report, indent=2, default=float))
    args.out.with_suffix(".md").write_text("\n".join(md) + "\n")
    console.print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
