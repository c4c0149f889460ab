"""Does the quality score prefer warm, saturated photos?  Measured on houses-dev, side by side
for today's score and the colour-neutral one (models.quality.COLOUR_FEATURES held at their mean).

    nice -n 10 python -m bench.colour_bias [--galleries 20]

Three figures per variant:
1. white-balance shift: the same photo with a warm cast (R x 1.08, B x 0.92) and a cool one
   (R x 0.92, B x 1.08), and 40 % desaturated: mean score change in points. A score without
   colour bias moves ~0 (light and detail are unchanged);
2. among photos of comparable quality (the judged houses-dev photos, within the 'better'
   group and within the 'worse' group, bench/houses_judgements.json): Spearman correlation of
   the score with warmth (mean (R - B)) and with saturation; also within each area over the
   gallery photos;
3. held-out AUC on the judged photos (never fitted; sheets 5-8) and the calibrate split;
4. where clean, bright, white rooms land: bathroom/bedroom photos in the lowest saturation
   decile and the upper half of brightness, their mean percentile rank within their gallery
   of ~40 (0 = first), beside the same figure for every bathroom/bedroom photo (the base
   rate a colour-blind score gives them). Listed by file so a person can look at them.

--write-default zeroes the colour features' weights in models/heads/default.pt (the blend's
and the aesthetic head's input columns; nothing fitted) so the default model's version
changes with its scores; the code's mask (models.quality.COLOUR_FEATURES) does the same for
any checkpoint.
houses-dev: Ahmed & Moustafa, IJCCI 2016 (bench/houses.py). Writes bench/results/colour_bias.json.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.stats import spearmanr

from bench.houses import JUDGEMENTS, houses_dev_dir
from bench.houses_galleries import gallery_houses, gallery_paths

REPO = Path(__file__).resolve().parent.parent

SHIFTS = {"warm": (1.08, 1.0, 0.92), "cool": (0.92, 1.0, 1.08)}
DESATURATE = 0.4


def auc(score: np.ndarray, better: np.ndarray) -> float:
    s_b, s_w = score[better][:, None], score[~better][None, :]
    return float((s_b > s_w).mean() + 0.5 * (s_b == s_w).mean())


def load(path: Path, size: int) -> np.ndarray:
    img = Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def variants(x: np.ndarray) -> dict[str, np.ndarray]:
    out = {"original": x}
    for name, gains in SHIFTS.items():
        out[name] = x * np.array(gains, dtype=np.float32)
    grey = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    out["desaturated"] = (1 - DESATURATE) * x + DESATURATE * grey[..., None]
    return {k: np.clip(v, 0, 255).round().astype(np.uint8).transpose(2, 0, 1) for k, v in out.items()}


def score_pixels(model, batch: np.ndarray, neutral: bool) -> np.ndarray:
    """Mean score of uint8 (N,3,S,S) images; neutral=False scores as before issue 22 (colour kept)."""
    qf = model.quality_features
    saved = qf.keep.clone()
    if not neutral:
        qf.keep.fill_(1.0)
    try:
        with torch.inference_mode():
            dist = model(torch.from_numpy(batch))[0].numpy()
    finally:
        qf.keep.copy_(saved)
    return dist @ np.arange(1, 11)


def cached_scores(model, paths: list[Path], neutral: bool, cache_dir: str) -> np.ndarray:
    """Scores from the backbone feature cache (models.features), colour kept unless neutral."""
    from bench.houses_galleries import score_photos

    qf = model.quality_features
    saved = qf.keep.clone()
    if not neutral:
        qf.keep.fill_(1.0)
    try:
        return score_photos(model, paths, cache_dir).aesthetic
    finally:
        qf.keep.copy_(saved)


def write_colour_neutral_default(model) -> str:
    from galleryrank.models.checkpoint import head_state, save_checkpoint, state_fingerprint
    from galleryrank.models.defaults import DEFAULT_HEADS
    from galleryrank.models.quality import COLOUR_FEATURES, FEATURE_NAMES
    from scripts import train_default_heads as tdh

    columns = [FEATURE_NAMES.index(f) for f in COLOUR_FEATURES]
    linear = model.aesthetic_head[1]
    with torch.no_grad():
        model.aesthetic_blend.weight[:, columns] = 0.0
        linear.weight[:, linear.in_features - len(FEATURE_NAMES) + torch.tensor(columns)] = 0.0
    blend = json.loads(tdh.BLEND_FILE.read_text())
    for f in COLOUR_FEATURES:
        if f in blend["weights"]:
            blend["weights"][f] = 0.0
    blend["colour_neutral"] = f"{', '.join(COLOUR_FEATURES)} held at their mean (weights 0): bench/colour_bias.py"
    tdh.BLEND_FILE.write_text(json.dumps(blend, indent=1) + "\n")
    meta = {k: v for k, v in torch.load(DEFAULT_HEADS, weights_only=True).items() if k != "state_dict"}
    version = "default-heads-" + state_fingerprint(head_state(model))[:12]
    save_checkpoint(
        model,
        DEFAULT_HEADS,
        include_backbone=False,
        model_version=version,
        data_fingerprint=meta["data_fingerprint"],
        extra={**meta["extra"], "blend": blend},
    )
    return version


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--galleries", type=int, default=20)
    ap.add_argument("--shift-photos", type=int, default=120, help="photos used for the white-balance shift")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "colour_bias.json")
    ap.add_argument("--cache-dir", default="~/.cache/galleryrank")
    ap.add_argument("--write-default", action="store_true", help="zero the colour weights in default.pt")
    args = ap.parse_args()
    root = houses_dev_dir()
    if root is None:
        print("houses-dev not found (set GALLERYRANK_HOUSES_DEV); skipped")
        return
    torch.set_num_threads(1)
    from galleryrank.models.defaults import load_default_model
    from galleryrank.models.quality import COLOUR_FEATURES

    model, version = load_default_model()
    today_model = copy.deepcopy(model)  # the weights as committed, scored with colour kept
    if args.write_default:
        version = write_colour_neutral_default(model)
        print("wrote models/heads/default.pt:", version)
    size = model.input_size
    judged = json.loads(JUDGEMENTS.read_text())["photos"]
    judged_paths = [root / j["file"] for j in judged]
    better = np.array([j["judged"] == "better" for j in judged])
    split = np.array([j["split"] for j in judged])
    groups = gallery_houses(root, args.galleries, seed=0)
    gallery_of: list[int] = []
    gallery_files: list[Path] = []
    for g, houses in enumerate(groups):
        files = gallery_paths(root, houses)
        gallery_files += files
        gallery_of += [g] * len(files)
    paths = judged_paths + gallery_files
    pixels = [load(p, size) for p in paths]
    rgb_mean = np.array([p.reshape(-1, 3).mean(0) for p in pixels])
    warmth = (rgb_mean[:, 0] - rgb_mean[:, 2]) / 255
    originals = np.stack([variants(p)["original"] for p in pixels])
    saturation = model.quality_features.raw(torch.from_numpy(originals))[:, 5].numpy()
    brightness = model.quality_features.raw(torch.from_numpy(originals))[:, 0].numpy()
    shift_idx = np.random.default_rng(0).permutation(len(paths))[: args.shift_photos]
    shifted = {k: np.stack([variants(pixels[i])[k] for i in shift_idx]) for k in ("warm", "cool", "desaturated")}

    nj = len(judged_paths)
    gallery_of_arr = np.array(gallery_of)
    areas = np.array([p.parent.name for p in gallery_files])
    g_sat, g_bright = saturation[nj:], brightness[nj:]
    white = (
        np.isin(areas, ["bathroom", "bedroom"])
        & (g_sat <= np.quantile(g_sat, 0.1))
        & (g_bright >= np.quantile(g_bright, 0.5))
    )
    report: dict = {"model_version": version, "colour_features": list(COLOUR_FEATURES), "variants": {}}
    white_files = [str(gallery_files[i].relative_to(root)) for i in np.flatnonzero(white)]
    report["white_rooms"] = white_files
    for name, scorer, neutral in (("today", today_model, False), ("colour-neutral", model, True)):
        score = cached_scores(scorer, paths, neutral, args.cache_dir)
        shift = {
            k: score_pixels(scorer, v, neutral) - score_pixels(scorer, originals[shift_idx], neutral)
            for k, v in shifted.items()
        }
        js, gs = score[:nj], score[nj:]
        within = {
            feature: float(np.mean([spearmanr(js[m], values[:nj][m]).statistic for m in (better, ~better)]))
            for feature, values in (("warmth", warmth), ("saturation", saturation))
        }
        by_area = {
            feature: float(
                np.mean([spearmanr(gs[areas == a], values[nj:][areas == a]).statistic for a in np.unique(areas)])
            )
            for feature, values in (("warmth", warmth), ("saturation", saturation))
        }

        def percentile(i: int, gs: np.ndarray = gs) -> float:
            same = gallery_of_arr == gallery_of_arr[i]
            return float((gs[same] > gs[i]).sum() / max(same.sum() - 1, 1))

        pct = [percentile(i) for i in np.flatnonzero(white)]
        rooms = np.flatnonzero(np.isin(areas, ["bathroom", "bedroom"]))
        # comparable light: within area x brightness tercile
        tercile = np.digitize(g_bright, np.quantile(g_bright, [1 / 3, 2 / 3]))
        cells = [(areas == a) & (tercile == t) for a in np.unique(areas) for t in range(3)]
        by_light = {
            feature: float(np.mean([spearmanr(gs[c], values[nj:][c]).statistic for c in cells if c.sum() >= 10]))
            for feature, values in (("warmth", warmth), ("saturation", saturation))
        }
        report["variants"][name] = {
            "shift_points": {k: [float(v.mean()), float(np.abs(v).mean())] for k, v in shift.items()},
            "warm_minus_cool": float((shift["warm"] - shift["cool"]).mean()),
            "spearman_within_judged_groups": within,
            "spearman_within_area": by_area,
            "spearman_within_area_and_light": by_light,
            "rooms_mean_percentile": float(np.mean([percentile(i) for i in rooms])),
            "auc": {s: auc(js[split == s], better[split == s]) for s in ("calibrate", "held_out")},
            "white_rooms_mean_percentile": float(np.mean(pct)) if pct else None,
            "white_rooms_percentiles": [round(p, 2) for p in pct],
            "scores": {"min": float(score.min()), "max": float(score.max())},
        }
    print(json.dumps(report["variants"], indent=1))
    print("white rooms:", white_files)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
