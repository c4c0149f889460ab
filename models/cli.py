"""Click commands for training, evaluation, explanation and export (mounted by consumer/cli/main.py).

    galleryrank train tagger --data DIR --out runs/tagger
    galleryrank train aesthetic --labels AVA.txt --images DIR --out runs/nima
    galleryrank evaluate --checkpoint runs/tagger/best.pt --data DIR --report eval.json
    galleryrank explain IMAGE... --checkpoint runs/tagger/best.pt --area bathroom --out cams/
    galleryrank export --checkpoint runs/tagger/best.pt --out model.onnx
    galleryrank export --triton triton-models        # Triton model repository (models/triton.py)

evaluate, explain and export print their result as JSON on stdout; train prints a short summary
and names the file with the whole result (OUT/history.json). Logs go to stderr.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

_Dir = click.Path(exists=True, file_okay=False, path_type=Path)
_File = click.Path(exists=True, dir_okay=False, path_type=Path)
_OutPath = click.Path(path_type=Path)


# The same settings as the service's (consumer/settings.py: same env var, same default), so a
# shell that sets GALLERYRANK_DEVICE=cpu or GALLERYRANK_CHECKPOINT=... means the same everywhere.
# (models/ may not import the consumer, hence plain click options here.)
DEVICE = click.option(
    "--device",
    default="auto",
    show_default=True,
    envvar="GALLERYRANK_DEVICE",
    show_envvar=True,
    help="auto (cuda if available), cpu, cuda or cuda:N",
)
CHECKPOINT = click.option(
    "--checkpoint",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    envvar="GALLERYRANK_CHECKPOINT",
    show_envvar=True,
    help="Model checkpoint [default: the shipped default model]",
)
BACKEND = click.option(
    "--backend",
    type=click.Choice(["auto", "torch", "torch-fp16", "torch-bf16", "onnxruntime"]),
    default="auto",
    show_default=True,
    envvar="GALLERYRANK_BACKEND",
    show_envvar=True,
    help="Inference backend; auto = fastest measured for the device (the service's)",
)


def _print(result: dict[str, Any]) -> None:
    click.echo(json.dumps(result, indent=2, default=str))


class DataError(click.ClickException):
    """Training data that cannot work (a folder layout, a labels file): one line, exit code 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _data_errors_one_line(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Training's own checks of the data (too few distinct images to split, unknown options, ...)
    raise ValueError/TypeError with a sentence: that sentence, exit code 2, no traceback."""
    from PIL import UnidentifiedImageError

    try:
        return run()
    except UnidentifiedImageError as exc:  # a file that is no image, in the training folder
        raise DataError(f"{exc}: remove or replace it") from None
    except (ValueError, TypeError) as exc:
        raise DataError(str(exc)) from None


def _summary(result: dict[str, Any], out: Path) -> None:
    """A few lines a person reads; the whole result (history, split, ...) is in OUT/history.json."""
    best = result.get("best_val") or {}
    rows = [
        ("task", result.get("task")),
        ("checkpoint", result.get("checkpoint")),
        ("best epoch", result.get("best_epoch")),
        *((f"val {k}", f"{v:.4f}" if isinstance(v, float) else v) for k, v in best.items()),
        ("classes", ", ".join(result.get("classes") or []) or None),
        ("device / batch", f"{result.get('device')} / {result.get('batch_size')}"),
        ("time", f"{result.get('seconds')} s"),
        ("full result", str(out / "history.json")),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        if value is not None:
            click.echo(f"{key:<{width}}  {value}")


def _train_opts(**kw: Any) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return {k: v for k, v in kw.items() if v is not None}


def _training_options(f: F) -> F:
    """The two-phase regime's knobs, shared by both training commands (idealo's defaults in models/train.py)."""
    options = [
        click.option(
            "--backbone",
            default="efficientnet_lite0",
            show_default=True,
            help="efficientnet_lite0 | mobilenet_v2 | mobilenet_v3_large | vgg16",
        ),
        click.option(
            "--backbone-weights",
            default=None,
            help="Local backbone weights file (torchvision backbones); default: package weights",
        ),
        click.option(
            "--init-checkpoint",
            default=None,
            help="Start from this galleryrank checkpoint instead of the shipped default model",
        ),
        click.option("--epochs-heads", type=int, default=None, help="Phase 1 epochs (default 5)"),
        click.option("--lr-heads", type=float, default=None, help="Phase 1 learning rate (default 1e-3)"),
        click.option("--epochs-all", type=int, default=None, help="Phase 2 epochs, all layers (default 9)"),
        click.option("--lr-all", type=float, default=None, help="Phase 2 learning rate (default 3e-5)"),
        click.option("--batch-size", type=int, default=None, help="Default 96 on CUDA, 32 on CPU"),
        click.option("--val-fraction", type=float, default=None),
        DEVICE,
        click.option("--workers", type=int, default=None, help="DataLoader worker processes"),
        click.option("--seed", type=int, default=None),
        click.option("--resume/--no-resume", default=False, help="Continue from OUT/last.pt"),
        click.option("--progress/--no-progress", default=True, show_default=True),
        click.option(
            "--feature-cache/--no-feature-cache",
            default=True,
            show_default=True,
            help="Phase 1 on backbone features computed once and cached on disk",
        ),
        click.option(
            "--feature-views", type=int, default=None, help="Augmented views per image in the feature cache (default 3)"
        ),
        click.option("--cache-dir", default=None, help="Feature cache folder (default ~/.cache/galleryrank)"),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _training_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    kw["backbone_weights"] = kw.get("backbone_weights") or "default"
    return _train_opts(**kw)


@click.group("train", help="Two-phase transfer learning (heads, then all layers).")
def train_group() -> None:
    pass


@train_group.command("tagger")
@click.option("--data", type=_Dir, required=True, help="One folder per area with its images")
@click.option(
    "--out",
    type=_OutPath,
    default=Path("runs/tagger"),
    show_default=True,
    help="Output folder: best.pt, last.pt, history.json",
)
@_training_options
def train_tagger_cmd(data: Path, out: Path, **kw: Any) -> None:
    """Train the area tagger on DATA/<area>/*.jpg."""
    from .data import scan_tagger_folder
    from .train import train_tagger

    try:
        scan_tagger_folder(data)  # the layout, before anything loads: one line naming the fix
    except (ValueError, FileNotFoundError) as exc:
        raise DataError(str(exc)) from None
    _summary(_data_errors_one_line(lambda: train_tagger(data, out, **_training_kwargs(kw))), out)


@train_group.command("aesthetic")
@click.option("--labels", type=_File, required=True, help="AVA-style rows: image id + 10 vote counts")
@click.option("--images", type=_Dir, required=True, help="Folder with <image id>.jpg")
@click.option(
    "--out",
    type=_OutPath,
    default=Path("runs/aesthetic"),
    show_default=True,
    help="Output folder: best.pt, last.pt, history.json",
)
@_training_options
def train_aesthetic_cmd(labels: Path, images: Path, out: Path, **kw: Any) -> None:
    """Train the NIMA aesthetic head (EMD loss) on vote distributions."""
    from .data import scan_aesthetic
    from .train import train_aesthetic

    try:
        scan_aesthetic(labels, images)  # the labels file and images, before anything loads
    except (ValueError, FileNotFoundError) as exc:
        raise DataError(str(exc)) from None
    _summary(_data_errors_one_line(lambda: train_aesthetic(labels, images, out, **_training_kwargs(kw))), out)


@click.command("evaluate")
@CHECKPOINT
@click.option("--data", type=_Dir, default=None, help="Tagger test set DATA/<area>/")
@click.option("--labels", type=_File, default=None, help="Aesthetic vote rows")
@click.option("--images", type=_Dir, default=None, help="Images for --labels")
@click.option(
    "--report",
    type=_OutPath,
    default=Path("evaluation.json"),
    show_default=True,
    help="JSON report (confusion PNG next to it)",
)
@DEVICE
@BACKEND
def evaluate_cmd(
    checkpoint: str | None,
    data: Path | None,
    labels: Path | None,
    images: Path | None,
    report: Path,
    device: str,
    backend: str,
) -> None:
    """Tagger top-1 / per-class P,R / confusion PNG; aesthetics LCC, SRCC, EMD, 2-class accuracy."""
    from .evaluate import evaluate

    _print(
        evaluate(
            checkpoint,
            data_dir=data,
            labels=labels,
            images_dir=images,
            report_path=report,
            device=device,
            backend=backend,
        )
    )


@click.command("explain")
@click.argument("images", nargs=-1, required=True, type=_File)
@CHECKPOINT
@click.option("--area", multiple=True, help="Also draw the map of this area (repeatable)")
@click.option("--out", type=_OutPath, default=Path("cams"), show_default=True, help="Folder for <image>_cam_<area>.png")
@DEVICE
def explain_cmd(
    images: tuple[Path, ...], checkpoint: str | None, area: tuple[str, ...], out: Path, device: str
) -> None:
    """CAM heatmaps of the area head over each image, for the predicted area and any --area."""
    from .cam import explain

    _print(explain(checkpoint, list(images), out, areas=list(area) or None, device=device))


@click.command("export")
@click.option("--out", type=_OutPath, default=Path("galleryrank.onnx"), show_default=True)
@CHECKPOINT
@click.option("--opset", type=int, default=17, show_default=True)
@click.option(
    "--max-abs-diff",
    type=float,
    default=1e-3,
    show_default=True,
    help="Fail when ONNX Runtime differs more from PyTorch fp32",
)
@click.option(
    "--triton",
    type=_OutPath,
    default=None,
    help="Write a Triton model repository here instead (DIR/galleryrank/config.pbtxt + 1/model.onnx)",
)
def export_cmd(out: Path, checkpoint: str | None, opset: int, max_abs_diff: float, triton: Path | None) -> None:
    """Export the scoring graph to ONNX and check parity with PyTorch (max abs diff printed)."""
    if triton is not None:
        from .triton import write_repository

        result = write_repository(checkpoint, triton, opset=opset)
    else:
        from .export import export_onnx

        result = export_onnx(checkpoint, out, opset=opset)
    _print(result)
    if result["max_abs_diff"]["max"] > max_abs_diff:
        raise click.exceptions.Exit(1)


@click.group(help="Train, evaluate, explain and export galleryrank models.")
def models_app() -> None:
    """The model commands as one group, for `python -m galleryrank.models.cli` and tests."""


for _command in (train_group, evaluate_cmd, explain_cmd, export_cmd):
    models_app.add_command(_command)


if __name__ == "__main__":
    models_app()
