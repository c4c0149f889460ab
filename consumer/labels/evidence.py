"""Promote with evidence: train on an export's train split, measure new against live on its
held-out hotels, and a learning curve (the held-out figure at 25 / 50 / 100 % of the labels).

The candidate is the tagger trained on 100 % of the area labels; when the export has ratings
the aesthetic head is trained on top of it (init from the tagger), so one checkpoint carries
both. Both models score the same held-out photos with the serving preprocessing
(models/evaluate.py). What follows is today's sequence: replay into a namespace with the
candidate, compare it with the live one, promote (docs/labelling.md, docs/operations.md).
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any, cast

import numpy as np

DEFAULT_FRACTIONS = (0.25, 0.5, 1.0)


def _subset(samples: list[Any], fraction: float, seed: int) -> list[Any]:
    """A stratified, seeded share of the samples (each area keeps at least two photos); nested:
    the 25 % subset is inside the 50 % one."""
    by_label: dict[int, list[Any]] = {}
    for s in samples:
        by_label.setdefault(s.label, []).append(s)
    out = []
    for label in sorted(by_label):
        group = sorted(by_label[label], key=lambda s: str(s.path))
        random.Random(f"{seed}-{label}").shuffle(group)
        out += group[: max(min(2, len(group)), math.ceil(fraction * len(group)))]
    return out


def area_figures(checkpoint: str | None, samples: list[Any], names: list[str], report_png: Path) -> dict[str, Any]:
    """Top-1 per area and the confusion matrix of ``checkpoint`` (None: the shipped model) on
    labelled samples; labels the model has no area for count as wrong (and are counted)."""
    from galleryrank.models.evaluate import score_samples
    from galleryrank.models.metrics import classification_report, plot_confusion
    from galleryrank.models.scoring import load_scoring_model

    model = load_scoring_model(checkpoint, device="cpu", backend="torch")
    out = score_samples(model, samples)
    space = list(dict.fromkeys([*names, *model.areas]))
    y_true = np.array([space.index(names[s.label]) for s in samples])
    y_pred = np.array([space.index(model.areas[i]) for i in out.area_probs.argmax(1)])
    rep = classification_report(y_true, y_pred, space)
    plot_confusion(np.array(rep["confusion_matrix"]), space, report_png, f"held-out areas\n{model.model_version}")
    per_area = {
        n: round(float((y_pred[y_true == i] == i).mean()), 4) for i, n in enumerate(names) if (y_true == i).any()
    }
    return {
        "model_version": model.model_version,
        "top1": round(float((y_true == y_pred).mean()), 4),
        "top1_per_area": per_area,
        "labels_without_area_in_model": int(sum(names[s.label] not in model.areas for s in samples)),
        "classes": space,
        "confusion_matrix": rep["confusion_matrix"],
        "confusion_png": str(report_png),
    }


def rating_figures(checkpoint: str | None, samples: list[Any]) -> dict[str, Any]:
    """SRCC / LCC / EMD / 2-class accuracy (models/metrics.py) and good-vs-poor ROC AUC (true mean >= 5)."""
    from sklearn.metrics import roc_auc_score

    from galleryrank.models.evaluate import score_samples
    from galleryrank.models.metrics import aesthetic_report
    from galleryrank.models.scoring import load_scoring_model

    model = load_scoring_model(checkpoint, device="cpu", backend="torch")
    out = score_samples(model, samples)
    votes = np.array([s.votes for s in samples], dtype=np.float64)
    true = votes / votes.sum(1, keepdims=True)
    rep = aesthetic_report(out.aesthetic_dist.astype(np.float64), true)
    good = true @ np.arange(1, 11) >= 5.0
    rep["auc_good_vs_poor"] = float(roc_auc_score(good, out.aesthetic)) if 0 < good.sum() < len(good) else None
    rep["model_version"] = model.model_version
    rep["photos"] = len(samples)
    return rep


def _plot_curve(curve: list[dict[str, Any]], baseline: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    done = [c for c in curve if c["top1"] is not None]
    ax.plot([c["labels"] for c in done], [c["top1"] for c in done], "o-", label="retrained (held-out top-1)")
    ax.axhline(baseline, color="grey", linestyle="--", label="live model, same photos")
    ax.set_xlabel("area labels used for training")
    ax.set_ylabel("held-out top-1")
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def run_evidence(
    export_dir: Path,
    out: Path,
    *,
    live_checkpoint: str | None = None,
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS,
    seed: int = 0,
    train_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train (per fraction), evaluate new vs live on the held-out split, write ``out/evidence.json``."""
    from galleryrank.models.data import Sample, scan_aesthetic, scan_tagger_folder
    from galleryrank.models.train import TrainConfig, fit, train_aesthetic

    t0 = time.perf_counter()
    opts = {"epochs_all": 0, "progress": False, **(train_options or {})}
    out.mkdir(parents=True, exist_ok=True)
    train_samples, classes = scan_tagger_folder(export_dir / "train" / "areas")
    test_all, test_classes = scan_tagger_folder(export_dir / "test" / "areas")
    # held-out photos of areas the training split has no photo of cannot be named by the new model:
    # they are left out of both sides and counted
    test = [
        Sample(s.path, label=classes.index(test_classes[cast(int, s.label)]))
        for s in test_all
        if test_classes[cast(int, s.label)] in classes  # tagger samples are labelled
    ]
    result: dict[str, Any] = {
        "export": str(export_dir),
        "classes": classes,
        "train_photos": len(train_samples),
        "test_photos": len(test),
        "test_photos_left_out": len(test_all) - len(test),
        "train_options": opts,
    }
    live = area_figures(live_checkpoint, test, classes, out / "live.confusion.png")
    result["live"] = {"checkpoint": live_checkpoint or "default", "areas": live}
    curve = []
    candidate = None
    for fraction in sorted(fractions):
        subset = _subset(train_samples, fraction, seed) if fraction < 1 else train_samples
        run_dir = out / f"tagger-{round(fraction * 100)}pct"
        t = time.perf_counter()
        try:
            trained = fit(
                "tagger", subset, classes, run_dir, TrainConfig(**opts), data_root=export_dir / "train" / "areas"
            )
        except ValueError as exc:  # too few distinct photos to split this share: a gap in the curve, not a failure
            if fraction >= 1:
                raise
            curve.append({"fraction": fraction, "labels": len(subset), "top1": None, "error": str(exc)})
            continue
        figures = area_figures(trained["checkpoint"], test, classes, run_dir / "test.confusion.png")
        curve.append(
            {
                "fraction": fraction,
                "labels": len(subset),
                "top1": figures["top1"],
                "top1_per_area": figures["top1_per_area"],
                "val_accuracy": trained["best_val"]["accuracy"] if trained.get("best_val") else None,
                "checkpoint": trained["checkpoint"],
                "train_seconds": round(time.perf_counter() - t, 1),
            }
        )
        if fraction >= 1:
            candidate, result["new"] = trained["checkpoint"], {"checkpoint": trained["checkpoint"], "areas": figures}
    result["learning_curve"] = curve
    _plot_curve(curve, live["top1"], out / "learning_curve.png")
    result["learning_curve_png"] = str(out / "learning_curve.png")

    votes_train, votes_test = export_dir / "train" / "votes.txt", export_dir / "test" / "votes.txt"
    if votes_train.exists() and votes_test.exists():
        trained = train_aesthetic(
            votes_train, export_dir / "train" / "images", out / "aesthetic", **{**opts, "init_checkpoint": candidate}
        )
        candidate = trained["checkpoint"]
        rated, _ = scan_aesthetic(votes_test, export_dir / "test" / "images")
        result["live"]["ratings"] = rating_figures(live_checkpoint, rated)
        result["new"]["ratings"] = rating_figures(candidate, rated)
        result["new"]["checkpoint"] = candidate
    result["candidate"] = candidate
    result["delta_top1"] = round(result["new"]["areas"]["top1"] - live["top1"], 4) if "new" in result else None
    result["next"] = [
        f"galleryrank replay --namespace <new> --checkpoint {candidate}",
        "galleryrank compare <active> <new>",
        "galleryrank promote <new>",
    ]
    result["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "evidence.json").write_text(json.dumps(result, indent=2, default=str))
    return result
