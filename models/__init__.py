"""galleryrank models: one CNN pass for aesthetics, area and embedding; training, evaluation, CAM, export."""

from models.preprocess import INPUT_SIZE, preprocess_batch, preprocess_image
from models.scoring import ScoreOutput, ScoringModel, load_scoring_model

__all__ = [
    "INPUT_SIZE", "preprocess_image", "preprocess_batch",
    "ScoreOutput", "ScoringModel", "load_scoring_model",
]
