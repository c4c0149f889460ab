"""The `galleryrank` command.

Service commands take every Settings field as a flag (see cli_options.py);
the model tool-chain (train, evaluate, explain, export) comes from models/cli.py.
"""

from __future__ import annotations

import os

# Ranking is small numpy work per hotel; a multi-threaded BLAS only fights the
# model and decode threads for the cores (measured: rank() at 2,000 images took
# 72 ms instead of 16 ms on a loaded 2-core machine). Must precede numpy's import.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import asyncio  # noqa: E402
import sys  # noqa: E402

import click  # noqa: E402

from ..logs import setup_logging
from .options import settings_options, split_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
def cli() -> None:
    """galleryrank: keep every hotel gallery in its best order, from a Kafka stream of image events."""


@cli.command()
@settings_options
def consume(**kwargs) -> None:
    """Run the streaming scorer (the live service); --processes N runs N of them under a supervisor."""
    settings, _ = split_settings(kwargs)
    setup_logging(settings.log_level, settings.log_json)
    from ..supervisor import resolve_processes

    processes = resolve_processes(settings)
    if processes > 1:
        from ..supervisor import supervise

        sys.exit(supervise(settings, processes))
    from ..eventloop import run as run_loop
    from ..runtime import run_scorer

    summary = run_loop(run_scorer(settings), settings.event_loop)
    click.echo(
        f"stopped: {summary.events} events, {summary.applied} applied, {summary.deleted} deleted, "
        f"{summary.dead_lettered} dead-lettered in {summary.seconds:.1f}s"
    )


@cli.command()
@click.option(
    "--images",
    "images_dir",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Folder of photos to use instead of the scikit-image samples",
)
@click.option("--hotels", type=int, default=4, show_default=True, help="Number of demo hotels")
@click.option("--per-hotel", type=int, default=6, show_default=True, help="Photos per demo hotel")
@settings_options
def demo(images_dir, hotels, per_hotel, **kwargs) -> None:
    """Run the whole pipeline on embedded Kafka (Tansu) and Redis, print the ranked galleries."""
    quiet = kwargs.get("log_level") is None  # the demo prints tables; logs only on request
    settings, _ = split_settings(kwargs)
    setup_logging("WARNING" if quiet else settings.log_level, settings.log_json)
    from ..dev.demo import main

    sys.exit(main(settings, images_dir, hotels, per_hotel))


@cli.command("create-topics")
@click.option("--partitions", type=int, default=12, show_default=True, help="Partitions of the input topic and DLQ")
@click.option("--replication", type=int, default=1, show_default=True, help="Replication factor")
@settings_options
def create_topics_cmd(partitions, replication, **kwargs) -> None:
    """Create the input topic and the dead-letter topic if missing."""
    settings, _ = split_settings(kwargs)
    from ..stream.kafka import create_topics

    created = asyncio.run(create_topics(settings, partitions, replication))
    click.echo(f"created: {', '.join(created) or 'nothing (both exist)'}")


def _mount_optional(group: click.Group) -> None:
    """Commands whose modules may be absent in a slim install stay optional."""
    try:
        import typer

        from galleryrank.models.cli import models_app

        models_group = typer.main.get_command(models_app)
        for name, cmd in getattr(models_group, "commands", {}).items():
            group.add_command(cmd, name)
    except ImportError:
        pass
    from importlib import import_module

    for module in (".operations", ".editors", ".serve", "..dev.demo_producer", ".model_server"):
        try:
            mod = import_module(module, __package__)
        except ImportError:
            continue
        mod.register(group)


_mount_optional(cli)


# The model tool-chain is a typer app. typer >= 0.29 raises its own (vendored)
# click exceptions, which a plain click group neither catches nor prints: run
# through the group, `--help` or a bad flag of those commands ended in a
# traceback. They are listed in the group (so `galleryrank --help` shows them)
# but run by their own typer app, which handles its exceptions.
MODEL_COMMANDS = ("train", "evaluate", "explain", "export")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in MODEL_COMMANDS:
        from galleryrank.models.cli import models_app

        models_app(args=args, prog_name="galleryrank")
        return
    cli(args=args, auto_envvar_prefix=None)


if __name__ == "__main__":
    main()
