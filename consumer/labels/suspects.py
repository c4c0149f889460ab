"""`galleryrank labels suspects`: photos whose label is probably wrong, and duplicates that leak.

1. Out-of-fold predictions: the frozen backbone's pooled features of each labelled photo (the
   training feature cache, models/features.py: computed once, reused by training), a
   standardised logistic regression fitted in k stratified folds, so each photo is predicted
   by a model that never saw its label.
2. Confident learning (cleanlab's ``find_label_issues``, Northcutt et al. 2021) on those
   predictions: the photos whose given label is out of line with the per-class thresholds,
   ranked by self-confidence. Suspicion = 1 - P(given label) from the out-of-fold model.
3. Exact and near duplicates (models/dedup.py's pHash + embedding rule, the one the training
   split uses) whose members carry different areas or sit in different splits.

The result: a JSON report, a contact-sheet PNG, and the Redis sorted set the review queue
reads first (keys.LABEL_SUSPECTS_KEY; member "<hotel_id> <image_id>", score = suspicion),
replaced whole on each run (one MULTI/EXEC).
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
DUPLICATE_SUSPICION = 0.5  # a duplicate that disagrees across classes: worth a look, below a clear label error


@dataclass(frozen=True)
class LabelledPhoto:
    path: Path
    area: str
    hotel_id: str | None = None
    image_id: str | None = None
    split: str | None = None

    @property
    def member(self) -> str | None:
        return f"{self.hotel_id} {self.image_id}" if self.hotel_id and self.image_id else None

    def name(self) -> str:
        return self.member or str(self.path)


def photos_from_dir(data: Path) -> list[LabelledPhoto]:
    """An export folder (manifest.json: both splits, with their hotel and image ids) or a plain
    tagger folder ``DATA/<area>/*.jpg``."""
    from galleryrank.models.data import scan_tagger_folder

    manifest = data / "manifest.json"
    if manifest.exists():
        rows = json.loads(manifest.read_text())["photos"]
        return [
            LabelledPhoto(
                data / r["split"] / "areas" / r["area"] / r["file"], r["area"], r["hotel_id"], r["image_id"], r["split"]
            )
            for r in rows
            if r.get("in_area_folder")
        ]
    samples, classes = scan_tagger_folder(data)
    return [LabelledPhoto(s.path, classes[s.label or 0]) for s in samples]


def out_of_fold_probs(x: np.ndarray, y: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """P(class | photo) for each row, predicted by a model fitted on the other folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return np.asarray(cross_val_predict(clf, x, y, cv=cv, method="predict_proba"))


def find_suspects(
    photos: list[LabelledPhoto],
    *,
    folds: int = 5,
    seed: int = 0,
    cache_dir: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The report: label issues (ranked, most suspicious first) and cross-class / cross-split duplicates."""
    import torch
    from cleanlab.filter import find_label_issues

    from galleryrank.models.dedup import duplicate_groups
    from galleryrank.models.defaults import load_default_model
    from galleryrank.models.features import cached_features

    t0 = time.perf_counter()
    model, version = load_default_model()
    feats = cached_features(model, [p.path for p in photos], views=0, cache_dir=cache_dir, progress=progress)
    pooled = feats.pooled[:, 0]
    with torch.inference_mode():
        q = model.quality_features.standardise(torch.from_numpy(feats.quality[:, 0]))
        emb = model.heads(torch.from_numpy(pooled), q)["embedding"].numpy()
    t_feat = time.perf_counter() - t0

    classes = sorted({p.area for p in photos})
    counts = {c: sum(p.area == c for p in photos) for c in classes}
    usable = [c for c in classes if counts[c] >= 2]  # a class needs two photos to be out of fold
    idx = np.array([i for i, p in enumerate(photos) if p.area in usable])
    issues: list[dict[str, Any]] = []
    k = 0
    if len(usable) >= 2:
        k = max(2, min(folds, min(counts[c] for c in usable)))
        y = np.array([usable.index(photos[i].area) for i in idx])
        probs = out_of_fold_probs(pooled[idx], y, k, seed)
        ranked = find_label_issues(y, probs, return_indices_ranked_by="self_confidence")
        for r in ranked:
            i = int(idx[r])
            issues.append(
                {
                    "photo": photos[i].name(),
                    "path": str(photos[i].path),
                    "given": photos[i].area,
                    "suggested": usable[int(probs[r].argmax())],
                    "p_given": round(float(probs[r, y[r]]), 4),
                    "suspicion": round(1.0 - float(probs[r, y[r]]), 4),
                    "split": photos[i].split,
                }
            )
        oof_accuracy = float((probs.argmax(1) == y).mean())
    else:
        oof_accuracy = float("nan")

    exact, near = duplicate_groups(feats.phash, emb)
    duplicates = []
    for kind, roots in (("exact", exact), ("near", near)):
        groups: dict[int, list[int]] = defaultdict(list)
        for i, r in enumerate(roots):
            groups[r].append(i)
        for members in groups.values():
            if len(members) < 2:
                continue
            areas = sorted({photos[i].area for i in members})
            splits = sorted({sp for i in members if (sp := photos[i].split)})
            if kind == "near" and all(exact[i] == exact[members[0]] for i in members):
                continue  # already reported as one exact group
            if kind == "exact" or len(areas) > 1 or len(splits) > 1:
                duplicates.append(
                    {
                        "kind": kind,
                        "across_classes": len(areas) > 1,
                        "across_splits": len(splits) > 1,
                        "areas": areas,
                        "splits": splits,
                        "photos": [photos[i].name() for i in members],
                        "paths": [str(photos[i].path) for i in members],
                    }
                )
    return {
        "photos": len(photos),
        "classes": counts,
        "classes_skipped": [c for c in classes if c not in usable],
        "folds": k,
        "out_of_fold_accuracy": round(oof_accuracy, 4),
        "feature_extractor": version,
        "seconds": {"features": round(t_feat, 1), "total": round(time.perf_counter() - t0, 1)},
        "label_issues": issues,
        "duplicates": duplicates,
    }


def queue_scores(report: dict[str, Any], photos: list[LabelledPhoto]) -> dict[str, float]:
    """Review-queue members -> suspicion in [0, 1] (photos without hotel/image ids are left out)."""
    by_name = {p.name(): p for p in photos}
    scores: dict[str, float] = {}
    for issue in report["label_issues"]:
        m = by_name[issue["photo"]].member
        if m:
            scores[m] = max(scores.get(m, 0.0), issue["suspicion"])
    for group in report["duplicates"]:
        if not (group["across_classes"] or group["across_splits"]):
            continue
        for name in group["photos"]:
            m = by_name[name].member
            if m:
                scores[m] = max(scores.get(m, 0.0), DUPLICATE_SUSPICION)
    return scores


async def write_queue(redis: Any, scores: dict[str, float]) -> int:
    """Replace the suspects sorted set in one step (DEL + ZADD in one MULTI/EXEC: readers see the
    old set or the new one)."""
    from ..state import keys

    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.LABEL_SUSPECTS_KEY)
        if scores:
            pipe.zadd(keys.LABEL_SUSPECTS_KEY, scores)
        await pipe.execute()
    return len(scores)


def sheet_items(report: dict[str, Any], limit: int = 60) -> list[tuple[Path, list[str]]]:
    items: list[tuple[Path, list[str]]] = []
    for issue in report["label_issues"][:limit]:
        items.append(
            (
                Path(issue["path"]),
                [f"given {issue['given']}", f"model {issue['suggested']}", f"p={issue['p_given']:.2f}"],
            )
        )
    for n, group in enumerate(report["duplicates"]):
        if len(items) >= limit:
            break
        tag = "class" if group["across_classes"] else ("split" if group["across_splits"] else "copy")
        for path in group["paths"][:4]:
            items.append((Path(path), [f"dup #{n} {group['kind']} ({tag})", "/".join(group["areas"])[:30]]))
    return items[:limit]
