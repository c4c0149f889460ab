"""Generated photo sets for the labelling tests: one texture family per class, so a frozen
ImageNet backbone separates the classes and a flipped label stands out."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

KINDS = ("stripes", "checks", "discs", "grain")


def texture(kind: str, rng: np.random.Generator, size: int = 128) -> Image.Image:
    s = size
    a = tuple(int(v) for v in rng.integers(0, 256, 3))
    b = tuple(255 - v for v in a)  # contrast: the pattern is always visible
    img = Image.new("RGB", (s, s), a)
    d = ImageDraw.Draw(img)
    if kind == "stripes":
        w = int(rng.integers(4, 14))
        for x in range(0, s, 2 * w):
            d.rectangle([x, 0, x + w - 1, s], fill=b)
        img = img.rotate(float(rng.uniform(-20, 20)), fillcolor=a)
    elif kind == "checks":
        w = int(rng.integers(8, 24))
        for y in range(0, s, w):
            for x in range(0, s, w):
                if (x // w + y // w) % 2:
                    d.rectangle([x, y, x + w - 1, y + w - 1], fill=b)
    elif kind == "discs":
        for _ in range(int(rng.integers(4, 8))):
            x, y = (int(v) for v in rng.integers(20, s - 20, 2))
            r = int(rng.integers(12, 24))
            d.ellipse([x - r, y - r, x + r, y + r], fill=b)
    else:
        noise = rng.integers(0, 256, (s // 4, s // 4, 3), dtype=np.uint8)
        img = Image.fromarray(noise).resize((s, s), Image.Resampling.NEAREST)
    return img


def texture_jpeg(kind: str, rng: np.random.Generator, size: int = 128) -> bytes:
    buf = io.BytesIO()
    texture(kind, rng, size).save(buf, "JPEG", quality=90)
    return buf.getvalue()
