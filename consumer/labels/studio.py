"""Label Studio I/O for labelling campaigns (its documented JSON formats).

Tasks (``galleryrank labels tasks``): Label Studio's basic import format, one task per photo in
review-queue order (consumer/api/review_queue.py),

    {"data": {"image": URL, "hotel_id": ..., "image_id": ..., "model_version": ...},
     "predictions": [{"model_version": ..., "score": p,
                      "result": [{"from_name": "area", "to_name": "image", "type": "choices",
                                  "value": {"choices": [AREA]}}]}]}

with the labelling config that names those controls (``label_config``: an Image, a single
Choices ``area`` over the model's areas plus ``not_property``, a 10-star Rating ``rating``).

Import (``galleryrank labels import``): a Label Studio JSON export (a list of tasks, each with
``annotations``: ``result`` items of type ``choices`` / ``rating``, ``completed_by`` an id or a
user object, ``was_cancelled``) becomes label events. Event ids derive from the project, task,
annotation and kind, so importing the same export twice publishes events the scorer and the
export already count once.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import quoteattr

from ..stream.events import NOT_PROPERTY, InvalidEvent, LabelArea, LabelEvent, LabelRating, encode_event, parse_event

AREA_CONTROL, RATING_CONTROL, IMAGE_OBJECT = "area", "rating", "image"
REVIEWER_PREFIX = "labelstudio-"


def label_config(areas: Iterable[str]) -> str:
    """The Label Studio labelling config (XML) the tasks are written for."""
    choices = "\n".join(f"    <Choice value={quoteattr(a)}/>" for a in [*areas, NOT_PROPERTY])
    return (
        "<View>\n"
        f'  <Image name="{IMAGE_OBJECT}" value="$image"/>\n'
        f'  <Choices name="{AREA_CONTROL}" toName="{IMAGE_OBJECT}" choice="single" showInline="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        f'  <Rating name="{RATING_CONTROL}" toName="{IMAGE_OBJECT}" maxRating="10"/>\n'
        "</View>\n"
    )


def task(
    hotel_id: str, image_id: str, url: str, model_version: str, area: str | None, confidence: float | None
) -> dict[str, Any]:
    """One Label Studio task; the model's area as a pre-annotation (prediction) when it has one."""
    t: dict[str, Any] = {
        "data": {"image": url, "hotel_id": hotel_id, "image_id": image_id, "model_version": model_version}
    }
    if area:
        t["predictions"] = [
            {
                "model_version": model_version,
                "score": float(confidence) if confidence is not None else None,
                "result": [
                    {
                        "from_name": AREA_CONTROL,
                        "to_name": IMAGE_OBJECT,
                        "type": "choices",
                        "value": {"choices": [area]},
                    }
                ],
            }
        ]
    return t


@dataclass
class ImportResult:
    events: list[LabelEvent] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


def _reviewer(completed_by: Any) -> str | None:
    """Label Studio writes the annotator as a user id, or (newer exports) a user object."""
    if isinstance(completed_by, dict):
        completed_by = completed_by.get("id", completed_by.get("email"))
    if completed_by is None or isinstance(completed_by, bool):
        return None
    return (
        REVIEWER_PREFIX + hashlib.sha256(str(completed_by).encode()).hexdigest()[:12]
        if "@" in str(completed_by)
        else f"{REVIEWER_PREFIX}{completed_by}"
    )


def _event_id(project: Any, task_id: Any, annotation_id: Any, kind: str) -> str:
    digest = hashlib.sha256(f"{project}\x00{task_id}\x00{annotation_id}\x00{kind}".encode()).hexdigest()[:24]
    return f"ls-{digest}"


def import_export(tasks: list[dict[str, Any]], areas: set[str] | None = None) -> ImportResult:
    """Label events from a Label Studio JSON export; every event is checked by the consumer's parser."""
    result = ImportResult()
    for t in tasks:
        data = t.get("data") or {}
        hotel_id, image_id, url = data.get("hotel_id"), data.get("image_id"), data.get("image")
        if not (isinstance(hotel_id, str) and isinstance(image_id, str) and isinstance(url, str)):
            result.skipped["task_without_hotel_image_url"] += 1
            continue
        model_version = str(data.get("model_version") or "labelstudio")
        for ann in t.get("annotations") or []:
            if ann.get("was_cancelled"):
                result.skipped["cancelled"] += 1
                continue
            reviewer = _reviewer(ann.get("completed_by"))
            if reviewer is None:
                result.skipped["no_annotator"] += 1
                continue
            at = ann.get("updated_at") or ann.get("created_at")
            for item in ann.get("result") or []:
                kind, value = item.get("type"), item.get("value") or {}
                if kind == "choices" and item.get("from_name") == AREA_CONTROL and value.get("choices"):
                    area = value["choices"][0]
                    if areas is not None and area not in areas and area != NOT_PROPERTY:
                        result.skipped["unknown_area"] += 1
                        continue
                    ev: LabelEvent = LabelArea(
                        _event_id(t.get("project"), t.get("id"), ann.get("id"), "area"),
                        hotel_id,
                        image_id,
                        reviewer,
                        model_version,
                        url,
                        area,
                        at,
                    )
                elif kind == "rating" and item.get("from_name") == RATING_CONTROL and "rating" in value:
                    ev = LabelRating(
                        _event_id(t.get("project"), t.get("id"), ann.get("id"), "rating"),
                        hotel_id,
                        image_id,
                        reviewer,
                        model_version,
                        url,
                        value["rating"],
                        at,
                    )
                else:
                    result.skipped[f"result_{kind}"] += 1
                    continue
                checked = parse_event(*encode_event(ev))
                if isinstance(checked, InvalidEvent):
                    result.skipped[checked.reason] += 1
                    continue
                result.events.append(checked)  # type: ignore[arg-type]  # a label in, a label out
    return result


def queue_tasks(items: list[dict[str, Any]], limit: int | None = None) -> list[dict[str, Any]]:
    """Tasks in review-queue order: ``items`` are the review queue's photos (consumer/api/review_queue.py
    ``queue_items``, any number of hotels), best first by its expected value; the model's own area
    (not a reviewer's correction) is the pre-annotation."""
    ordered = sorted(items, key=lambda it: (-it["score"], it["hotel_id"], it["position"]))
    tasks = []
    for it in ordered[:limit] if limit else ordered:
        t = task(
            it["hotel_id"],
            it["image_id"],
            it["url"],
            it.get("model_version") or "",
            it.get("model_area"),
            it.get("area_confidence"),
        )
        t["data"]["why"] = ", ".join(it.get("why", []))
        tasks.append(t)
    return tasks
