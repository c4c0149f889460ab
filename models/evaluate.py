"""``galleryrank evaluate``: score a labelled set with a checkpoint and write a JSON report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, cast

import numpy as np

from .data import Sample, open_image, scan_aesthetic, scan_tagger_folder
from .metrics import aesthetic_report, classification_report, plot_confusion
from .preprocess import preprocess_image
from .scoring import ScoreOutput, ScoringModel, load_scoring_model


def score_samples(model: ScoringModel, samples: list[Sample], batch_size: int = 32) -> ScoreOutput:
    """Serving preprocessing + ``ScoringModel.score`` over files, in batches."""
    parts = []
    for i in range(0, len(samples), batch_size):
        batch = np.stack([preprocess_image(open_image(s.path), model.input_size) for s in samples[i : i + batch_size]])
        parts.append(model.score(batch))
    return ScoreOutput(
        *(
            np.concatenate([getattr(p, f) for p in parts])
            for f in ("aesthetic_dist", "aesthetic", "area_probs", "embedding")
        )
    )


def evaluate(
    checkpoint: str | None,
    *,
    data_dir: str | Path | None = None,
    labels: str | Path | None = None,
    images_dir: str | Path | None = None,
    report_path: str | Path = "evaluation.json",
    device: str = "cpu",
    backend: str = "torch",
    batch_size: int = 32,
) -> dict[str, Any]:
    """Tagger metrics on ``data_dir/<area>/`` and/or aesthetic metrics on ``labels`` + ``images_dir``.

    Writes the JSON report to ``report_path`` and the tagger confusion matrix next to it
    (``<report>.confusion.png``); returns the report.
    """
    if data_dir is None and labels is None:
        raise ValueError("give data_dir (tagger) and/or labels + images_dir (aesthetic)")
    t0 = time.perf_counter()
    model = load_scoring_model(checkpoint, device=device, backend=backend)
    report: dict[str, Any] = {
        "checkpoint": checkpoint or "default",
        "model_version": model.model_version,
        "backend": model.backend,
    }
    report_path = Path(report_path)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    if data_dir is not None:
        samples, classes = scan_tagger_folder(data_dir)
        unknown = [c for c in classes if c not in model.areas]
        if unknown:
            raise ValueError(f"folders {unknown} are not areas of this model ({model.areas})")
        out = score_samples(model, samples, batch_size)
        y_true = np.array([model.areas.index(classes[cast(int, s.label)]) for s in samples])  # tagger samples: labelled
        tag = classification_report(y_true, out.area_probs.argmax(1), model.areas)
        png = report_path.with_suffix(".confusion.png")
        plot_confusion(np.array(tag["confusion_matrix"]), model.areas, png, f"area tagger\n{model.model_version}")
        tag["confusion_png"] = str(png)
        report["tagger"] = tag
    if labels is not None:
        if images_dir is None:
            raise ValueError("labels needs images_dir")
        samples, missing = scan_aesthetic(labels, images_dir)
        out = score_samples(model, samples, batch_size)
        votes = np.array([s.votes for s in samples], dtype=np.float64)
        report["aesthetic"] = {
            **aesthetic_report(out.aesthetic_dist.astype(np.float64), votes / votes.sum(1, keepdims=True)),
            "rows_without_image": missing,
        }
    report["seconds"] = round(time.perf_counter() - t0, 2)
    report_path.write_text(json.dumps(report, indent=2))
    report["report_path"] = str(report_path)
    return report
