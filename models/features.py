"""Backbone features computed once and cached on disk, keyed by file content.

Phase 1 of training (heads only, backbone frozen) does not need the backbone in
the loop: every head sees only the pooled features and the quality features of
``models.quality``. So each image is decoded once, turned into the serving view
plus a few augmented views (idealo's resize 256 / random crop 224 / flip, plus
rotation for the tagger), and the frozen backbone runs once per view. The heads
then train on those vectors in seconds per epoch. The same serving-view vectors
feed the duplicate pass (embedding = the model's fixed projection of them), and
the pHash is computed from the same decoded image, so nothing is decoded twice.

Cache layout: ``<cache_dir>/features/<extractor key>/serve/<sha256[:2]>/<sha256>.npz``
(serving view: ``pooled`` (1, F) float32, ``quality`` (1, Q) raw quality features,
``phash`` (64,) bool) and ``.../<view key>/...`` (the V augmented views). The
extractor key covers the backbone weights, input size and the quality-feature
version; the view key covers the augmentation recipe (count, rotation). Benchmarks
that need only the serving view share it with training.
Augmented views are seeded by the file's content hash, so a cached entry is
exactly what a fresh run would compute.

On CPU the extractor is an ONNX Runtime session of the backbone + quality graph
(exported once into the cache; ~2.5x the images per CPU-second of eager PyTorch,
docs/models.md); on CUDA it is the torch module.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .data import TrainAugment, open_image
from .dedup import perceptual_hashes
from .preprocess import preprocess_image
from .quality import QUALITY_FEATURES_VERSION

if TYPE_CHECKING:
    from PIL import Image

    from .network import GalleryNet

log = logging.getLogger(__name__)
DEFAULT_CACHE_DIR = "~/.cache/galleryrank"
AUGMENT_FROM = 512  # augmented views start from a <= 512 px copy (they resize to 256 anyway)


@dataclass
class CachedFeatures:
    pooled: np.ndarray  # (N, 1+V, F) float32; view 0 = serving preprocessing
    quality: np.ndarray  # (N, 1+V, Q) float32, raw (standardise with the model's buffers)
    phash: np.ndarray  # (N, 64) bool
    seconds: float = 0.0
    computed: int = 0  # images that were not in the cache


class FeatureGraph(nn.Module):
    """uint8 images -> (pooled backbone features, raw quality features): what the heads consume."""

    def __init__(self, model: GalleryNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        pooled = m.backbone.forward_features(m.normalise(x)).float().mean(dim=(2, 3))
        return pooled, m.quality_features.raw(x)


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def extractor_key(model: GalleryNet) -> str:
    from .checkpoint import state_fingerprint

    fp = state_fingerprint({k: v for k, v in model.backbone.state_dict().items()})[:16]
    return f"{model.backbone_name}-{fp}-s{model.input_size}-q{QUALITY_FEATURES_VERSION}"


def view_key(views: int, rotate_degrees: float) -> str:
    return f"serve+{views}aug-r{rotate_degrees:g}"


def image_views(
    path: Path, views: int, rotate_degrees: float, size: int, digest: str
) -> tuple[Image.Image, np.ndarray]:
    """(decoded image, uint8 (1+views, 3, S, S)): the serving view, then seeded augmented views."""
    img = open_image(path)
    out = [preprocess_image(img, size)]
    if views:
        small = img.copy()
        small.thumbnail((AUGMENT_FROM, AUGMENT_FROM))
        aug = TrainAugment(size, rotate_degrees=rotate_degrees, seed=int(digest[:15], 16))
        out += [aug(small) for _ in range(views)]
    return img, np.stack(out)


class _Extractor:
    def __init__(
        self, model: GalleryNet, device: torch.device, cache_dir: Path, key: str, threads: int | None = None
    ) -> None:
        self.graph = FeatureGraph(model).eval()
        self.device = device
        self.session = None
        if device.type == "cpu" and os.environ.get("GALLERYRANK_FEATURES_BACKEND", "onnxruntime") == "onnxruntime":
            try:
                self.session = self._onnx(cache_dir / f"{key}.onnx", threads)
            except Exception as exc:  # export or runtime missing: eager PyTorch is correct, only slower
                log.warning("ONNX feature graph unavailable (%s); using eager PyTorch", exc)

    def _onnx(self, path: Path, threads: int | None) -> Any:
        from .export import make_session

        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            s = self.graph.model.input_size
            with torch.no_grad():
                torch.onnx.export(
                    self.graph.cpu(),
                    (torch.zeros((2, 3, s, s), dtype=torch.uint8),),
                    str(tmp),
                    dynamo=False,
                    opset_version=17,
                    input_names=["images"],
                    output_names=["pooled", "quality"],
                    dynamic_axes={"images": {0: "batch"}, "pooled": {0: "batch"}, "quality": {0: "batch"}},
                )
            tmp.replace(path)
        return make_session(path, num_threads=threads)

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.session is not None:
            pooled, quality = self.session.run(None, {"images": batch})
            return pooled, quality
        pooled, quality = self.graph(torch.from_numpy(batch).to(self.device))
        return pooled.float().cpu().numpy(), quality.float().cpu().numpy()


def _save(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]  # numpy stubs type **kwds as allow_pickle
    tmp.replace(path)  # atomic: a killed run never leaves a half-written entry


def cached_features(
    model: GalleryNet,
    paths: list[Path],
    *,
    views: int = 3,
    rotate_degrees: float = 0.0,
    cache_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    batch_images: int = 8,
    threads: int | None = None,
) -> CachedFeatures:
    """Features of every image in ``paths`` (serving view + ``views`` augmented ones), from the cache
    where present; the rest computed in batches of ``batch_images`` images, with a progress bar + ETA."""
    t0 = time.perf_counter()
    device = torch.device(device)
    root = Path(os.path.expanduser(str(cache_dir or DEFAULT_CACHE_DIR))) / "features"
    key = extractor_key(model)
    digests = [file_digest(p) for p in paths]
    serve = [root / key / "serve" / d[:2] / f"{d}.npz" for d in digests]
    aug = [root / key / view_key(views, rotate_degrees) / d[:2] / f"{d}.npz" for d in digests] if views else None
    todo = [i for i in range(len(paths)) if not serve[i].exists() or (aug is not None and not aug[i].exists())]
    if todo:
        extractor = _Extractor(model, device, root, key, threads)
        bar: Any = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=len(todo),
                desc=f"backbone features ({1 + views} views/image)",
                unit="img",
                dynamic_ncols=True,
                leave=False,
            )
        for k in range(0, len(todo), batch_images):
            chunk = todo[k : k + batch_images]
            decoded = [image_views(paths[i], views, rotate_degrees, model.input_size, digests[i]) for i in chunk]
            pooled, quality = extractor(np.concatenate([v for _, v in decoded]))
            hashes = perceptual_hashes([img for img, _ in decoded])
            n = 1 + views
            for j, i in enumerate(chunk):
                a, b = j * n, (j + 1) * n
                _save(serve[i], pooled=pooled[a : a + 1], quality=quality[a : a + 1], phash=hashes[j])
                if aug is not None:
                    _save(aug[i], pooled=pooled[a + 1 : b], quality=quality[a + 1 : b])
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
    pooled_rows: list[np.ndarray] = []
    quality_rows: list[np.ndarray] = []
    phash: list[np.ndarray] = []
    for i in range(len(paths)):
        with np.load(serve[i]) as z:
            p, q = [z["pooled"]], [z["quality"]]
            phash.append(z["phash"])
        if aug is not None:
            with np.load(aug[i]) as z:
                p.append(z["pooled"])
                q.append(z["quality"])
        pooled_rows.append(np.concatenate(p))
        quality_rows.append(np.concatenate(q))
    seconds = time.perf_counter() - t0
    log.info(
        "features of %d images (%d computed, %d cached) in %.1f s",
        len(paths),
        len(todo),
        len(paths) - len(todo),
        seconds,
    )
    return CachedFeatures(
        np.stack(pooled_rows), np.stack(quality_rows), np.stack(phash).astype(bool), seconds, len(todo)
    )
