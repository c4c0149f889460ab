"""Class Activation Maps (Zhou et al. 2016) for the area head, and overlays for ``galleryrank explain``.

CAM_c(x, y) = sum_f w_c,f * A_f(x, y): the area head's weights over the last conv
feature map A (the head sits on its global average pool, so this is exactly the
part of the class score each location contributes). For the zero-shot prior the
weights are the probability-weighted ImageNet classifier rows of the area's classes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .data import open_image
from .network import GalleryNet
from .preprocess import preprocess_image

OVERLAY_ALPHA = 0.45
OVERLAY_MAX_SIDE = 768


def normalise_map(m: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] (all zeros where the map is flat)."""
    m = m.astype(np.float32)
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


@torch.inference_mode()
def class_activation_maps(
    model: GalleryNet, batch: np.ndarray, area_indices: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """(cams (N, K, h, w) raw, area_probs (N, C)) for uint8 ``batch`` and the K given area indices."""
    model.eval()
    device = next(model.parameters()).device
    out = model.run(torch.from_numpy(batch).to(device))
    fmap = out["feature_map"].float()  # (N, F, h, w)
    weights = model.area_head.cam_weights(out["pooled"].float(), model.backbone)  # (N, C, F)
    w = weights[:, area_indices, :]
    cams = torch.einsum("nkf,nfhw->nkhw", w, fmap)
    return cams.cpu().numpy(), out["area_logits"].float().softmax(1).cpu().numpy()


def upsample(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic upsampling of one (h, w) map to PIL ``size`` (w, h), then normalised to [0, 1]."""
    return normalise_map(
        np.asarray(Image.fromarray(cam.astype(np.float32), mode="F").resize(size, Image.Resampling.BICUBIC))
    )


def overlay(img: Image.Image, heat: np.ndarray, alpha: float = OVERLAY_ALPHA) -> Image.Image:
    """Blend a [0,1] heatmap (same size as img) in the jet colour map over the image."""
    from matplotlib import colormaps

    colours = (colormaps["jet"](heat)[..., :3] * 255).astype(np.uint8)
    return Image.blend(img.convert("RGB"), Image.fromarray(colours), alpha)


def output_stems(images: list[Path]) -> list[str]:
    """One distinct file-name stem per input, from its path below the inputs' common folder
    (bathroom/house026.jpg -> bathroom__house026), numbered when the same file comes twice."""
    resolved = [p.resolve() for p in images]
    common = Path(os.path.commonpath([str(p.parent) for p in resolved])) if resolved else Path()
    stems: list[str] = []
    seen: dict[str, int] = {}
    for p in resolved:
        stem = "__".join(p.relative_to(common).with_suffix("").parts)
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems


def caption(img: Image.Image, text: str) -> Image.Image:
    """The image with a band below it that says what it shows (area, probability, model)."""
    font = ImageFont.load_default(size=max(12, img.width // 45))
    probe = ImageDraw.Draw(img)
    _, top, _, bottom = (int(v) for v in probe.textbbox((0, 0), text, font=font))
    pad = max(4, (bottom - top) // 3)
    out = Image.new("RGB", (img.width, img.height + (bottom - top) + 2 * pad), (20, 20, 20))
    out.paste(img.convert("RGB"), (0, 0))
    ImageDraw.Draw(out).text((pad, img.height + pad - top), text, fill=(255, 255, 255), font=font)
    return out


def explain(
    checkpoint: str | None,
    images: list[str | Path],
    out_dir: str | Path,
    areas: list[str] | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """CAM overlays (PNG) for each image's predicted area and any named ``areas``."""
    from .scoring import load_scoring_model

    scorer = load_scoring_model(checkpoint, device=device, backend="torch")
    model = scorer.torch_module()
    unknown = [a for a in (areas or []) if a not in model.areas]
    if unknown:
        raise ValueError(f"unknown areas {unknown}; this model has {model.areas}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    paths = [Path(p) for p in images]
    for path, stem in zip(paths, output_stems(paths)):
        img = open_image(path)
        img.thumbnail((OVERLAY_MAX_SIDE, OVERLAY_MAX_SIDE))
        batch = preprocess_image(img, model.input_size)[None]
        _, probs = class_activation_maps(model, batch, [0])
        predicted = model.areas[int(probs[0].argmax())]
        wanted = [predicted] + [a for a in (areas or []) if a != predicted]
        cams, _ = class_activation_maps(model, batch, [model.areas.index(a) for a in wanted])
        files, captions = {}, {}
        for k, area in enumerate(wanted):
            heat = upsample(cams[0, k], img.size)
            target = out_dir / f"{stem}_cam_{area}.png"
            p_area = float(probs[0][model.areas.index(area)])
            label = f"CAM: {area}  p={p_area:.2f}{' (predicted)' if area == predicted else ''}  model {scorer.model_version}"
            caption(overlay(img, heat), label).save(target)
            files[area] = str(target)
            captions[area] = label
        results.append(
            {
                "image": str(path),
                "predicted": predicted,
                "confidence": float(probs[0].max()),
                "area_probs": {a: round(float(p), 4) for a, p in zip(model.areas, probs[0])},
                "overlays": files,
                "captions": captions,
            }
        )
    result = {"model_version": scorer.model_version, "out_dir": str(out_dir), "images": results}
    manifest = out_dir / "manifest.json"  # which PNG belongs to which input, for scripts
    manifest.write_text(json.dumps(result, indent=2))
    result["manifest"] = str(manifest)
    return result
