"""galleryrank models: one CNN pass for aesthetics, area and embedding; training, evaluation, CAM, export.

Serving needs only ``preprocess_image`` and ``load_scoring_model``; training, evaluation,
explanation and export live in ``models.train``, ``models.evaluate``, ``models.cam`` and
``models.export`` (CLI: ``models.cli.models_app``). See docs/models.md.
"""

from .network import GalleryNet, create_model
from .preprocess import INPUT_SIZE, preprocess_batch, preprocess_image
from .scoring import ScoreOutput, ScoringModel, load_scoring_model
from .zeroshot import DEFAULT_AREAS

__all__ = [
    "INPUT_SIZE",
    "preprocess_image",
    "preprocess_batch",
    "ScoreOutput",
    "ScoringModel",
    "load_scoring_model",
    "GalleryNet",
    "create_model",
    "DEFAULT_AREAS",
]
