"""Two-phase transfer learning for the area tagger and the aesthetic (NIMA) head.

Phase 1 trains only the task's head on a frozen backbone at a high learning rate;
phase 2 trains all layers at a low one. Defaults are idealo's published regime
(``config_aesthetic_gpu.json``: dense 1e-3 for 5 epochs, all layers 3e-5 for 9,
no weight decay, dropout 0.75, batch 96). The other heads of the one-pass model
are protected during phase 2 by distillation from a frozen copy of the starting
model ("Learning without Forgetting", Li & Hoiem 2016), so training the tagger does
not silently invalidate the aesthetic head and vice versa.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import torch
from scipy import stats

from .backbones import DEFAULT_WEIGHTS
from .checkpoint import load_checkpoint, save_checkpoint
from .data import (
    ImageDataset,
    Sample,
    TrainAugment,
    data_fingerprint,
    open_image,
    scan_aesthetic,
    scan_tagger_folder,
    serving_transform,
)
from .dedup import COSINE_THRESHOLD, HASH_DISTANCE, perceptual_hashes, split_without_leaks
from .features import CachedFeatures
from .losses import area_loss, emd, emd_loss
from .network import GalleryNet, create_model

log = logging.getLogger(__name__)
SCORE_BINS = torch.arange(1, 11, dtype=torch.float32)
CACHE_DECODED_UP_TO = 3000  # images kept decoded in memory (<= 512 px: ~0.6 MB each)
_T = TypeVar("_T")
Batches = torch.utils.data.DataLoader[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class TrainConfig:
    backbone: str = "efficientnet_lite0"
    backbone_weights: str | None = DEFAULT_WEIGHTS  # "default" = package weights; a local file; None = random
    init_checkpoint: str | None = None  # start from a galleryrank checkpoint (None: the shipped default model)
    epochs_heads: int = 5  # phase 1, idealo epochs_train_dense
    lr_heads: float = 1e-3  # idealo learning_rate_dense
    epochs_all: int = 9  # phase 2, idealo epochs_train_all
    lr_all: float = 3e-5  # idealo learning_rate_all
    weight_decay: float = 0.0  # idealo decay_dense / decay_all
    dropout: float = 0.75  # idealo dropout_rate
    batch_size: int | None = None  # None: 96 on CUDA (idealo), 32 on CPU
    val_fraction: float = 0.2
    rotate_degrees: float | None = None  # None: 10 for the tagger, 0 for aesthetics (idealo)
    distill_weight: float = 1.0  # LwF weight protecting the other heads in phase 2; 0 = off
    dedup_hash_distance: int = HASH_DISTANCE
    dedup_cosine: float | None = COSINE_THRESHOLD  # None: perceptual hash only
    device: str = "auto"
    amp: bool = True  # mixed precision on CUDA
    workers: int = 0
    seed: int = 0
    resume: bool = False
    progress: bool = True
    input_size: int = 224
    # phase 1 on cached backbone features (models/features.py): each image decoded once, the frozen
    # backbone run once per view (serving view + feature_views augmented ones), heads trained on vectors
    feature_cache: bool = True
    feature_views: int = 3
    cache_dir: str | None = None  # None: ~/.cache/galleryrank


def _device(name: str) -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else ("cpu" if name == "auto" else name))


def _initial_model(cfg: TrainConfig) -> tuple[GalleryNet, str]:
    if cfg.init_checkpoint:
        model, meta = load_checkpoint(cfg.init_checkpoint, backbone_weights=cfg.backbone_weights)
        return model, meta["model_version"]
    if cfg.backbone == "efficientnet_lite0" and cfg.backbone_weights == DEFAULT_WEIGHTS:
        from .defaults import load_default_model

        return load_default_model()
    area = "zeroshot" if cfg.backbone != "vgg16" else "linear"
    return create_model(cfg.backbone, weights=cfg.backbone_weights, area_head=area, seed=cfg.seed), "init"


@torch.inference_mode()
def _hashes_and_embeddings(
    model: GalleryNet,
    samples: list[Sample],
    device: torch.device,
    size: int,
    with_embeddings: bool,
    batch: int = 32,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """pHash and serving embedding of every sample, streaming (only one batch of images in memory)."""
    model.eval()
    hashes, embs = [], []
    starts = range(0, len(samples), batch)
    for i in _progress(starts, progress, f"duplicate pass ({len(samples)} images)", len(starts)):
        images = [open_image(s.path) for s in samples[i : i + batch]]
        hashes.append(perceptual_hashes(images))
        if with_embeddings:
            x = torch.from_numpy(np.stack([serving_transform(size)(im) for im in images])).to(device)
            embs.append(model(x)[2].float().cpu().numpy())
    return np.concatenate(hashes), (np.concatenate(embs) if with_embeddings else None)


class _Task:
    """What differs between tagger and aesthetic training."""

    def __init__(self, kind: str):
        self.kind = kind

    def loss(self, out: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        return area_loss(out["area_logits"], y) if self.kind == "tagger" else emd_loss(out["aesthetic_logits"], y)

    def head(self, model: GalleryNet) -> torch.nn.Module:
        if self.kind == "tagger":
            return model.area_head
        # the NIMA head and its quality blend learn together from the team's votes
        return torch.nn.ModuleList([model.aesthetic_head, model.aesthetic_blend])

    def distill(self, out: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor]) -> torch.Tensor:
        """Keep the *other* head's outputs where the starting model had them."""
        if self.kind == "tagger":
            return emd(out["aesthetic_logits"].float().softmax(1), teacher["aesthetic_logits"].float().softmax(1))
        t = teacher["area_logits"].float().softmax(1)
        return (
            -(t * out["area_logits"].float().log_softmax(1)).sum(1).mean()
            + (t * t.clamp_min(1e-12).log()).sum(1).mean()
        )

    def metrics(self, logits: torch.Tensor, y: torch.Tensor, loss: float) -> dict[str, float]:
        if self.kind == "tagger":
            return {"loss": loss, "accuracy": float((logits.argmax(1) == y).float().mean())}
        p = logits.float().softmax(1)
        pred, true = p @ SCORE_BINS, y @ SCORE_BINS
        srcc = stats.spearmanr(pred, true).statistic if len(y) > 2 else float("nan")
        return {"loss": loss, "emd": float(emd(p, y)), "srcc": float(srcc)}

    def better(self, new: dict[str, float], old: dict[str, float] | None) -> bool:
        if old is None:
            return True
        if self.kind == "tagger":
            return (new["accuracy"], -new["loss"]) > (old["accuracy"], -old["loss"])
        return new["emd"] < old["emd"]


