"""`galleryrank publish`: score an existing catalogue (docs/operations.md, "Score your existing photos")."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from ..logs import setup_logging
from .options import settings, split_settings


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "jsonl", "parquet"]), default=None, help="[default: by file suffix]"
)
@click.option("--hotel-column", default="hotel_id", show_default=True, help="Column holding the hotel id")
@click.option("--image-column", default="image_id", show_default=True, help="Column holding the image id")
@click.option("--url-column", default="url", show_default=True, help="Column holding the photo's URL")
@click.option(
    "--occurred-at-column",
    default="occurred_at",
    show_default=True,
    help="Optional column with the photo's ISO-8601 time (used where present; '' = none)",
)
@click.option(
    "--as-of",
    default="file-time",
    show_default=True,
    help="occurred_at of rows without one: 'file-time' (the file's modification time, i.e. the export), "
    "an ISO-8601 time, or 'none'. A live upload of the same photo after it wins, one before it loses",
)
@click.option(
    "--to-topic",
    "to_topic",
    default=None,
    help="Topic to publish to [default: the backfill topic, --backfill-topic / '<topic>.backfill']",
)
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=None, help="Events/s at most")
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("galleryrank-publish.rejects.csv"),
    show_default=True,
    help="CSV of refused rows: row, file, file_row, reason, detail",
)
@click.option(
    "--checkpoint-file",
    "checkpoint_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("galleryrank-publish.checkpoint.json"),
    show_default=True,
    help="Where the run records the last row Kafka acknowledged",
)
@click.option("--resume", is_flag=True, help="Continue after the checkpoint's last acknowledged row")
@click.option("--dry-run", is_flag=True, help="Read and validate every row, count, send nothing")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr")
@settings("kafka", "topics", "logging")
def publish(
    paths,
    fmt,
    hotel_column,
    image_column,
    url_column,
    occurred_at_column,
    as_of,
    to_topic,
    rate,
    rejects,
    checkpoint_file,
    resume,
    dry_run,
    progress,
    **kwargs,
) -> None:
    """Publish a catalogue of (hotel_id, image_id, url) rows as image.upserted events.

    PATHS: CSV, JSON Lines or Parquet files, or directories of part files. Each event_id is
    derived from (hotel, image, url), so publishing again changes nothing downstream. Rows the
    consumer would refuse go to --rejects, never to Kafka. Events go to the backfill topic,
    which the scorer consumes only in the room live uploads leave.
    """
    cfg, _ = split_settings(kwargs)
    setup_logging(cfg.log_level, cfg.log_json)
    from ..catalogue.checkpoint import CheckpointError
    from ..catalogue.publisher import PublishFailed, PublishOptions, install_stop, publish_catalogue
    from ..catalogue.rows import Columns
    from ..catalogue.sources import CatalogueError
    from ..state.records import parse_occurred_at
    from ..stream.priority import backfill_topic

    if as_of.strip().lower() not in ("file-time", "none") and parse_occurred_at(as_of) is None:
        click.echo(f"error: --as-of {as_of!r} is not 'file-time', 'none' nor an ISO-8601 time", err=True)
        sys.exit(2)
    opts = PublishOptions(
        paths=list(paths),
        topic=to_topic or backfill_topic(cfg),
        columns=Columns(hotel_column, image_column, url_column, occurred_at_column or None),
        format=fmt,
        rate=rate,
        as_of=None if as_of.strip().lower() == "none" else as_of,
        rejects=rejects,
        checkpoint=checkpoint_file,
        resume=resume,
        dry_run=dry_run,
        progress=progress and sys.stderr.isatty(),
    )

    async def work():
        stop = asyncio.Event()
        remove = install_stop(stop)
        try:
            return await publish_catalogue(cfg, opts, stop=stop)
        finally:
            remove()

    try:
        s = asyncio.run(work())
    except (CatalogueError, CheckpointError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except PublishFailed as exc:
        click.echo(f"error: {exc}\n  run the same command with --resume to continue", err=True)
        sys.exit(1)
    what = "validated (--dry-run, nothing sent)" if dry_run else f"sent {s.sent:,} to {s.topic}"
    state = "complete" if s.complete else "INTERRUPTED: run the same command with --resume to continue"
    reasons = ", ".join(f"{r} {n:,}" for r, n in s.reasons.most_common()) or "none"
    click.echo(
        f"publish {state}\n"
        f"  files     {s.files}\n"
        f"  rows      {s.rows:,} read"
        + (f" (after {s.resumed_after:,} done by an earlier run)" if s.resumed_after else "")
        + f"\n  events    {what}\n"
        f"  rejected  {s.rejected:,} -> {rejects} ({reasons})\n"
        f"  time      {s.seconds:.1f} s ({s.rate:,.0f} rows/s)"
    )
    if not s.complete:
        sys.exit(130)
