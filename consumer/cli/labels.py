"""`galleryrank labels suspects|export|evidence|tasks|import` (docs/labelling.md).

    galleryrank labels export --out data/labels           # labels topic -> DIR/{train,test}/..., manifest.json
    galleryrank labels suspects --data data/labels        # likely label errors + duplicates -> review queue
    galleryrank labels evidence --export data/labels --out runs/evidence   # train, new vs live, learning curve
    galleryrank labels tasks --out tasks.json             # Label Studio import JSON (+ label_config.xml)
    galleryrank labels import export.json                 # a Label Studio JSON export -> label events

The commands that reach Kafka or Redis take the settings they read as flags (options.py).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

from .options import SettingsCommand, settings, split_settings

_OutDir = click.Path(file_okay=False, path_type=Path)
_Dir = click.Path(exists=True, file_okay=False, path_type=Path)


def _print(result: dict[str, Any]) -> None:
    click.echo(json.dumps(result, indent=2, default=str))


@click.group(
    "labels", help="Reviewers' labels: export training data, find label errors, promote with evidence, Label Studio."
)
def labels() -> None:
    pass


@labels.command("export", cls=SettingsCommand)
@click.option("--out", type=_OutDir, required=True, help="New folder for the export")
@click.option(
    "--test-fraction", type=click.FloatRange(0, 0.9), default=0.2, show_default=True, help="Share of hotels held out"
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the hotel split")
@click.option(
    "--min-agreement",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Least reviewer agreement for an area folder",
)
@settings("kafka", "labels_topic", "download", "max_image_pixels")
def export_cmd(out: Path, test_fraction: float, seed: int, min_agreement: float, **kwargs: Any) -> None:
    """Read the labels topic, aggregate per photo, download each photo once, write train/test sets by hotel."""
    cfg, _ = split_settings(kwargs)
    from ..labels.export import ExportOptions, export_labels
    from ..labels.reader import LabelReadError, read_labels

    async def run() -> dict[str, Any]:
        read = await read_labels(cfg)
        return await export_labels(cfg, read, out, ExportOptions(test_fraction, seed, min_agreement))

    try:
        manifest = asyncio.run(run())
    except (LabelReadError, FileExistsError) as exc:
        raise click.ClickException(str(exc)) from None
    _print(
        {k: manifest[k] for k in ("summary", "split", "areas", "failed_downloads", "undecodable", "records_skipped")}
    )
    click.echo(f"wrote {out}/manifest.json; train: galleryrank train tagger --data {out}/train/areas", err=True)


@labels.command("suspects", cls=SettingsCommand)
@click.option("--data", type=_Dir, required=True, help="An export folder (manifest.json) or DATA/<area>/*.jpg")
@click.option(
    "--out", type=_OutDir, default=Path("suspects"), show_default=True, help="Folder for suspects.json and suspects.png"
)
@click.option("--folds", type=click.IntRange(2), default=5, show_default=True, help="Out-of-fold folds")
@click.option(
    "--queue/--no-queue", default=True, show_default=True, help="Replace the review queue's suspects in Redis"
)
@click.option("--cache-dir", default=None, help="Feature cache folder (default ~/.cache/galleryrank)")
@click.option("--progress/--no-progress", default=True, show_default=True)
@settings("redis")
def suspects_cmd(
    data: Path, out: Path, folds: int, queue: bool, cache_dir: str | None, progress: bool, **kwargs: Any
) -> None:
    """Out-of-fold predictions + confident learning (cleanlab): photos whose label is probably wrong; duplicates across classes and splits."""
    cfg, _ = split_settings(kwargs)
    from ..labels.sheet import contact_sheet
    from ..labels.suspects import find_suspects, photos_from_dir, queue_scores, sheet_items, write_queue

    photos = photos_from_dir(data)
    report = find_suspects(photos, folds=folds, cache_dir=cache_dir, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    sheet = contact_sheet(sheet_items(report), out / "suspects.png")
    report["contact_sheet"] = str(sheet) if sheet else None
    scores = queue_scores(report, photos)
    if queue:
        from ..runtime import redis_client

        async def push() -> int:
            redis = redis_client(cfg)
            try:
                return await write_queue(redis, scores)
            finally:
                await redis.aclose()

        report["queued"] = asyncio.run(push())
    (out / "suspects.json").write_text(json.dumps(report, indent=2))
    _print(
        {k: v for k, v in report.items() if k not in ("label_issues", "duplicates")}
        | {
            "label_issues": len(report["label_issues"]),
            "duplicate_groups": len(report["duplicates"]),
            "top": report["label_issues"][:10],
        }
    )


@labels.command("evidence", cls=SettingsCommand)
@click.option("--export", "export_dir", type=_Dir, required=True, help="Folder written by `labels export`")
@click.option("--out", type=_OutDir, default=Path("runs/evidence"), show_default=True)
@click.option("--live-checkpoint", default=None, help="The live model to beat [default: the shipped model]")
@click.option(
    "--fractions", default="0.25,0.5,1", show_default=True, help="Shares of the training labels for the learning curve"
)
@click.option("--epochs-heads", type=int, default=None, help="Phase 1 epochs (default 5)")
@click.option("--epochs-all", type=int, default=0, show_default=True, help="Phase 2 epochs (all layers; slow on CPU)")
@click.option(
    "--feature-views",
    type=click.IntRange(0),
    default=None,
    help="Augmented views per photo in the feature cache (default 3)",
)
@click.option("--cache-dir", default=None, help="Feature cache folder (default ~/.cache/galleryrank)")
@click.option("--seed", type=int, default=0, show_default=True)
@settings("device")
def evidence_cmd(
    export_dir: Path,
    out: Path,
    live_checkpoint: str | None,
    fractions: str,
    epochs_heads: int | None,
    epochs_all: int,
    feature_views: int | None,
    cache_dir: str | None,
    seed: int,
    **kwargs: Any,
) -> None:
    """Train on the export's train split; new vs live on the held-out hotels; learning curve at 25/50/100 %."""
    import logging

    from ..labels.evidence import run_evidence

    cfg, _ = split_settings(kwargs)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    opts: dict[str, Any] = {"epochs_all": epochs_all, "device": cfg.device, "seed": seed}
    if epochs_heads is not None:
        opts["epochs_heads"] = epochs_heads
    if cache_dir:
        opts["cache_dir"] = cache_dir
    if feature_views is not None:
        opts["feature_views"] = feature_views
    try:
        shares = tuple(float(f) for f in fractions.split(","))
    except ValueError:
        raise click.BadParameter("comma-separated numbers in (0, 1]", param_hint="--fractions") from None
    result = run_evidence(
        export_dir, out, live_checkpoint=live_checkpoint, fractions=shares, seed=seed, train_options=opts
    )
    brief = {k: result[k] for k in ("classes", "train_photos", "test_photos", "candidate", "delta_top1", "next")}
    brief["live_top1"] = result["live"]["areas"]["top1"]
    brief["new_top1"] = result["new"]["areas"]["top1"]
    brief["learning_curve"] = [(c["labels"], c["top1"]) for c in result["learning_curve"]]
    _print(brief)
    click.echo(f"wrote {out}/evidence.json, {out}/learning_curve.png", err=True)


