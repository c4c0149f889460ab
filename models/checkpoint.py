"""Checkpoints that carry everything needed to serve them.

A checkpoint is one ``torch.save`` dict: backbone name and where its weights come
from, the area classes, the preprocessing contract, head shapes, ``model_version``,
the training-data fingerprint and the state dict (heads only when the backbone is
the unmodified package one, everything after fine-tuning).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from pathlib import Path
from typing import Any

import torch

from .backbones import DEFAULT_WEIGHTS
from .network import GalleryNet, create_model
from .zeroshot import IMAGENET_TO_AREA

FORMAT = "galleryrank.checkpoint"
FORMAT_VERSION = 1
PREPROCESSING = "RGB, squash-resize bilinear to input_size, uint8 NCHW; mean/std applied inside the network"


class CheckpointError(ValueError):
    pass


def state_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """sha256 over names, shapes and bytes of a state dict (stable key order)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def head_state(model: GalleryNet) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}


def default_model_version(model: GalleryNet, include_backbone: bool) -> str:
    state = model.state_dict() if include_backbone else head_state(model)
    return f"{model.backbone_name}-{model.area_head_kind}-{state_fingerprint(state)[:12]}"


def describe(model: GalleryNet) -> dict[str, Any]:
    """The serving contract of a model, as stored in its checkpoint."""
    return {
        "backbone": model.backbone_name,
        "areas": list(model.areas),
        "area_head": model.area_head_kind,
        "embedding_dim": model.embedding_dim,
        "preprocessing": {
            "input_size": model.input_size,
            "mean": list(model.mean),
            "std": list(model.std),
            "description": PREPROCESSING,
        },
        "head_shapes": {k: list(v.shape) for k, v in head_state(model).items()},
    }


def save_checkpoint(
    model: GalleryNet,
    path: str | Path,
    *,
    include_backbone: bool = True,
    model_version: str | None = None,
    data_fingerprint: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``path`` atomically; returns the metadata written (without the state dict)."""
    state = model.state_dict() if include_backbone else head_state(model)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **describe(model),
        "backbone_weights": "included" if include_backbone else "package",
        "zeroshot_table": IMAGENET_TO_AREA if model.area_head_kind == "zeroshot" else None,
        "model_version": model_version or default_model_version(model, include_backbone),
        "data_fingerprint": data_fingerprint,
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "torch_version": str(torch.__version__),
        "extra": extra or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({**meta, "state_dict": {k: v.detach().cpu() for k, v in state.items()}}, tmp)
    tmp.replace(path)
    return meta


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a galleryrank checkpoint")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {ckpt['format_version']} is newer than this code")
    return ckpt


# tensors added with the in-graph quality features and the calibrated area prior (0.2)
_NEUTRAL_WHEN_MISSING = ("quality_features.", "aesthetic_blend.", "area_head.area_bias", "area_head.temperature")


def _upgrade_state(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Checkpoints written before the quality features still load and score as they did: the
    aesthetic head's new quality inputs get zero weights, the rest its neutral values."""
    state = dict(state)
    key = "aesthetic_head.1.weight"
    if key in state and key in expected and state[key].shape[1] < expected[key].shape[1]:
        w = state[key]
        state[key] = torch.cat([w, w.new_zeros(w.shape[0], expected[key].shape[1] - w.shape[1])], dim=1)
    for k, v in expected.items():
        if k not in state and k.startswith(_NEUTRAL_WHEN_MISSING):
            # the raw prior of 0.1 (bias 0, temperature 1), not today's calibration: old tables differ
            state[k] = (
                torch.zeros_like(v)
                if k.endswith("area_bias")
                else (torch.ones_like(v) if k.endswith("temperature") else v.clone())
            )
    return state


def load_checkpoint(
    path: str | Path, backbone_weights: str | None = DEFAULT_WEIGHTS
) -> tuple[GalleryNet, dict[str, Any]]:
    """Rebuild the model a checkpoint describes; returns (model in eval mode, metadata).

    ``backbone_weights`` is used only for head-only checkpoints ("default" = package weights).
    """
    ckpt = read_checkpoint(path)
    included = ckpt["backbone_weights"] == "included"
    model = create_model(
        ckpt["backbone"],
        ckpt["areas"],
        weights=None if included else backbone_weights,
        area_head=ckpt["area_head"],
        embedding_dim=ckpt["embedding_dim"],
    )
    expected = model.state_dict() if included else head_state(model)
    state = _upgrade_state(ckpt["state_dict"], expected)
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    if missing or unexpected:
        raise CheckpointError(f"{path}: missing tensors {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    for k, v in state.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointError(f"{path}: {k} has shape {tuple(v.shape)}, model needs {tuple(expected[k].shape)}")
    model.load_state_dict(state, strict=included)
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model.eval(), meta
