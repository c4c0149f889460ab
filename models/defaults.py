"""The model a new user gets with no checkpoint: package backbone + the heads in models/heads/.

``models/heads/default.pt`` is a head-only checkpoint written by
``scripts/train_default_heads.py`` (quality head trained on synthetic distortions,
zero-shot area prior, fixed embedding projection). Until that file exists the
heads are the deterministic initialisation of ``create_model`` — the aesthetic
score is then meaningless, and ``model_version`` says ``untrained``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .checkpoint import default_model_version, load_checkpoint
from .network import GalleryNet, create_model
from .zeroshot import DEFAULT_AREAS

HEADS_DIR = Path(__file__).resolve().parent / "heads"
DEFAULT_HEADS = HEADS_DIR / "default.pt"


def load_default_model() -> tuple[GalleryNet, str]:
    """(model in eval mode, model_version)."""
    if DEFAULT_HEADS.exists():
        model, meta = load_checkpoint(DEFAULT_HEADS)
        return model, meta["model_version"]
    model = create_model("efficientnet_lite0", DEFAULT_AREAS, area_head="zeroshot")
    return model, "untrained-" + default_model_version(model, include_backbone=False)


def load_model(checkpoint: str | None = None) -> tuple[GalleryNet, str]:
    """(model in eval mode, model_version) of a checkpoint file, or of the default model when None."""
    if checkpoint is None:
        return load_default_model()
    model, meta = load_checkpoint(os.path.expanduser(checkpoint))
    return model, meta["model_version"]
