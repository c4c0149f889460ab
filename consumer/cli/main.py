"""The `galleryrank` command.

Service commands take every Settings field as a flag (see options.py); the
model tool-chain (train, evaluate, explain, export) comes from models/cli.py.

Start-up cost: the group is lazy. A command's module is imported only when
that command runs (or when `galleryrank --help` lists it), and no module
imported for the operations commands (promote, namespaces, drop, compare,
rerank, replay's option parsing) imports torch, onnx or the model stack at
import time. To add a command in a module of its own, add one line to
`LAZY_COMMANDS` ("module:attribute"); tests/unit/test_cli.py checks that the
operations commands stay light.
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
from .options import ConfigUsageError, SettingsCommand, grouped_help, settings, split_settings, unknown_env_warnings

# name -> "module:attribute" of a click command, or of a `register(group)` function
# that adds a command of that name (modules owned elsewhere keep their own style).
LAZY_COMMANDS: dict[str, str] = {
    "replay": "galleryrank.consumer.cli.operations:replay",
    "compare": "galleryrank.consumer.cli.operations:compare",
    "promote": "galleryrank.consumer.cli.operations:promote",
    "namespaces": "galleryrank.consumer.cli.operations:list_cmd",
    "drop": "galleryrank.consumer.cli.operations:drop",
    "rerank": "galleryrank.consumer.cli.operations:rerank",
    "sheet": "galleryrank.consumer.cli.sheet:sheet",
    "publish": "galleryrank.consumer.cli.publish:publish",
    "pin": "galleryrank.consumer.cli.editors:pin",
    "unpin": "galleryrank.consumer.cli.editors:unpin",
    "hide": "galleryrank.consumer.cli.editors:hide",
    "unhide": "galleryrank.consumer.cli.editors:unhide",
    "reviewers": "galleryrank.consumer.cli.reviewers:reviewers",
    "serve": "galleryrank.consumer.cli.serve:register",
    "demo-producer": "galleryrank.consumer.dev.demo_producer:register",
    "model-server": "galleryrank.consumer.cli.model_server:model_server",
    "labels": "galleryrank.consumer.cli.labels:labels",
    # The model tool-chain (models/cli.py): importing it imports galleryrank.models, i.e. torch,
    # so `galleryrank --help` lists these with the short help below instead of loading them.
    "train": "galleryrank.models.cli:train_group",
    "evaluate": "galleryrank.models.cli:evaluate_cmd",
    "explain": "galleryrank.models.cli:explain_cmd",
    "export": "galleryrank.models.cli:export_cmd",
}
MODEL_COMMANDS = {
    "train": "Two-phase transfer learning: area tagger or aesthetic head.",
    "evaluate": "Evaluate a checkpoint: tagger top-1, aesthetic SRCC/EMD.",
    "explain": "Draw class-activation maps of a checkpoint on images.",
    "export": "Export a checkpoint to ONNX or a Triton model repository.",
}


class LazyGroup(click.Group):
    """A click group whose commands are imported on first use (see LAZY_COMMANDS)."""

    command_class = SettingsCommand  # --help groups the settings flags (options.py)

    def __init__(self, *args, lazy: dict[str, str] | None = None, lazy_help: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy if lazy is not None else {}
        self.lazy_help = lazy_help if lazy_help is not None else {}

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click's, but commands with a fixed short help are listed without importing them."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names), default=0)
        rows = []
        for name in names:
            if name not in self.commands and name in self.lazy_help:
                rows.append((name, self.lazy_help[name]))
                continue
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self._load(cmd_name)
        return self.commands.get(cmd_name)

    def _load(self, name: str) -> None:
        from importlib import import_module

        module_name, _, attr = self.lazy[name].partition(":")
        try:
            target = getattr(import_module(module_name), attr)
        except ImportError:  # a slim install without that module's extras: the command is absent
            return
        if isinstance(target, click.Command):
            self.add_command(grouped_help(target), name)
        else:  # register(group): let it add its commands to a scratch group, keep the one asked for
            scratch = click.Group()
            target(scratch)
            if name in scratch.commands:
                self.add_command(grouped_help(scratch.commands[name]), name)


@click.group(
    cls=LazyGroup,
    lazy=LAZY_COMMANDS,
    lazy_help=MODEL_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
)
def cli() -> None:
    """galleryrank: keep every hotel gallery in its best order, from a Kafka stream of image events."""
    for line in unknown_env_warnings():  # a misspelt GALLERYRANK_* would otherwise be ignored silently
        click.echo(line, err=True)


@cli.command()
@settings(
    "kafka",
    "topics",
    "group",
    "redis",
    "state",
    "batching",
    "download",
    "decode",
    "model",
    "ranking",
    "service",
    "logging",
)
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
    help="Your photos instead of the scikit-image samples: DIR/*.jpg, or DIR/<area>/*.jpg (the sub-folder is "
    "shown as your label)",
)
@click.option("--hotels", type=int, default=4, show_default=True, help="Number of demo hotels")
@click.option("--per-hotel", type=int, default=6, show_default=True, help="Photos per demo hotel")
@click.option(
    "--serve",
    is_flag=True,
    help="Then keep broker, Redis and photos up and serve the read API and gallery page (--serve-port) until Ctrl-C",
)
@settings("topics", "namespace", "state", "batching", "download", "decode", "model", "ranking", "serve", "logging")
def demo(images_dir, hotels, per_hotel, serve, **kwargs) -> None:
    """Run the whole pipeline on embedded Kafka (Tansu) and Redis, print the ranked galleries."""
    quiet = kwargs.get("log_level") is None  # the demo prints tables; logs only on request
    settings, _ = split_settings(kwargs)
    setup_logging("WARNING" if quiet else settings.log_level, settings.log_json)
    from ..dev.demo import load_photos, run_demo

    try:
        images = load_photos(images_dir)
    except ValueError as exc:  # a folder without photos: one line, the cause and the layouts
        raise ConfigUsageError(str(exc)) from None
    sys.exit(asyncio.run(run_demo(settings, images, hotels, per_hotel, serve, own=images_dir is not None)))


@cli.command("create-topics")
@click.option("--partitions", type=int, default=12, show_default=True, help="Partitions of the input topic and DLQ")
@click.option("--replication", type=int, default=1, show_default=True, help="Replication factor")
@settings("kafka", "topics")
def create_topics_cmd(partitions, replication, **kwargs) -> None:
    """Create the input topic and the dead-letter topic if missing."""
    settings, _ = split_settings(kwargs)
    from ..stream.kafka import create_topics

    created = asyncio.run(create_topics(settings, partitions, replication))
    click.echo(f"created: {', '.join(created) or 'nothing (both exist)'}")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        code = cli.main(args=args, prog_name="galleryrank", auto_envvar_prefix=None, standalone_mode=False)
    except click.UsageError as exc:  # a wrong flag or argument: one line and where the help is
        where = exc.ctx.command_path if exc.ctx is not None else "galleryrank"
        click.echo(f"error: {exc.format_message()} (see `{where} --help`)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
