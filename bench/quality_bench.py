"""Does the default quality score order real listing photos?  AUC on judged houses-dev photos.

    nice -n 10 python -m bench.quality_bench --old-checkpoint OLD.pt [--fit-blend]

houses-dev: Ahmed & Moustafa, "House Price Estimation from Visual and Textual Features",
IJCCI 2016 (bench/houses.py). bench/houses_judgements.json lists 80 photos we judged by
eye as clearly better or clearly worse (how: in that file and docs/models.md); sheets
1-4 ("calibrate") fit the blend, sheets 5-8 ("held_out") are never fitted.

AUC = P(score of a better photo > score of a worse one), per split, side by side in
one run for: the new default (head + blend), the new head without its blend, the 0.1
default head (--old-checkpoint), BRISQUE (negated: lower BRISQUE = better), and the
raw colourfulness and brightness features. --fit-blend fits the blend (a handful of
weights over named quality features; pairwise logistic loss with an L2 penalty, on the
calibrate split only), writes models/heads/quality_blend.json and puts the weights
into models/heads/default.pt. Skips cleanly when houses-dev is absent.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize

from bench.houses import JUDGEMENTS, houses_dev_dir

REPO = Path(__file__).resolve().parent.parent

# Candidate feature sets for the blend, each a property a person judging listing photos
# names (light, blown highlights, colour, perspective depth, detail, bare surfaces,
# sharpness). --fit-blend picks one by 5-fold cross-validation inside the calibrate split.
CANDIDATE_SETS = [
    ["brightness", "bright_clip", "colourfulness", "tilt", "log_gradient", "flat_share"],
    ["brightness", "bright_clip", "colourfulness", "log_laplacian_var", "tilt"],
    ["brightness", "bright_clip", "log_gradient", "flat_share"],
    ["brightness", "bright_clip", "contrast", "colourfulness", "log_laplacian_var", "tilt", "dark_clip"],
    ["brightness", "colourfulness", "tilt", "log_gradient", "flat_share"],
]
SYNTHETIC_WEIGHT = 1.0  # the synthetic ordering term weighs as much as the judged pairs
L2 = 0.05


def auc(score: np.ndarray, better: np.ndarray) -> float:
    s_b, s_w = score[better][:, None], score[~better][None, :]
    return float((s_b > s_w).mean() + 0.5 * (s_b == s_w).mean())


def mean_score(model, pooled: torch.Tensor, q: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return (model.aesthetic_logits(pooled, q).softmax(1) @ torch.arange(1, 11).float()).numpy()


def synthetic_pairs(model, feature_cache: str):
    """(head logits, standardised quality, better idx, worse idx) of the synthetic training set:
    each clean crop above its own distortions at level >= 2, each non-photo below a clean crop.
    The blend must keep these in order, so fitting it to real photos cannot reward blown-out
    or blurred pictures (without this term the blend turned over-exposure SRCC to -0.25)."""
    from scripts import train_default_heads as tdh

    _, rows, _ = tdh.datasets()
    z = np.load(tdh.features_cache_path(feature_cache))
    q = model.quality_features.standardise(torch.from_numpy(z["train_quality"]))
    with torch.inference_mode():
        base = model.aesthetic_head(torch.cat([torch.from_numpy(z["train_pooled"]), q], 1)).numpy()
    clean = {(r[0], r[1]): i for i, r in enumerate(rows) if r[2] == "none"}
    hi, lo = [], []
    for i, r in enumerate(rows):
        if r[2] not in ("none", "nonphoto") and r[3] >= 2:
            hi.append(clean[(r[0], r[1])])
            lo.append(i)
    rng = np.random.default_rng(0)
    cleans = np.array(list(clean.values()))
    for i, r in enumerate(rows):
        if r[2] == "nonphoto":
            hi.append(int(rng.choice(cleans)))
            lo.append(i)
    return base, q.numpy(), np.array(hi), np.array(lo)


def fit_blend(model, pooled, q, better, calibrate, feature_cache: str = "~/.cache/galleryrank") -> dict:
    """Pick a feature set by 5-fold CV inside the calibrate split, then fit its weights on all of it.
    Loss: pairwise logistic on judged (better, worse) pairs + the synthetic ordering term + L2."""
    from galleryrank.models.quality import FEATURE_NAMES

    with torch.inference_mode():
        base = model.aesthetic_head(torch.cat([pooled, q], 1)).numpy()
    qn, bins = q.numpy(), np.arange(10) - 4.5
    s_base, s_q, s_hi, s_lo = synthetic_pairs(model, feature_cache)

    def scores(b, qs, w):
        lg = b + (qs @ w)[:, None] * bins
        e = np.exp(lg - lg.max(1, keepdims=True))
        return (e / e.sum(1, keepdims=True)) @ np.arange(1, 11)

    def fit(cols, mask):
        def loss(w):
            s = scores(base[mask], qn[mask][:, cols], w)
            d = s[better[mask]][:, None] - s[~better[mask]][None, :]
            syn = scores(s_base, s_q[:, cols], w)
            return float(
                np.logaddexp(0, -4 * d).mean()
                + SYNTHETIC_WEIGHT * np.logaddexp(0, -4 * (syn[s_hi] - syn[s_lo])).mean()
                + L2 * (w**2).sum()
            )

        return minimize(
            loss, np.zeros(len(cols)), method="Nelder-Mead", options={"maxiter": 1500, "xatol": 1e-3, "fatol": 1e-6}
        ).x

    idx = np.where(calibrate)[0]
    folds = np.random.default_rng(0).permutation(len(idx)) % 5
    cv = []
    for fs in CANDIDATE_SETS:
        cols = [FEATURE_NAMES.index(f) for f in fs]
        out = np.zeros(len(qn))
        for k in range(5):
            train = np.zeros(len(qn), bool)
            train[idx[folds != k]] = True
            w = fit(cols, train)
            test = idx[folds == k]
            out[test] = scores(base[test], qn[test][:, cols], w)
        cv.append(auc(out[calibrate], better[calibrate]))
    best = CANDIDATE_SETS[int(np.argmax(cv))]
    w = fit([FEATURE_NAMES.index(f) for f in best], calibrate)
    return {
        "weights": {f: round(float(x), 4) for f, x in zip(best, w)},
        "bias": 0.0,
        "cv_auc": {"+".join(fs): round(c, 3) for fs, c in zip(CANDIDATE_SETS, cv)},
        "fitted_on": f"bench/houses_judgements.json split=calibrate ({int(calibrate.sum())} photos, houses-dev)"
        " + synthetic ordering of the default heads' training set",
        "loss": "pairwise logistic(4 x score difference) on judged pairs + synthetic pairs + 0.05 x |w|^2",
        "fitted_by": "bench/quality_bench.py --fit-blend",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old-checkpoint", help="0.1's default.pt, scored side by side")
    ap.add_argument("--fit-blend", action="store_true")
    ap.add_argument("--cache-dir", default="~/.cache/galleryrank")
    args = ap.parse_args()
    root = houses_dev_dir()
    if root is None:
        print("houses-dev not found (set GALLERYRANK_HOUSES_DEV); skipped")
        return
    torch.set_num_threads(2)
    from PIL import Image

    from galleryrank.models.checkpoint import head_state, load_checkpoint, save_checkpoint, state_fingerprint
    from galleryrank.models.defaults import DEFAULT_HEADS, load_default_model
    from galleryrank.models.features import cached_features
    from galleryrank.models.quality import FEATURE_NAMES
    from scripts import train_default_heads as tdh

    t0 = time.perf_counter()
    judged = json.loads(JUDGEMENTS.read_text())["photos"]
    paths = [root / j["file"] for j in judged]
    better = np.array([j["judged"] == "better" for j in judged])
    split = np.array([j["split"] for j in judged])
    model, version = load_default_model()
    feats = cached_features(model, paths, views=0, cache_dir=args.cache_dir)
    pooled, raw = torch.from_numpy(feats.pooled[:, 0]), torch.from_numpy(feats.quality[:, 0])
    q = model.quality_features.standardise(raw)

    blend = None
    if args.fit_blend:
        blend = fit_blend(model, pooled, q, better, split == "calibrate")
        tdh.BLEND_FILE.write_text(json.dumps(blend, indent=1) + "\n")
        tdh.apply_blend(model)
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
        print("fitted blend:", blend["weights"], "CV AUC per candidate set:", blend["cv_auc"])

    methods = {"new default (head + blend)": mean_score(model, pooled, q)}
    with torch.no_grad():
        saved = [t.clone() for t in model.aesthetic_blend.parameters()]
        for t in model.aesthetic_blend.parameters():
            t.zero_()
        methods["new head without blend"] = mean_score(model, pooled, q)
        for t, v in zip(model.aesthetic_blend.parameters(), saved):
            t.copy_(v)
    if args.old_checkpoint:
        old, _ = load_checkpoint(args.old_checkpoint)
        methods["0.1 default head"] = mean_score(old, pooled, old.quality_features.standardise(raw))
    score = tdh.brisque_scorer()
    t1 = time.perf_counter()
    methods["BRISQUE (negated)"] = np.array([-score(Image.open(p).convert("RGB")) for p in paths])
    brisque_s = time.perf_counter() - t1
    methods["colourfulness"] = raw[:, FEATURE_NAMES.index("colourfulness")].numpy()
    methods["brightness"] = raw[:, FEATURE_NAMES.index("brightness")].numpy()

    table = {}
    for name, s in methods.items():
        table[name] = {
            sp: auc(s[m], better[m])
            for sp, m in [
                ("calibrate", split == "calibrate"),
                ("held_out", split == "held_out"),
                ("all", split == split),
            ]
        }
        table[name]["score_range"] = [round(float(s.min()), 2), round(float(s.max()), 2)]
    print(
        f"judged houses-dev photos: {better.sum()} better, {(~better).sum()} worse "
        f"(calibrate {int((split == 'calibrate').sum())}, held out {int((split == 'held_out').sum())}); model {version}"
    )
    print(f"{'method':<30} {'calibrate':>9} {'held out':>9} {'all':>6}  score range")
    for name, t in table.items():
        print(f"{name:<30} {t['calibrate']:>9.3f} {t['held_out']:>9.3f} {t['all']:>6.3f}  {t['score_range']}")
    print(f"seconds: {time.perf_counter() - t0:.1f} (BRISQUE {brisque_s:.1f})")
    (REPO / "models" / "heads" / "quality_bench_report.json").write_text(
        json.dumps({"auc": table, "blend": blend, "model_version": version}, indent=1) + "\n"
    )


if __name__ == "__main__":
    main()