def _set_phase(model: GalleryNet, task: _Task, phase: int) -> list[torch.nn.Parameter]:
    """Freeze/unfreeze; return the parameters to optimise in this phase."""
    for p in model.parameters():
        p.requires_grad_(False)
    params = list(task.head(model).parameters())
    if phase == 2:
        params += list(model.backbone.parameters())
    for p in params:
        p.requires_grad_(True)
    return params


def _train_mode(model: GalleryNet, task: _Task, phase: int) -> None:
    """Only the task head (and the backbone in phase 2) runs in training mode (dropout, BN updates)."""
    model.eval()
    task.head(model).train()
    if phase == 2:  # in phase 1 the frozen backbone keeps its BatchNorm statistics, as Keras trainable=False
        model.backbone.train()


def _autocast(device: torch.device, enabled: bool) -> torch.autocast:
    if device.type == "cuda" and enabled:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)


@torch.inference_mode()
def _validate(model: GalleryNet, loader: Batches, task: _Task, device: torch.device, amp: bool) -> dict[str, float]:
    model.eval()
    logits, ys, losses = [], [], []
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        with _autocast(device, amp):
            out = model.run(x)
        losses.append(float(task.loss(out, y)) * len(y))
        logits.append((out["area_logits"] if task.kind == "tagger" else out["aesthetic_logits"]).float().cpu())
        ys.append(y.cpu())
    logits_t, y_t = torch.cat(logits), torch.cat(ys)
    return task.metrics(logits_t, y_t, sum(losses) / len(y_t))


