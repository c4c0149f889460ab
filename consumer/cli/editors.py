"""Editors' commands: pin, unpin, hide, unhide.

Each publishes the override event an editor's tool would publish (docs/events.md)
to the input topic, keyed by the hotel, with the consumer's own settings (same
flags and GALLERYRANK_* variables), and waits for the broker's acks. The event
is validated by the consumer's own parser first: what the command accepts, the
scorer applies; what it refuses would have gone to the DLQ. Imports no model
code (no torch): these run in a shell in well under a second plus the broker.
"""

from __future__ import annotations

import asyncio
import sys

import click

from .options import settings, split_settings

HOTEL = click.argument("hotel_id", metavar="HOTEL")


def _publish(kwargs: dict, events: list, dry_run: bool) -> None:
    from ..stream.events import InvalidEvent, encode_event, parse_event
    from ..stream.produce import publish

    settings, _ = split_settings(kwargs)
    records = [encode_event(ev) for ev in events]
    for key, value in records:
        checked = parse_event(key, value)
        if isinstance(checked, InvalidEvent):
            click.echo(f"error: {checked.reason}: {checked.detail}", err=True)
            sys.exit(2)
    if not dry_run:
        asyncio.run(publish(settings, records))
    for _, value in records:
        click.echo(value.decode())
    where = "not published (--dry-run)" if dry_run else f"published to {settings.topic}"
    click.echo(f"{len(records)} event{'s' if len(records) != 1 else ''} {where}", err=True)


DRY_RUN = click.option("--dry-run", is_flag=True, help="Validate and print the event(s), publish nothing")


@click.command()
@HOTEL
@click.argument("image_ids", metavar="IMAGE...", nargs=-1, required=True)
@DRY_RUN
@settings("kafka", "topic")
def pin(hotel_id, image_ids, dry_run, **kwargs) -> None:
    """Pin IMAGE... to the first positions of HOTEL's gallery, in this order (replaces earlier pins)."""
    from ..stream.produce import pinned

    _publish(kwargs, [pinned(hotel_id, image_ids)], dry_run)


@click.command()
@HOTEL
@click.argument("image_ids", metavar="[IMAGE...]", nargs=-1)
@DRY_RUN
@settings("kafka", "topic")
def unpin(hotel_id, image_ids, dry_run, **kwargs) -> None:
    """Unpin IMAGE... of HOTEL (the other pins keep their order); no IMAGE = unpin all."""
    from ..stream.produce import unpinned

    _publish(kwargs, [unpinned(hotel_id, image_ids)], dry_run)


@click.command()
@HOTEL
@click.argument("image_ids", metavar="IMAGE...", nargs=-1, required=True)
@DRY_RUN
@settings("kafka", "topic")
def hide(hotel_id, image_ids, dry_run, **kwargs) -> None:
    """Hide IMAGE... from HOTEL's gallery (kept in state: unhide restores without a rescore)."""
    from ..stream.produce import hidden

    _publish(kwargs, [hidden(hotel_id, i) for i in image_ids], dry_run)


@click.command()
@HOTEL
@click.argument("image_ids", metavar="IMAGE...", nargs=-1, required=True)
@DRY_RUN
@settings("kafka", "topic")
def unhide(hotel_id, image_ids, dry_run, **kwargs) -> None:
    """Show hidden IMAGE... of HOTEL again, at the place its scores earn."""
    from ..stream.produce import unhidden

    _publish(kwargs, [unhidden(hotel_id, i) for i in image_ids], dry_run)
