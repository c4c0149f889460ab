"""`galleryrank reviewers add|list|revoke`: the people who may write through the API (docs/labelling.md).

`add` prints the new bearer token once, on stdout, and nowhere else (not logged, not stored:
Redis keeps a salted scrypt hash, consumer/state/reviewers.py). Give it to the person over a
channel you trust; lost tokens are revoked and re-issued, never recovered.
"""

from __future__ import annotations

import asyncio
import sys

import click

from .options import settings, split_settings


async def _with_redis(cfg, work):
    from ..runtime import redis_client

    redis = redis_client(cfg)
    try:
        return await work(redis)
    finally:
        await redis.aclose()


@click.group()
def reviewers() -> None:
    """Issue, list and revoke reviewers' bearer tokens for the review API and page."""


@reviewers.command("add")
@click.argument("reviewer_id", metavar="REVIEWER")
@click.option(
    "--role",
    type=click.Choice(["reviewer", "editor"]),
    default="reviewer",
    show_default=True,
    help="reviewer: labels and ratings; editor: also pin, unpin, hide, unhide",
)
@settings("redis")
def add(reviewer_id, role, **kwargs) -> None:
    """Register REVIEWER and print their token (shown this once; only its hash is stored)."""
    from ..state import reviewers as store

    cfg, _ = split_settings(kwargs)
    try:
        token = asyncio.run(_with_redis(cfg, lambda redis: store.add(redis, reviewer_id, role)))
    except store.ReviewerError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(token)
    click.echo(
        f"reviewer {reviewer_id!r} ({role}) added; the token above is shown once: send it as "
        "'Authorization: Bearer <token>'",
        err=True,
    )


@reviewers.command("list")
@settings("redis")
def list_cmd(**kwargs) -> None:
    """List reviewers: id, role, created, revoked (never tokens or hashes)."""
    from ..state import reviewers as store

    cfg, _ = split_settings(kwargs)
    people = asyncio.run(_with_redis(cfg, store.all_reviewers))
    for person in people:
        status = f"revoked {person.revoked_at}" if person.revoked_at else "active"
        click.echo(f"{person.reviewer_id}\t{person.role}\tcreated {person.created_at}\t{status}")
    if not people:
        click.echo("no reviewers (galleryrank reviewers add NAME --role reviewer|editor)", err=True)


@reviewers.command("revoke")
@click.argument("reviewer_id", metavar="REVIEWER")
@settings("redis")
def revoke(reviewer_id, **kwargs) -> None:
    """Revoke REVIEWER's token at once (their labels stay; `add` issues a new token)."""
    from ..state import reviewers as store

    cfg, _ = split_settings(kwargs)
    if not asyncio.run(_with_redis(cfg, lambda redis: store.revoke(redis, reviewer_id))):
        click.echo(f"error: no reviewer {reviewer_id!r}", err=True)
        sys.exit(2)
    click.echo(f"reviewer {reviewer_id!r} revoked", err=True)