def _progress(iterable: Iterable[_T], enabled: bool, desc: str, total: int) -> Iterable[_T]:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)  # tqdm shows the ETA


def _target(s: Sample) -> torch.Tensor:
    if s.votes is not None:
        v = torch.tensor(s.votes, dtype=torch.float32)
        return v / v.sum()
    return torch.tensor(s.label, dtype=torch.long)


def _cached_heads(
    model: GalleryNet, feats: CachedFeatures, idx: list[int], view: int, device: torch.device
) -> dict[str, torch.Tensor]:
    pooled = torch.from_numpy(feats.pooled[idx, view]).to(device)
    quality = model.quality_features.standardise(torch.from_numpy(feats.quality[idx, view]).to(device))
    return model.heads(pooled, quality)


def _cached_epoch(
    model: GalleryNet,
    task: _Task,
    opt: torch.optim.Optimizer,
    feats: CachedFeatures,
    targets: torch.Tensor,
    train_idx: list[int],
    epoch: int,
    batch_size: int,
    gen: torch.Generator,
    device: torch.device,
    desc: str,
    progress: bool,
) -> tuple[float, int]:
    """One phase-1 epoch over cached features: epoch e uses augmented view 1 + e mod V of every image."""
    n_views = feats.pooled.shape[1] - 1
    view = 1 + epoch % n_views if n_views else 0
    order = torch.tensor(train_idx)[torch.randperm(len(train_idx), generator=gen)]
    batches = order.split(batch_size)  # type: ignore[no-untyped-call]  # torch: Tensor.split is unannotated
    total, seen = 0.0, 0
    bar = _progress(batches, progress, desc, len(batches))
    for b in bar:
        idx = b.tolist()
        out = _cached_heads(model, feats, idx, view, device)
        y = targets[idx].to(device)
        loss = task.loss(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]  # torch: Tensor.backward is unannotated
        opt.step()
        total += loss.item() * len(idx)
        seen += len(idx)
        if progress and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{total / seen:.4f}")
    return total, seen


@torch.inference_mode()
def _validate_cached(
    model: GalleryNet,
    task: _Task,
    feats: CachedFeatures,
    targets: torch.Tensor,
    val_idx: list[int],
    device: torch.device,
) -> dict[str, float]:
    """Validation on the cached serving view: the same bytes serving sees, so the same figures."""
    model.eval()
    out = _cached_heads(model, feats, val_idx, 0, device)
    y = targets[val_idx].to(device)
    logits = out["area_logits"] if task.kind == "tagger" else out["aesthetic_logits"]
    return task.metrics(logits.float().cpu(), y.cpu(), float(task.loss(out, y)))


