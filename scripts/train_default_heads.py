"""Recipe for the shipped default heads (models/heads/default.pt) and their measured figures.

    nice -n 10 python scripts/train_default_heads.py [--out models/heads] [--threads 2]

What it does, reproducibly (fixed seeds; only images that ship with installed packages
or are generated here, so the weights may ship):
1. Photographs: skimage's astronaut, chelsea, motorcycle, clock, coins, brick, grass and
   matplotlib's gift box; 5 sources (coffee, rocket, camera, gravel, grace_hopper) are
   held out for evaluation, never trained on (as in 0.1, so the figures compare).
2. 12 random square crops per training photo (384 px), each distorted by 8 kinds (the 6
   of 0.1 - blur, noise, JPEG, under-/over-exposure, low resolution - plus haze and
   motion blur) at 5 levels, plus 4 random mixtures of two kinds, plus the clean crop.
   Target: a 10-bin Gaussian (sigma 1) around 8.5 - 1.3 x level (mixtures: the
   root-sum-square of the two levels, capped at 5).
3. Non-photos as clear negatives, target 2.0: generated text pages, screenshots, star
   fields, flat textures, microscopy-like stains, flat colour gradients, and skimage's
   non-photos that the demo does not show (binary_blobs, checkerboard, colorwheel, horse,
   logo, shepp_logan_phantom, cell, microaneurysms). The demo's non-photos (moon,
   hubble_deep_field, immunohistochemistry, retina, page, text) are never trained on.
4. Features: the backbone's pooled features and the in-graph quality features
   (models/quality.py) from the serving preprocessing; the quality features'
   standardisation buffers are set from this training set. Only the aesthetic head
   (dropout -> Dense(10) over [pooled, quality], NIMA's head with 41 more inputs) is
   trained, with EMD; epochs and weight decay by leave-sources-out cross-validation.
5. The blend (a few weights over quality features that tilt the distribution) comes
   from models/heads/quality_blend.json, fitted by scripts/calibrate_quality_blend.py
   on judged houses-dev photos; without that file it is zero.
6. Held-out sources: SRCC of the mean score against the distortion level, overall and
   per kind, side by side with BRISQUE and with --old-checkpoint (0.1's head), same run.
7. Writes models/heads/default.pt (head-only checkpoint, < 1 MB) and
   models/heads/default_heads_report.json.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SEED = 20261128
CROP = 384  # distortions are applied at this size; serving then squashes to 224
LEVELS = 5
TRAIN_CROPS, TEST_CROPS = 12, 2
MIXTURES = 4  # random two-kind mixtures per crop
HELD_OUT = ["coffee", "rocket", "camera", "gravel", "grace_hopper"]
PHOTOS = ["astronaut", "chelsea", "motorcycle", "clock", "coins", "brick", "grass", "present"] + HELD_OUT
# skimage non-photos the demo never shows (training negatives) and the ones it shows (never trained on)
NONPHOTO_TRAIN = [
    "binary_blobs",
    "checkerboard",
    "colorwheel",
    "horse",
    "logo",
    "shepp_logan_phantom",
    "cell",
    "microaneurysms",
]
NONPHOTO_DEMO = ["moon", "hubble_deep_field", "immunohistochemistry", "retina", "page", "text"]
NONPHOTO_TARGET_LEVEL = 5  # score 2.0

# distortion -> parameter per level 1..5 (documented in docs/models.md)
DISTORTIONS = {
    "blur": [1.0, 2.0, 3.5, 5.5, 8.0],  # Gaussian sigma, px at 384
    "noise": [6.0, 12.0, 22.0, 35.0, 55.0],  # Gaussian std, of 255
    "jpeg": [35, 18, 10, 6, 3],  # quality
    "under_exposure": [0.65, 0.45, 0.3, 0.2, 0.12],  # linear gain
    "over_exposure": [1.5, 2.0, 2.7, 3.6, 5.0],  # linear gain, clipped
    "low_resolution": [2, 3, 4, 6, 9],  # downscale factor, then bilinear back up
}
NEW_DISTORTIONS = {
    "haze": [0.2, 0.35, 0.5, 0.65, 0.8],  # blend weight toward flat grey (fog, flare, washed out)
    "motion_blur": [5, 9, 15, 23, 33],  # horizontal box kernel length, px at 384
}
ALL_DISTORTIONS = {**DISTORTIONS, **NEW_DISTORTIONS}


def target_score(level: float) -> float:
    return 8.5 - 1.3 * level


def target_distribution(level: float, sigma: float = 1.0) -> np.ndarray:
    bins = np.arange(1, 11)
    p = np.exp(-0.5 * ((bins - target_score(level)) / sigma) ** 2)
    return (p / p.sum()).astype(np.float32)


def _skimage(name: str) -> Image.Image:
    from skimage import data

    if name == "motorcycle":
        return Image.fromarray(data.stereo_motorcycle()[0]).convert("RGB")
    a = np.asarray(getattr(data, name)())
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.dtype != np.uint8:  # binary / float images
        a = (255 * (a.astype(np.float64) - a.min()) / max(1e-9, float(a.max() - a.min()))).astype(np.uint8)
    return Image.fromarray(a).convert("RGB")


def sources() -> dict[str, Image.Image]:
    """Photographs (PHOTOS) plus all skimage non-photos named above, by name."""
    import matplotlib

    sample = Path(matplotlib.get_data_path()) / "sample_data"
    out = {n: _skimage(n) for n in PHOTOS + NONPHOTO_TRAIN + NONPHOTO_DEMO if n not in ("grace_hopper", "present")}
    out["grace_hopper"] = Image.open(sample / "grace_hopper.jpg").convert("RGB")
    out["present"] = Image.open(sample / "Minduka_Present_Blue_Pack.png").convert("RGB")
    return out


def generated_nonphotos(n_each: int, rng: np.random.Generator) -> list[tuple[str, Image.Image]]:
    """Text pages, screenshots, star fields, flat textures, stains, gradients (CROP px)."""
    from PIL import ImageDraw, ImageFont

    words = "hotel room pool booking price night breakfast wifi parking checkout guest suite".split()
    out = []
    for _ in range(n_each):
        # text page: dark text on a light page, several sizes
        bg = int(rng.integers(215, 256))
        img = Image.new("RGB", (CROP, CROP), (bg, bg, bg - int(rng.integers(0, 20))))
        d = ImageDraw.Draw(img)
        size = int(rng.integers(10, 28))
        font = ImageFont.load_default(size=size)
        for y in range(int(rng.integers(4, 20)), CROP, int(size * 1.5)):
            d.text((int(rng.integers(4, 30)), y), " ".join(rng.choice(words, 8)), fill=(0, 0, 0), font=font)
        out.append(("text", img))
        # screenshot: flat panels, buttons, a title bar and text
        img = Image.new("RGB", (CROP, CROP), tuple(int(v) for v in rng.integers(200, 256, 3)))
        d = ImageDraw.Draw(img)
        d.rectangle([0, 0, CROP, 30], fill=tuple(int(v) for v in rng.integers(0, 120, 3)))
        for _ in range(int(rng.integers(3, 9))):
            x, y = (int(v) for v in rng.integers(0, CROP - 60, 2))
            d.rectangle(
                [x, y, x + int(rng.integers(40, 200)), y + int(rng.integers(20, 120))],
                fill=tuple(int(v) for v in rng.integers(0, 256, 3)),
            )
            d.text((x + 4, y + 4), str(rng.choice(words)), fill=(0, 0, 0), font=font)
        out.append(("screenshot", img))
        # star field: black sky, sparse points, some blurred
        a = np.zeros((CROP, CROP), np.float32)
        idx = rng.integers(0, CROP, (int(rng.integers(50, 800)), 2))
        a[idx[:, 0], idx[:, 1]] = rng.uniform(80, 255, len(idx))
        img = Image.fromarray(a.astype(np.uint8)).filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.2))))
        out.append(("stars", Image.merge("RGB", [img] * 3)))
        # flat texture: low-pass noise, low contrast, grey or tinted (moon-like surfaces, walls)
        noise = rng.normal(0, 1, (CROP // 8, CROP // 8)).astype(np.float32)
        t = np.asarray(Image.fromarray(noise).resize((CROP, CROP), Image.BICUBIC))
        t = rng.uniform(60, 190) + rng.uniform(5, 25) * t / (t.std() + 1e-6)
        tint = rng.uniform(0.85, 1.15, 3) if rng.random() < 0.5 else np.ones(3)
        out.append(("flat_texture", Image.fromarray((t[..., None] * tint).clip(0, 255).astype(np.uint8))))
        # microscopy-like stain: pale background with coloured blobs
        base = rng.uniform(200, 245, 3)
        a = np.ones((CROP, CROP, 3), np.float32) * base
        yy, xx = np.mgrid[:CROP, :CROP]
        col = rng.uniform(40, 160, 3)
        for _ in range(int(rng.integers(20, 80))):
            cy, cx, r = rng.uniform(0, CROP), rng.uniform(0, CROP), rng.uniform(4, 18)
            m = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
            a = a * (1 - m) + col * m
        out.append(("stain", Image.fromarray(a.clip(0, 255).astype(np.uint8))))
        # flat colour gradient
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        w = np.linspace(0, 1, CROP)[None, :, None]
        out.append(
            ("gradient", Image.fromarray(np.broadcast_to(c0 * (1 - w) + c1 * w, (CROP, CROP, 3)).astype(np.uint8)))
        )
    return out


def random_crops(img: Image.Image, n: int, rng: np.random.Generator) -> list[Image.Image]:
    w, h = img.size
    crops = []
    for _ in range(n):
        side = int(min(w, h) * rng.uniform(0.6, 1.0))
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        crops.append(img.crop((x, y, x + side, y + side)).resize((CROP, CROP), Image.BICUBIC))
    return crops


def distort(img: Image.Image, kind: str, level: int, rng: np.random.Generator) -> Image.Image:
    p = ALL_DISTORTIONS[kind][level - 1]
    if kind == "haze":
        a = np.asarray(img, dtype=np.float32)
        return Image.fromarray((a * (1 - p) + 160 * p).clip(0, 255).astype(np.uint8))
    if kind == "motion_blur":
        k = np.ones((1, int(p)), np.float32) / p
        import cv2

        return Image.fromarray(cv2.filter2D(np.asarray(img), -1, k, borderType=cv2.BORDER_REFLECT))
    if kind == "blur":
        return img.filter(ImageFilter.GaussianBlur(p))
    if kind == "noise":
        a = np.asarray(img, dtype=np.float32) + rng.normal(0, p, (CROP, CROP, 3))
        return Image.fromarray(a.clip(0, 255).astype(np.uint8))
    if kind == "jpeg":
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=int(p))
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    if kind in ("under_exposure", "over_exposure"):
        a = np.asarray(img, dtype=np.float32) * p
        return Image.fromarray(a.clip(0, 255).astype(np.uint8))
    if kind == "low_resolution":
        small = img.resize((CROP // p, CROP // p), Image.BILINEAR)
        return small.resize((CROP, CROP), Image.BILINEAR)
    raise ValueError(kind)


def build_set(imgs: dict[str, Image.Image], crops: int, rng: np.random.Generator, kinds=DISTORTIONS, mixtures: int = 0):
    """Rows of (source, crop index, distortion, level, PIL image); a mixture's level is the
    root-sum-square of its two levels, capped at 5 (kind "a+b")."""
    rows = []
    for name, img in imgs.items():
        for c, crop in enumerate(random_crops(img, crops, rng)):
            rows.append((name, c, "none", 0, crop))
            for kind in kinds:
                for level in range(1, LEVELS + 1):
                    rows.append((name, c, kind, level, distort(crop, kind, level, rng)))
            for _ in range(mixtures):
                k1, k2 = rng.choice(list(kinds), 2, replace=False)
                l1, l2 = (int(v) for v in rng.integers(1, LEVELS + 1, 2))
                level = min(float(LEVELS), float(np.hypot(l1, l2)))
                rows.append((name, c, f"{k1}+{k2}", level, distort(distort(crop, k1, l1, rng), k2, l2, rng)))
    return rows


def features(model, images: list[Image.Image], batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(pooled backbone features, raw quality features) of the serving view, ONNX Runtime on CPU."""
    import torch

    from galleryrank.models import preprocess_image
    from galleryrank.models.features import _Extractor, extractor_key

    ex = _Extractor(
        model, torch.device("cpu"), Path(os.path.expanduser("~/.cache/galleryrank/features")), extractor_key(model)
    )
    out = [ex(np.stack([preprocess_image(im) for im in images[i : i + batch]])) for i in range(0, len(images), batch)]
    return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out])


