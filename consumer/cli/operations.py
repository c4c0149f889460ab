"""Operator commands: replay, compare, promote, namespaces, drop, rerank.

Each is a click command that consumer/cli/main.py's `LAZY_COMMANDS` names and
imports on first use.
The walk-through (retrain -> replay -> compare -> promote -> drop) is in
docs/operations.md.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NoReturn, TypeVar

import click

from ..logs import setup_logging
from .options import deprecated_alias, settings, split_settings

if TYPE_CHECKING:
    from ..interfaces import RedisClient
    from ..settings import Settings

_T = TypeVar("_T")


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


async def _with_redis(settings: Settings, work: Callable[[RedisClient], Awaitable[_T]]) -> _T:
    from ..runtime import redis_client

    redis = redis_client(settings)
    try:
        return await work(redis)
    finally:
        await redis.aclose()


@click.command()
@click.option(
    "--from",
    "from_",
    default="earliest",
    show_default=True,
    help="Start: 'earliest' or an ISO-8601 time (first record with timestamp >= it)",
)
@click.option(
    "--to",
    "to",
    default="now",
    show_default=True,
    help="End: 'now' (the log end when the replay starts) or an ISO-8601 time (inclusive)",
)
@click.option(
    "--replay-group",
    "replay_group",
    default=None,
    help="Consumer group of this replay [default: <group-id>-replay-<namespace>; --group-id is the live scorers']",
)
@deprecated_alias("--model", "--checkpoint")
@deprecated_alias("--group", "--replay-group", "the replay's own group; --group-id names the live scorers' group")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr")
@settings("kafka", "topics", "group", "redis", "state", "batching", "download", "decode", "model", "ranking", "logging")
def replay(from_, to, replay_group, progress, **kwargs) -> None:
    """Rescore the topics (live, labels, backfill) from --from to --to into namespace --namespace (required), without touching the active one."""
    namespace = kwargs.get("namespace")  # the flag: replaying into the env's namespace would be an accident
    if not namespace:
        _fail("--namespace is required: the namespace to replay into (a new one, e.g. v2)")
    settings, rest = split_settings(kwargs)
    replay_group = replay_group or rest.get("replay_group")
    setup_logging(settings.log_level, settings.log_json)
    from ..bluegreen.namespaces import NamespaceError, validate_name
    from ..bluegreen.replay import ReplayError, parse_time, run_replay
    from ..runtime import load_model

    try:
        validate_name(namespace)
        from_ms = parse_time(from_, open_value="earliest")
        to_ms = parse_time(to, open_value="now")
    except (NamespaceError, ReplayError) as exc:
        _fail(str(exc))
    checkpoint = settings.checkpoint
    launched = time.monotonic()
    model = load_model(settings, checkpoint)  # with the ONNX export on the first use of a model
    loading_s = time.monotonic() - launched

    async def work(redis: RedisClient):
        return await run_replay(
            settings,
            namespace,
            model,
            redis,
            from_ms=from_ms,
            to_ms=to_ms,
            checkpoint=checkpoint,
            group_id=replay_group,
            progress=progress,
        )

    try:
        result = asyncio.run(_with_redis(settings, work))
    except ReplayError as exc:
        _fail(str(exc))
    s = result.summary
    state = (
        "complete"
        if result.complete
        else "INTERRUPTED (run it again; applied events are kept, redoing them is a no-op)"
    )
    click.echo(
        f"replay into {namespace} {state}\n"
        f"  model     {result.model_version}\n"
        f"  group     {result.group_id}\n"
        f"  range     {from_} .. {to}  (offsets {result.plan.start} .. {result.plan.end})\n"
        f"  events    {s.events} of {result.total} ({s.applied} scored, {s.deleted} deleted, "
        f"{s.stale} already applied)\n"
        f"  hotels    {len(s.hotels)}\n"
        f"  DLQ       {s.dead_lettered}\n"
        f"  time      {s.seconds:.1f} s replaying ({result.rate:.1f} events/s), after {loading_s:.1f} s "
        f"loading the model (and exporting it to ONNX on its first use); {time.monotonic() - launched:.1f} s in all"
    )
    if not result.complete:
        sys.exit(2)


@click.command()
@click.argument("target")
@click.option(
    "--force",
    is_flag=True,
    help="Switch at once, without waiting for the live consumers to catch TARGET up; "
    "also promotes a namespace without galleries or with an unfinished replay",
)
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(0),
    default=120.0,
    show_default=True,
    help="Seconds to wait for the live consumers to catch TARGET up (they complete the switch later if longer)",
)
@settings("redis", "group_id", "topic")
def promote(target, force, wait_s, **kwargs) -> None:
    """Make TARGET the namespace the website reads, once it holds every event the active one shows.

    The live consumers (group --group-id) switch their writes to TARGET and catch it up;
    then galleryrank:active is set (one atomic SET). Without a live group: at once.
    """
    settings, _ = split_settings(kwargs)
    from ..bluegreen.namespaces import NamespaceError, PromotePending, has_live_group
    from ..bluegreen.namespaces import promote as do_promote

    async def work(redis: RedisClient):
        live = await has_live_group(redis, settings.group_id, settings.topic)
        previous = await do_promote(
            redis, target, force=force, group_id=settings.group_id, topic=settings.topic, wait_s=wait_s
        )
        return previous, live

    try:
        previous, live = asyncio.run(_with_redis(settings, work))
    except PromotePending as exc:
        click.echo(f"pending: {exc}", err=True)
        sys.exit(3)
    except NamespaceError as exc:
        _fail(str(exc))
    if not live and not force:
        click.echo(
            f"note: no live consumer state for group {settings.group_id} / topic {settings.topic} in Redis: switched "
            "at once (if live consumers run under another group, pass its --group-id so they catch up first)",
            err=True,
        )
    click.echo(f"active namespace: {target} (was {previous})")


@click.command("namespaces")
@settings("redis")
def list_cmd(**kwargs) -> None:
    """List namespaces: active, hotels, keys, model version, created, status."""
    settings, _ = split_settings(kwargs)
    from rich.console import Console
    from rich.table import Table

    from ..bluegreen.namespaces import list_namespaces

    infos = asyncio.run(_with_redis(settings, list_namespaces))
    table = Table("namespace", "active", "hotels", "keys", "model_version", "created_at", "status")
    for info in infos:
        table.add_row(
            info.name,
            "*" if info.active else "",
            str(info.hotels),
            str(info.keys),
            info.model_version,
            info.created_at,
            info.status,
        )
    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze the table to 80 columns
        console = Console(width=200)
    console.print(table)


@click.command()
@click.argument("old")
@click.argument("new")
@click.option("--top", type=click.IntRange(1), default=5, show_default=True, help="Positions that count as 'the top'")
@click.option("--sample", type=click.IntRange(1), default=1000, show_default=True, help="Hotels sampled from each side")
@settings("redis")
def compare(old, new, top, sample, **kwargs) -> None:
    """Compare namespace NEW with OLD before promoting: missing hotels, image sets, hero and top-k changes."""
    settings, _ = split_settings(kwargs)
    from ..bluegreen.namespaces import NamespaceError
    from ..bluegreen.namespaces import compare as do_compare

    try:
        c = asyncio.run(_with_redis(settings, lambda r: do_compare(r, old, new, top=top, sample=sample)))
    except NamespaceError as exc:
        _fail(str(exc))
    versions = " / ".join(",".join(sorted(v)) or "-" for v in c.model_versions)
    click.echo(
        f"{old} -> {new}: {c.hotels} hotels in both (models {versions})\n"
        f"  only in {old}: {len(c.only_old)} {c.only_old[:5]}\n"
        f"  only in {new}: {len(c.only_new)} {c.only_new[:5]}\n"
        f"  image sets differ: {len(c.image_sets_differ)} {c.image_sets_differ[:5]}\n"
        f"  first image changed: {c.hero_changed} of {c.hotels}\n"
        f"  top-{top} overlap: {c.top_overlap:.2f}\n"
        f"  areas in top-{top}: {c.areas_old:.2f} -> {c.areas_new:.2f}\n"
        f"  aesthetic shift (new - old, same images): {c.aesthetic_shift:+.3f}"
    )
    if c.only_old or c.image_sets_differ:
        click.echo(
            f"note: hotels missing or with other images in {new}: events after its replay end point "
            "(the live consumer reprocesses them into it on promote), or events missing in it",
            err=True,
        )


@click.command()
@click.argument("target")
@click.option("--yes", is_flag=True, help="Really delete (without it: a dry run that prints the key count, exit 0)")
@settings("redis")
def drop(target, yes, **kwargs) -> None:
    """Delete namespace TARGET (not the active one): SCAN + UNLINK in batches of 500 keys."""
    settings, _ = split_settings(kwargs)
    from ..bluegreen.namespaces import (
        NamespaceError,
        active_namespace,
        count_keys,
        validate_name,
    )
    from ..bluegreen.namespaces import (
        drop as do_drop,
    )

    async def work(redis: RedisClient):
        validate_name(target)
        if target == await active_namespace(redis):
            raise NamespaceError(f"namespace {target!r} is active; promote another one first")
        if not yes:
            return None, await count_keys(redis, target)
        return await do_drop(redis, target), None

    try:
        removed, would = asyncio.run(_with_redis(settings, work))
    except NamespaceError as exc:
        _fail(str(exc))
    if removed is None:  # the dry run: says what would go, deletes nothing
        click.echo(f"namespace {target} has {would} keys; nothing deleted (add --yes to delete them)")
        return
    click.echo(f"dropped namespace {target}: {removed} keys")


@click.command()
@click.option("--hotel", "hotels", multiple=True, help="Hotel id (repeatable) [default: every hotel of the namespace]")
@click.option(
    "--strategy", default=None, help="Ranking strategy [default: --ranking-strategy / GALLERYRANK_RANKING_STRATEGY]"
)
@click.option("--diversity", type=click.FloatRange(0, 1), default=None, help="Quality/diversity trade-off in [0, 1]")
@settings("redis", "ranking")
def rerank(hotels, strategy, diversity, **kwargs) -> None:
    """Rebuild gallery documents from stored scores (no download, no model) after a ranking change.

    Namespace: --namespace, else the active one.
    """
    settings, _ = split_settings(kwargs)
    from ..bluegreen.namespaces import active_namespace
    from ..state.document import ranking_config
    from ..state.store import GalleryStore

    try:
        config = ranking_config(
            strategy or settings.ranking_strategy, diversity if diversity is not None else settings.ranking_diversity
        )
    except (KeyError, ValueError) as exc:
        _fail(str(exc))

    async def work(redis: RedisClient):
        namespace = settings.namespace or await active_namespace(redis)
        store = GalleryStore(redis, config)
        known = await store.hotel_ids(namespace)
        # Only hotels the namespace has: rerank of an unknown id would write an empty gallery.
        ids = [h for h in hotels if h in set(known)] if hotels else known
        return namespace, ids, await store.rerank(namespace, ids)

    namespace, ids, done = asyncio.run(_with_redis(settings, work))
    unknown = sorted(set(hotels) - set(ids))
    if unknown:
        click.echo(f"not in namespace {namespace}: {', '.join(unknown)}", err=True)
    click.echo(f"reranked {done} of {len(ids)} hotels in namespace {namespace} (strategy {config.strategy})")
    if unknown:
        sys.exit(1)


def register(group: click.Group) -> None:
    for command in (replay, compare, promote, list_cmd, drop, rerank):
        group.add_command(command)