def fit(
    kind: str,
    samples: list[Sample],
    classes: list[str] | None,
    out: str | Path,
    cfg: TrainConfig,
    data_root: Path | None = None,
) -> dict[str, Any]:
    """Shared training loop; ``kind`` is "tagger" or "aesthetic"."""
    t_start = time.perf_counter()
    task = _Task(kind)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = _device(cfg.device)
    torch.manual_seed(cfg.seed)
    amp = cfg.amp and device.type == "cuda"
    batch_size = cfg.batch_size or (96 if device.type == "cuda" else 32)
    rotate = cfg.rotate_degrees if cfg.rotate_degrees is not None else (10.0 if kind == "tagger" else 0.0)

    model, start_version = _initial_model(cfg)
    if kind == "tagger":
        model.replace_area_head(cast(list[str], classes), dropout=cfg.dropout)  # a tagger has classes
    model.to(device)

    last_path = out_dir / "last.pt"
    state = torch.load(last_path, map_location="cpu", weights_only=False) if cfg.resume and last_path.exists() else None
    fingerprint = data_fingerprint(samples, data_root)
    if state is not None and state["data_fingerprint"] != fingerprint:
        raise ValueError(f"{last_path} was trained on different data; remove it or drop --resume")

    feats = None
    if cfg.feature_cache and cfg.epochs_heads > 0 and (state is None or state["epoch"] < cfg.epochs_heads):
        from .features import cached_features

        feats = cached_features(
            model,
            [s.path for s in samples],
            views=cfg.feature_views,
            rotate_degrees=rotate,
            cache_dir=cfg.cache_dir,
            device=device,
            progress=cfg.progress,
        )
    targets = torch.stack([_target(s) for s in samples])

    if state is None:
        train_idx, val_idx, split_report = _split(model, task.kind, samples, feats, device, cfg)
    else:
        train_idx, val_idx, split_report = state["train_idx"], state["val_idx"], state["split"]
    if not train_idx or not val_idx:
        raise ValueError(f"not enough distinct images to split: {split_report}")
    log.info("split: %s", {k: v for k, v in split_report.items() if k != "removed"})

    gen = torch.Generator().manual_seed(cfg.seed)
    loaders: tuple[Batches, Batches] | None = None  # built on the first epoch that runs the backbone

    total_epochs = cfg.epochs_heads + cfg.epochs_all
    history: list[dict[str, Any]] = []
    best, best_epoch, epoch0 = None, -1, 0
    backbone_changed = (
        cfg.backbone_weights != DEFAULT_WEIGHTS
        or cfg.backbone != "efficientnet_lite0"
        or (cfg.init_checkpoint is not None)
    )
    if state is not None:
        model.load_state_dict(state["model"])
        history, best, best_epoch, epoch0 = state["history"], state["best"], state["best_epoch"], state["epoch"]
        backbone_changed = state["backbone_changed"]
    teacher = None
    phase_opt: tuple[int, torch.optim.Optimizer] | None = None
    scaler = torch.amp.GradScaler("cuda", enabled=amp and not torch.cuda.is_bf16_supported()) if amp else None
    version = f"{kind}-{fingerprint[:8]}"

    for epoch in range(epoch0, total_epochs):
        phase = 1 if epoch < cfg.epochs_heads else 2
        if phase_opt is None or phase_opt[0] != phase:
            resumed = state if state is not None and state.get("phase") == phase and epoch == epoch0 else None
            phase_opt = (phase, _phase_optimizer(model, task, phase, cfg, resumed))
            if phase == 2 and cfg.distill_weight > 0:
                teacher = _teacher(model)
        opt = phase_opt[1]
        _train_mode(model, task, phase)
        t_epoch = time.perf_counter()
        desc = f"epoch {epoch + 1}/{total_epochs} (phase {phase}{', cached features' if phase == 1 and feats is not None else ''})"
        if phase == 1 and feats is not None:
            total, seen = _cached_epoch(
                model, task, opt, feats, targets, train_idx, epoch, batch_size, gen, device, desc, cfg.progress
            )
            val = _validate_cached(model, task, feats, targets, val_idx, device)
        else:
            if loaders is None:
                loaders = _image_loaders(samples, train_idx, val_idx, cfg, rotate, batch_size, gen)
            train_dl, val_dl = loaders
            total, seen = _image_epoch(model, task, opt, train_dl, teacher, scaler, device, amp, cfg, desc)
            backbone_changed |= phase == 2
            val = _validate(model, val_dl, task, device, amp)
        row = {
            "epoch": epoch + 1,
            "phase": phase,
            "train_loss": total / max(seen, 1),
            "seconds": round(time.perf_counter() - t_epoch, 2),
            **{f"val_{k}": v for k, v in val.items()},
        }
        history.append(row)
        log.info("%s", row)
        best, best_epoch = _keep_best(
            model,
            task,
            val,
            best,
            best_epoch,
            epoch,
            out_dir,
            backbone_changed,
            version,
            fingerprint,
            kind,
            start_version,
            cfg,
            split_report,
        )
        _save_last(
            last_path,
            epoch,
            phase,
            model,
            opt,
            best,
            best_epoch,
            history,
            train_idx,
            val_idx,
            split_report,
            fingerprint,
            backbone_changed,
        )

    result = {
        "task": kind,
        "checkpoint": str(out_dir / "best.pt"),
        "best_epoch": best_epoch,
        "best_val": best,
        "history": history,
        "split": split_report,
        "classes": classes,
        "data_fingerprint": fingerprint,
        "device": str(device),
        "batch_size": batch_size,
        "seconds": round(time.perf_counter() - t_start, 1),
        "feature_cache": None
        if feats is None
        else {"seconds": round(feats.seconds, 1), "computed": feats.computed, "views_per_image": 1 + cfg.feature_views},
    }
    (out_dir / "history.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def _split(
    model: GalleryNet, kind: str, samples: list[Sample], feats: Any, device: torch.device, cfg: TrainConfig
) -> tuple[list[int], list[int], dict[str, Any]]:
    """(train rows, validation rows, report): exact copies removed, near-duplicate groups kept on one side."""
    emb: np.ndarray | None
    if feats is not None:  # the duplicate pass reuses the cached serving view: no second decode
        hashes = feats.phash
        with torch.inference_mode():
            emb = _cached_heads(model, feats, list(range(len(samples))), 0, device)["embedding"].cpu().numpy()
    else:
        hashes, emb = _hashes_and_embeddings(
            model, samples, device, cfg.input_size, cfg.dedup_cosine is not None, progress=cfg.progress
        )
    strat = [
        s.label if kind == "tagger" else int(round(float(np.dot(s.votes, range(1, 11)) / sum(s.votes))))  # type: ignore[arg-type]  # aesthetic samples carry votes
        for s in samples
    ]
    train_idx, val_idx, split = split_without_leaks(
        strat,
        hashes,
        emb,
        val_fraction=cfg.val_fraction,
        seed=cfg.seed,
        names=[str(s.path) for s in samples],
        hash_distance=cfg.dedup_hash_distance,
        cosine=cfg.dedup_cosine or 2.0,
    )
    return train_idx, val_idx, split.as_dict()