def train_head(
    feats: np.ndarray,
    targets: np.ndarray,
    *,
    epochs: int,
    lr: float,
    seed: int,
    dropout: float = 0.75,
    weight_decay: float = 0.0,
    standardise: bool = True,
):
    """NIMA head (dropout -> Dense(10)) trained with EMD on fixed features.

    With ``standardise`` the Dense layer is trained on z-scored features and the
    scaling is folded back into its weights, so the result is a plain head on the
    backbone's pooled features (W' = W / sigma, b' = b - W' mu).
    """
    import torch

    from galleryrank.models.losses import emd_loss

    torch.manual_seed(seed)
    mu = feats.mean(0) if standardise else np.zeros(feats.shape[1], np.float32)
    sd = feats.std(0) + 1e-6 if standardise else np.ones(feats.shape[1], np.float32)
    head = torch.nn.Sequential(torch.nn.Dropout(dropout), torch.nn.Linear(feats.shape[1], 10))
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    x, y = torch.from_numpy((feats - mu) / sd).float(), torch.from_numpy(targets)
    gen = torch.Generator().manual_seed(seed)
    loss = torch.tensor(float("nan"))
    for _ in range(epochs):
        head.train()
        for idx in torch.randperm(len(x), generator=gen).split(128):
            loss = emd_loss(head(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        lin = head[1]
        lin.weight.div_(torch.from_numpy(sd).float())
        lin.bias.sub_(lin.weight @ torch.from_numpy(mu).float())
    return head.eval(), loss.item()


GRID = [  # (epochs, dropout, weight_decay, standardise), chosen by source-level cross-validation.
    # 0.1's wider grids (100 epochs, dropout 0.25, z-scored features) were worse on every fold; with
    # this recipe 30 epochs at weight decay 1e-3 scored CV SRCC 0.586 against 0.620 for 15 epochs.
    (15, 0.75, wd, False)
    for wd in (1e-3, 1e-2, 3e-2)
]


def select_hyperparameters(feats, rows, targets, lr: float, folds: int = 5) -> tuple[tuple, list]:
    """Leave-sources-out CV on the training sources only (held-out sources are never looked at)."""
    import torch

    srcs = sorted({r[0] for r in rows})
    src = np.array([r[0] for r in rows])
    levels = np.array([r[3] for r in rows])
    results = []
    for cfg in GRID:
        e, d, wd, st = cfg
        scores = []
        for k in range(folds):
            val_src = set(srcs[k::folds])
            m = np.array([s in val_src for s in src])
            head, _ = train_head(
                feats[~m], targets[~m], epochs=e, lr=lr, seed=SEED, dropout=d, weight_decay=wd, standardise=st
            )
            with torch.inference_mode():
                p = head(torch.from_numpy(feats[m])).softmax(1).numpy() @ np.arange(1, 11)
            scores.append(srcc(p, -levels[m]))
        results.append(
            {"epochs": e, "dropout": d, "weight_decay": wd, "standardise": st, "cv_srcc": float(np.nanmean(scores))}
        )
        print(f"  cv {cfg}: SRCC {np.nanmean(scores):.3f}", flush=True)
    best = max(results, key=lambda r: r["cv_srcc"])
    return (best["epochs"], best["dropout"], best["weight_decay"], best["standardise"]), results


def brisque_scorer():
    """BRISQUE from PyPI ``brisque`` (0.2.0). Its ``score`` breaks on numpy 2 (some features come
    back as 1-element arrays), so the same steps are run here with the features flattened to floats."""
    import cv2
    import skimage.color
    from brisque import BRISQUE

    b = BRISQUE(url=False)

    def score(img: Image.Image) -> float:
        gray = skimage.color.rgb2gray(np.asarray(img))
        full = b.calculate_brisque_features(gray, kernel_size=7, sigma=7 / 6)
        half = cv2.resize(gray, None, fx=1 / 2, fy=1 / 2, interpolation=cv2.INTER_CUBIC)
        small = b.calculate_brisque_features(half, kernel_size=7, sigma=7 / 6)
        feats = [float(np.asarray(f, dtype=np.float64).reshape(-1)[0]) for f in np.concatenate((full, small))]
        return float(b.calculate_image_quality_score(np.array(feats)))

    return score


def srcc(a, b) -> float:
    from scipy import stats

    return float(stats.spearmanr(a, b).statistic)


def quality_figures(pred: np.ndarray, rows, label: str) -> dict:
    """SRCC of a score (higher = better) against -level: overall, per type, and within each crop+type."""
    levels = np.array([r[3] for r in rows])
    kinds = np.array([r[2] for r in rows])
    keys = np.array([f"{r[0]}/{r[1]}" for r in rows])
    old = np.isin(kinds, ["none", *DISTORTIONS])
    out = {
        "method": label,
        "srcc_all": srcc(pred[old], -levels[old]),
        "srcc_all_8_kinds": srcc(pred, -levels),
        "per_distortion": {},
        "within_image_mean": {},
    }
    for kind in [k for k in ALL_DISTORTIONS if k in set(kinds)]:
        m = (kinds == kind) | (kinds == "none")
        out["per_distortion"][kind] = srcc(pred[m], -levels[m])
        within = [srcc(pred[m & (keys == k)], -levels[m & (keys == k)]) for k in np.unique(keys)]
        out["within_image_mean"][kind] = float(np.nanmean(within))
    return out


# Hand labels for the package photos (what each photo shows, in this project's areas).
AREA_LABELS = {
    "astronaut": "other",
    "chelsea": "other",
    "coffee": "restaurant",
    "rocket": "other",
    "camera": "other",
    "moon": "other",
    "brick": "other",
    "grass": "other",
    "gravel": "other",
    "clock": "other",
    "coins": "other",
    "hubble_deep_field": "other",
    "immunohistochemistry": "other",
    "retina": "other",
    "cell": "other",
    "page": "other",
    "text": "other",
    "motorcycle": "other",
    "grace_hopper": "other",
    "present": "other",
}


def datasets():
    """(source images, training rows, held-out rows), built reproducibly from SEED."""
    rng = np.random.default_rng(SEED)
    imgs = sources()
    train_photos = {k: imgs[k] for k in PHOTOS if k not in HELD_OUT}
    train_rows = build_set(train_photos, TRAIN_CROPS, rng, ALL_DISTORTIONS, MIXTURES)
    for name, img in generated_nonphotos(40, rng):
        train_rows.append((f"gen_{name}", len(train_rows), "nonphoto", NONPHOTO_TARGET_LEVEL, img))
    for name in NONPHOTO_TRAIN:
        for c, crop in enumerate(random_crops(imgs[name], 6, rng)):
            train_rows.append((name, c, "nonphoto", NONPHOTO_TARGET_LEVEL, crop))
    test_rows = build_set({k: imgs[k] for k in HELD_OUT}, TEST_CROPS, rng, ALL_DISTORTIONS)
    return imgs, train_rows, test_rows


def features_cache_path(feature_cache: str = "~/.cache/galleryrank") -> Path:
    """Backbone + quality features of datasets(): depend only on the recipe, so cached."""
    recipe_key = [SEED, CROP, TRAIN_CROPS, TEST_CROPS, MIXTURES, HELD_OUT, PHOTOS, NONPHOTO_TRAIN, ALL_DISTORTIONS, 2]
    data_key = hashlib.sha256(json.dumps(recipe_key).encode()).hexdigest()[:12]
    return Path(feature_cache).expanduser() / f"default-heads-features-v2-{data_key}.npz"


BLEND_FILE = Path(__file__).resolve().parent.parent / "models" / "heads" / "quality_blend.json"
DEMO_PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "camera", "motorcycle"]  # consumer/dev/samples.py


def apply_blend(model, path: Path = BLEND_FILE) -> dict | None:
    """Load the calibrated blend weights (feature name -> weight, plus bias) into the model."""
    import torch

    from galleryrank.models.quality import FEATURE_NAMES

    if not path.exists():
        return None
    blend = json.loads(path.read_text())
    with torch.no_grad():
        model.aesthetic_blend.weight.zero_()
        for name, w in blend["weights"].items():
            model.aesthetic_blend.weight[0, FEATURE_NAMES.index(name)] = w
        model.aesthetic_blend.bias.fill_(blend.get("bias", 0.0))
    return blend


def mean_scores(model, pooled: np.ndarray, q_raw: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        q = model.quality_features.mean.new_tensor(q_raw)
        q = (q - model.quality_features.mean) / model.quality_features.std
        logits = model.eval().aesthetic_logits(torch.from_numpy(pooled), q)
    return logits.softmax(1).numpy() @ np.arange(1, 11)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "models" / "heads"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--brisque", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument(
        "--old-checkpoint", help="0.1's default.pt (git show 0293ebd:models/heads/default.pt), scored side by side"
    )
    ap.add_argument("--feature-cache", default="~/.cache/galleryrank", help="where backbone features are cached")
    ap.add_argument("--reuse-cv", action="store_true", help="take epochs/weight decay from the last report")
    args = ap.parse_args()
    t_start = time.perf_counter()

    import torch

    torch.set_num_threads(args.threads)
    from galleryrank.models.checkpoint import load_checkpoint, save_checkpoint, state_fingerprint
    from galleryrank.models.network import create_model
    from galleryrank.models.zeroshot import DEFAULT_AREAS

    imgs, train_rows, test_rows = datasets()
    demo_names = DEMO_PHOTOS + NONPHOTO_DEMO  # whole images, as the demo serves them
    print(
        f"{len(train_rows)} training images ({sum(r[2] == 'nonphoto' for r in train_rows)} non-photos), "
        f"{len(test_rows)} held-out images from {len(HELD_OUT)} sources",
        flush=True,
    )

    model = create_model("efficientnet_lite0", DEFAULT_AREAS, area_head="zeroshot").eval()
    t0 = time.perf_counter()
    cache = features_cache_path(args.feature_cache)
    if cache.exists():
        z = dict(np.load(cache))
    else:
        z = {}
        for part, images in [
            ("train", [r[4] for r in train_rows]),
            ("test", [r[4] for r in test_rows]),
            ("demo", [imgs[n] for n in demo_names]),
        ]:
            z[f"{part}_pooled"], z[f"{part}_quality"] = features(model, images)
            print(f"  features {part}: {len(images)} images, {time.perf_counter() - t0:.0f} s", flush=True)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **z)
    t_features = time.perf_counter() - t0

    # fixed standardisation of the quality features, from the training set
    mu, sd = z["train_quality"].mean(0), z["train_quality"].std(0) + 1e-6
    with torch.no_grad():
        model.quality_features.mean.copy_(torch.from_numpy(mu))
        model.quality_features.std.copy_(torch.from_numpy(sd))
    x_train = np.concatenate([z["train_pooled"], (z["train_quality"] - mu) / sd], 1).astype(np.float32)
    y_train = np.stack([target_distribution(r[3]) for r in train_rows])
    previous = Path(args.out) / "default_heads_report.json"
    if args.reuse_cv and previous.exists():  # same recipe: reuse the last cross-validation's choice
        prev = json.loads(previous.read_text())["recipe"]
        (epochs, dropout, wd, standardise), cv = (*prev["chosen"].values(), False), prev["cv"]
    else:
        (epochs, dropout, wd, standardise), cv = select_hyperparameters(x_train, train_rows, y_train, args.lr)
    print(f"chosen by CV on training sources: epochs={epochs} dropout={dropout} weight_decay={wd}", flush=True)
    head, last_loss = train_head(
        x_train,
        y_train,
        epochs=epochs,
        lr=args.lr,
        seed=SEED,
        dropout=dropout,
        weight_decay=wd,
        standardise=standardise,
    )
    model.aesthetic_head.load_state_dict(head.state_dict())
    blend = apply_blend(model)

    methods = {"new default (head + blend)": mean_scores(model, z["test_pooled"], z["test_quality"])}
    demo = {"new default (head + blend)": mean_scores(model, z["demo_pooled"], z["demo_quality"])}
    if blend is not None:
        with torch.no_grad():
            saved = [t.clone() for t in model.aesthetic_blend.parameters()]
            for t in model.aesthetic_blend.parameters():
                t.zero_()
            methods["new head without blend"] = mean_scores(model, z["test_pooled"], z["test_quality"])
            for t, v in zip(model.aesthetic_blend.parameters(), saved):
                t.copy_(v)
    if args.old_checkpoint:
        old, _ = load_checkpoint(args.old_checkpoint)
        methods["0.1 default head"] = mean_scores(old, z["test_pooled"], z["test_quality"])
        demo["0.1 default head"] = mean_scores(old, z["demo_pooled"], z["demo_quality"])
    figures = [quality_figures(v, test_rows, k) for k, v in methods.items()]
    brisque_seconds = None
    if args.brisque:
        score = brisque_scorer()
        t0 = time.perf_counter()
        bscores = np.array([score(r[4]) for r in test_rows])  # lower = better: negated below
        brisque_seconds = time.perf_counter() - t0
        figures.append(quality_figures(-bscores, test_rows, "BRISQUE (PyPI brisque, negated)"))
        demo["BRISQUE (negated)"] = np.array([-score(imgs[n]) for n in demo_names])

    recipe = {
        "seed": SEED,
        "crop": CROP,
        "levels": LEVELS,
        "distortions": ALL_DISTORTIONS,
        "mixtures": MIXTURES,
        "target": "N(8.5 - 1.3 * level, 1) over bins 1..10; non-photos level 5",
        "train_crops": TRAIN_CROPS,
        "test_crops": TEST_CROPS,
        "held_out": HELD_OUT,
        "photos": PHOTOS,
        "nonphoto_train": NONPHOTO_TRAIN,
        "nonphoto_demo_never_trained": NONPHOTO_DEMO,
        "lr": args.lr,
        "chosen": {"epochs": epochs, "dropout": dropout, "weight_decay": wd},
        "cv": cv,
    }
    fingerprint = hashlib.sha256(
        json.dumps(recipe, sort_keys=True).encode() + np.ascontiguousarray(x_train).tobytes()[: 1 << 20]
    ).hexdigest()
    out_dir = Path(args.out)
    version = (
        "default-heads-"
        + state_fingerprint({k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")})[:12]
    )
    demo_table = {k: {n: round(float(s), 3) for n, s in zip(demo_names, v)} for k, v in demo.items()}
    demo_check = {k: bool(min(v[: len(DEMO_PHOTOS)]) > max(v[len(DEMO_PHOTOS) :])) for k, v in demo.items()}
    report = {
        "model_version": version,
        "quality": figures,
        "demo_scores": demo_table,
        "demo_nonphotos_below_every_photo": demo_check,
        "blend": blend,
        "n_train": len(train_rows),
        "n_test": len(test_rows),
        "final_train_emd": last_loss,
        "seconds": {
            "features": round(t_features, 1),
            "brisque": round(brisque_seconds or 0, 1),
            "total": round(time.perf_counter() - t_start, 1),
        },
        "recipe": recipe,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "torch": str(torch.__version__),
    }
    save_checkpoint(
        model,
        out_dir / "default.pt",
        include_backbone=False,
        model_version=version,
        data_fingerprint=fingerprint,
        extra={"recipe": recipe, "quality": figures[0], "blend": blend},
    )
    (out_dir / "default_heads_report.json").write_text(json.dumps(report, indent=2) + "\n")

    kinds = list(ALL_DISTORTIONS)
    print(f"\nheld-out sources {HELD_OUT}: SRCC against distortion level (higher is better)")
    print(f"{'method':<34} {'all(6)':>7} {'all(8)':>7} " + " ".join(f"{k[:8]:>8}" for k in kinds))
    for f in figures:
        print(
            f"{f['method']:<34} {f['srcc_all']:>7.3f} {f['srcc_all_8_kinds']:>7.3f} "
            + " ".join(f"{f['per_distortion'][k]:>8.3f}" for k in kinds)
        )
    print("demo images (photos | non-photos):")
    for k, v in demo_table.items():
        print(f"  {k:<30} {v}  non-photos below every photo: {demo_check[k]}")
    print(
        f"wrote {out_dir / 'default.pt'} ({(out_dir / 'default.pt').stat().st_size / 1e6:.2f} MB), version {version}; "
        f"{report['seconds']}"
    )


if __name__ == "__main__":
    main()
