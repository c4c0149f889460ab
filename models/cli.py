"""Typer commands for training, evaluation, explanation and export (mounted by consumer/cli/main.py).

    galleryrank train tagger --data DIR --out runs/tagger
    galleryrank train aesthetic --labels AVA.txt --images DIR --out runs/nima
    galleryrank evaluate --checkpoint runs/tagger/best.pt --data DIR --report eval.json
    galleryrank explain IMAGE... --checkpoint runs/tagger/best.pt --area bathroom --out cams/
    galleryrank export --checkpoint runs/tagger/best.pt --out model.onnx
    galleryrank export --triton triton-models        # Triton model repository (models/triton.py)

Every command prints its result as JSON on stdout (logs go to stderr).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer

models_app = typer.Typer(help="Train, evaluate, explain and export galleryrank models.", no_args_is_help=True)
train_app = typer.Typer(help="Two-phase transfer learning (heads, then all layers).", no_args_is_help=True)
models_app.add_typer(train_app, name="train")


def _print(result: dict) -> None:
    typer.echo(json.dumps(result, indent=2, default=str))


def _train_opts(**kw) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return {k: v for k, v in kw.items() if v is not None}


_Backbone = typer.Option("efficientnet_lite0", help="efficientnet_lite0 | mobilenet_v2 | mobilenet_v3_large | vgg16")
_Weights = typer.Option(None, help="Local backbone weights file (torchvision backbones); default: package weights")
_Init = typer.Option(None, help="Start from this galleryrank checkpoint instead of the shipped default model")
# The two-phase regime's knobs, shared by both training commands (idealo's defaults in models/train.py).
_EpochsHeads = typer.Option(None, help="Phase 1 epochs (default 5)")
_LrHeads = typer.Option(None, help="Phase 1 learning rate (default 1e-3)")
_EpochsAll = typer.Option(None, help="Phase 2 epochs, all layers (default 9)")
_LrAll = typer.Option(None, help="Phase 2 learning rate (default 3e-5)")
_BatchSize = typer.Option(None, help="Default 96 on CUDA, 32 on CPU")
_Resume = typer.Option(False, help="Continue from OUT/last.pt")
_FeatureCache = typer.Option(True, help="Phase 1 on backbone features computed once and cached on disk")
_FeatureViews = typer.Option(None, help="Augmented views per image in the feature cache (default 3)")
_CacheDir = typer.Option(None, help="Feature cache folder (default ~/.cache/galleryrank)")


@train_app.command("tagger")
def train_tagger_cmd(
    data: Path = typer.Option(..., exists=True, file_okay=False, help="One folder per area with its images"),
    out: Path = typer.Option(Path("runs/tagger"), help="Output folder: best.pt, last.pt, history.json"),
    backbone: str = _Backbone,
    backbone_weights: Optional[str] = _Weights,
    init_checkpoint: Optional[str] = _Init,
    epochs_heads: Optional[int] = _EpochsHeads,
    lr_heads: Optional[float] = _LrHeads,
    epochs_all: Optional[int] = _EpochsAll,
    lr_all: Optional[float] = _LrAll,
    batch_size: Optional[int] = _BatchSize,
    val_fraction: Optional[float] = typer.Option(None),
    device: str = typer.Option("auto"),
    workers: Optional[int] = typer.Option(None, help="DataLoader worker processes"),
    seed: Optional[int] = typer.Option(None),
    resume: bool = _Resume,
    progress: bool = typer.Option(True),
    feature_cache: bool = _FeatureCache,
    feature_views: Optional[int] = _FeatureViews,
    cache_dir: Optional[str] = _CacheDir,
) -> None:
    """Train the area tagger on DATA/<area>/*.jpg."""
    from .train import train_tagger

    opts = _train_opts(backbone=backbone, backbone_weights=backbone_weights or "default",
                       init_checkpoint=init_checkpoint, epochs_heads=epochs_heads, lr_heads=lr_heads,
                       epochs_all=epochs_all, lr_all=lr_all, batch_size=batch_size, val_fraction=val_fraction,
                       device=device, workers=workers, seed=seed, resume=resume, progress=progress,
                       feature_cache=feature_cache, feature_views=feature_views, cache_dir=cache_dir)
    _print(train_tagger(data, out, **opts))


@train_app.command("aesthetic")
def train_aesthetic_cmd(
    labels: Path = typer.Option(..., exists=True, dir_okay=False, help="AVA-style rows: image id + 10 vote counts"),
    images: Path = typer.Option(..., exists=True, file_okay=False, help="Folder with <image id>.jpg"),
    out: Path = typer.Option(Path("runs/aesthetic"), help="Output folder: best.pt, last.pt, history.json"),
    backbone: str = _Backbone,
    backbone_weights: Optional[str] = _Weights,
    init_checkpoint: Optional[str] = _Init,
    epochs_heads: Optional[int] = _EpochsHeads,
    lr_heads: Optional[float] = _LrHeads,
    epochs_all: Optional[int] = _EpochsAll,
    lr_all: Optional[float] = _LrAll,
    batch_size: Optional[int] = _BatchSize,
    val_fraction: Optional[float] = typer.Option(None),
    device: str = typer.Option("auto"),
    workers: Optional[int] = typer.Option(None),
    seed: Optional[int] = typer.Option(None),
    resume: bool = _Resume,
    progress: bool = typer.Option(True),
    feature_cache: bool = _FeatureCache,
    feature_views: Optional[int] = _FeatureViews,
    cache_dir: Optional[str] = _CacheDir,
) -> None:
    """Train the NIMA aesthetic head (EMD loss) on vote distributions."""
    from .train import train_aesthetic

    opts = _train_opts(backbone=backbone, backbone_weights=backbone_weights or "default",
                       init_checkpoint=init_checkpoint, epochs_heads=epochs_heads, lr_heads=lr_heads,
                       epochs_all=epochs_all, lr_all=lr_all, batch_size=batch_size, val_fraction=val_fraction,
                       device=device, workers=workers, seed=seed, resume=resume, progress=progress,
                       feature_cache=feature_cache, feature_views=feature_views, cache_dir=cache_dir)
    _print(train_aesthetic(labels, images, out, **opts))


@models_app.command("evaluate")
def evaluate_cmd(
    checkpoint: Optional[str] = typer.Option(None, help="Checkpoint; default: the shipped default model"),
    data: Optional[Path] = typer.Option(None, exists=True, file_okay=False, help="Tagger test set DATA/<area>/"),
    labels: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="Aesthetic vote rows"),
    images: Optional[Path] = typer.Option(None, exists=True, file_okay=False, help="Images for --labels"),
    report: Path = typer.Option(Path("evaluation.json"), help="JSON report (confusion PNG next to it)"),
    device: str = typer.Option("cpu"),
    backend: str = typer.Option("torch"),
) -> None:
    """Tagger top-1 / per-class P,R / confusion PNG; aesthetics LCC, SRCC, EMD, 2-class accuracy."""
    from .evaluate import evaluate

    _print(evaluate(checkpoint, data_dir=data, labels=labels, images_dir=images, report_path=report,
                    device=device, backend=backend))


@models_app.command("explain")
def explain_cmd(
    images: list[Path] = typer.Argument(..., exists=True, dir_okay=False),
    checkpoint: Optional[str] = typer.Option(None),
    area: list[str] = typer.Option([], help="Also draw the map of this area (repeatable)"),
    out: Path = typer.Option(Path("cams"), help="Folder for <image>_cam_<area>.png"),
    device: str = typer.Option("cpu"),
) -> None:
    """CAM heatmaps of the area head over each image, for the predicted area and any --area."""
    from .cam import explain

    _print(explain(checkpoint, images, out, areas=area or None, device=device))


@models_app.command("export")
def export_cmd(
    out: Path = typer.Option(Path("galleryrank.onnx")),
    checkpoint: Optional[str] = typer.Option(None),
    opset: int = typer.Option(17),
    max_abs_diff: float = typer.Option(1e-3, help="Fail when ONNX Runtime differs more from PyTorch fp32"),
    triton: Optional[Path] = typer.Option(
        None, help="Write a Triton model repository here instead (DIR/galleryrank/config.pbtxt + 1/model.onnx)"
    ),
) -> None:
    """Export the scoring graph to ONNX and check parity with PyTorch (max abs diff printed)."""
    from .export import export_onnx

    if triton is not None:
        from .triton import write_repository

        result = write_repository(checkpoint, triton, opset=opset)
    else:
        result = export_onnx(checkpoint, out, opset=opset)
    _print(result)
    if result["max_abs_diff"]["max"] > max_abs_diff:
        raise typer.Exit(code=1)


if __name__ == "__main__":
    models_app()