def _image_loaders(
    samples: list[Sample],
    train_idx: list[int],
    val_idx: list[int],
    cfg: TrainConfig,
    rotate: float,
    batch_size: int,
    gen: torch.Generator,
) -> tuple[Batches, Batches]:
    """(train, validation) loaders of decoded images: for epochs that run the backbone (phase 2,
    or phase 1 without the feature cache)."""
    aug = TrainAugment(cfg.input_size, rotate_degrees=rotate, seed=cfg.seed)
    cache = len(samples) <= CACHE_DECODED_UP_TO  # small sets: decode once, not every epoch
    train_ds = ImageDataset([samples[i] for i in train_idx], aug, cache=cache)
    val_ds = ImageDataset([samples[i] for i in val_idx], serving_transform(cfg.input_size), cache=cache)
    train = torch.utils.data.DataLoader(
        train_ds,
        batch_size=batch_size,
        shuffle=True,
        generator=gen,
        num_workers=cfg.workers,
        drop_last=len(train_ds) > batch_size,
    )
    return train, torch.utils.data.DataLoader(val_ds, batch_size=batch_size, num_workers=cfg.workers)


def _phase_optimizer(
    model: GalleryNet, task: _Task, phase: int, cfg: TrainConfig, resumed: dict[str, Any] | None
) -> torch.optim.Optimizer:
    """The phase's trainable parameters set, and their optimizer (its state from ``resumed``)."""
    params = _set_phase(model, task, phase)
    lr = cfg.lr_heads if phase == 1 else cfg.lr_all
    opt = torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay)
    if resumed is not None:
        opt.load_state_dict(resumed["optimizer"])
    return opt