@labels.command("tasks", cls=SettingsCommand)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Label Studio import JSON")
@click.option(
    "--hotel", "hotels", multiple=True, help="Hotel id (repeatable) [default: every hotel of the active namespace]"
)
@click.option("--limit", type=click.IntRange(1), default=None, help="At most this many tasks (the most useful first)")
@click.option("--area", "areas", multiple=True, help="Area choices (repeatable) [default: the model's areas]")
@settings("redis", "ranking", "review_raters")
def tasks_cmd(out: Path, hotels: tuple[str, ...], limit: int | None, areas: tuple[str, ...], **kwargs: Any) -> None:
    """Label Studio tasks in review-queue order: URL, area choices, rating, the model's areas as pre-annotations."""
    cfg, _ = split_settings(kwargs)
    import orjson

    from ..api.review_queue import queue_items
    from ..bluegreen.namespaces import active_namespace
    from ..labels.studio import label_config, queue_tasks
    from ..runtime import redis_client
    from ..state import hotel_index, keys
    from ..state.document import ranking_config
    from ..state.hotel import HotelState

    async def collect() -> list[dict[str, Any]]:
        redis = redis_client(cfg)
        config = ranking_config(cfg.ranking_strategy, cfg.ranking_diversity)
        items: list[dict[str, Any]] = []
        try:
            ns = await active_namespace(redis)
            for h in list(hotels) or await hotel_index.members(redis, ns):
                pipe = redis.pipeline(transaction=False)
                pipe.hgetall(keys.images_key(ns, h))
                pipe.get(keys.overrides_key(ns, h))
                pipe.get(keys.version_key(ns, h))
                pipe.get(keys.gallery_key(ns, h))
                fields, overrides, version, document = await pipe.execute()
                if document is None:
                    continue
                members = [f"{h} {k.decode()}" for k in fields]
                scores = await redis.zmscore(keys.LABEL_SUSPECTS_KEY, members) if members else []
                suspects = {m.split(" ", 1)[1]: float(v) for m, v in zip(members, scores) if v is not None}
                state = HotelState.from_redis(h, config, fields, overrides, version, document)
                # no reviewer yet (the campaign's annotators are Label Studio's): nobody is excluded
                items += queue_items(state, orjson.loads(document), suspects, "", set(), cfg.review_raters)
            return items
        finally:
            await redis.aclose()

    items = asyncio.run(collect())
    tasks = queue_tasks(items, limit)
    if not areas:
        areas = tuple(sorted({a for it in items for a in it.get("areas", [])}))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(tasks, indent=2))
    config_file = out.with_name("label_config.xml")
    config_file.write_text(label_config(areas))
    click.echo(f"{len(tasks)} tasks -> {out}; labelling config -> {config_file}", err=True)


@labels.command("import", cls=SettingsCommand)
@click.argument("export_json", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--area", "areas", multiple=True, help="Accept only these areas (repeatable) [default: any area name]")
@click.option("--dry-run", is_flag=True, help="Parse and count, publish nothing")
@settings("kafka", "labels_topic")
def import_cmd(export_json: Path, areas: tuple[str, ...], dry_run: bool, **kwargs: Any) -> None:
    """Read a Label Studio JSON export into label events on the labels topic."""
    cfg, _ = split_settings(kwargs)
    from ..labels.studio import import_export
    from ..stream.produce import publish

    try:
        tasks = json.loads(export_json.read_text())
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{export_json} is not JSON: {exc}") from None
    if not isinstance(tasks, list):
        raise click.ClickException(f"{export_json}: expected Label Studio's JSON export (a list of tasks)")
    result = import_export(tasks, set(areas) if areas else None)
    if not dry_run and result.events:
        asyncio.run(publish(cfg, result.events, topic=cfg.labels_topic))
    where = "not published (--dry-run)" if dry_run else f"published to {cfg.labels_topic}"
    _print({"events": len(result.events), "skipped": dict(result.skipped), "published": not dry_run})
    click.echo(f"{len(result.events)} label events {where}", err=True)
    if not result.events and result.skipped:
        sys.exit(1)