def _teacher(model: GalleryNet) -> GalleryNet:
    """The model as phase 2 begins, frozen (after a resume inside phase 2: as resumed, whose other
    heads were themselves held to the original teacher until then)."""
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _image_epoch(
    model: GalleryNet,
    task: _Task,
    opt: torch.optim.Optimizer,
    train_dl: Batches,
    teacher: GalleryNet | None,
    scaler: torch.amp.GradScaler | None,
    device: torch.device,
    amp: bool,
    cfg: TrainConfig,
    desc: str,
) -> tuple[float, int]:
    """One pass over the decoded training images: (summed loss, images seen)."""
    total, seen = 0.0, 0
    bar = _progress(train_dl, cfg.progress, desc, len(train_dl))
    for x, y in bar:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with _autocast(device, amp):
            pred = model.run(x)
            loss = task.loss(pred, y)
            if teacher is not None:
                with torch.no_grad():
                    t_out = teacher.run(x)
                loss = loss + cfg.distill_weight * task.distill(pred, t_out)
        opt.zero_grad(set_to_none=True)
        if scaler is not None and scaler.is_enabled():
            scaler.scale(loss).backward()  # type: ignore[no-untyped-call]  # torch: Tensor.backward is unannotated
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()  # type: ignore[no-untyped-call]  # torch: Tensor.backward is unannotated
            opt.step()
        total += loss.item() * len(y)
        seen += len(y)
        if cfg.progress and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{total / seen:.4f}")
    return total, seen


def _keep_best(
    model: GalleryNet,
    task: _Task,
    val: dict[str, float],
    best: dict[str, float] | None,
    best_epoch: int,
    epoch: int,
    out_dir: Path,
    backbone_changed: bool,
    version: str,
    fingerprint: str,
    kind: str,
    start_version: str,
    cfg: TrainConfig,
    split_report: dict[str, Any],
) -> tuple[dict[str, float] | None, int]:
    if task.better(val, best):
        best, best_epoch = val, epoch + 1
        save_checkpoint(
            model,
            out_dir / "best.pt",
            include_backbone=backbone_changed,
            model_version=f"{version}-e{epoch + 1}",
            data_fingerprint=fingerprint,
            extra={
                "task": kind,
                "epoch": epoch + 1,
                "val": val,
                "started_from": start_version,
                "config": asdict(cfg),
                "split": split_report,
            },
        )
    return best, best_epoch


def _save_last(
    path: Path,
    epoch: int,
    phase: int,
    model: GalleryNet,
    opt: torch.optim.Optimizer,
    best: dict[str, float] | None,
    best_epoch: int,
    history: list[dict[str, Any]],
    train_idx: list[int],
    val_idx: list[int],
    split_report: dict[str, Any],
    fingerprint: str,
    backbone_changed: bool,
) -> None:
    torch.save(
        {
            "epoch": epoch + 1,
            "phase": phase,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "best": best,
            "best_epoch": best_epoch,
            "history": history,
            "train_idx": train_idx,
            "val_idx": val_idx,
            "split": split_report,
            "data_fingerprint": fingerprint,
            "backbone_changed": backbone_changed,
        },
        path,
    )


def _config(opts: dict[str, Any]) -> TrainConfig:
    unknown = set(opts) - set(TrainConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown training options: {sorted(unknown)}")
    return TrainConfig(**opts)


def train_tagger(
    data_dir: str | Path, out: str | Path, classes: list[str] | None = None, **opts: Any
) -> dict[str, Any]:
    """Train the area tagger on ``data_dir/<area>/*.jpg``; writes ``out/best.pt``, ``out/last.pt``, ``out/history.json``."""
    samples, classes = scan_tagger_folder(data_dir, classes)
    return fit("tagger", samples, classes, out, _config(opts), data_root=Path(data_dir))


def train_aesthetic(labels_file: str | Path, images_dir: str | Path, out: str | Path, **opts: Any) -> dict[str, Any]:
    """Train the NIMA head (EMD loss) on AVA-style vote rows; images are ``images_dir/<id>.<ext>``."""
    samples, missing = scan_aesthetic(labels_file, images_dir)
    if missing:
        log.warning("%d label rows had no image in %s", missing, images_dir)
    result = fit("aesthetic", samples, None, out, _config(opts), data_root=Path(images_dir))
    result["rows_without_image"] = missing
    return result


__all__ = ["TrainConfig", "train_tagger", "train_aesthetic", "fit"]
