"""`galleryrank serve`: the read API and the gallery page (the app lives in consumer/api/serve.py)."""

from __future__ import annotations

import click

from ..logs import setup_logging
from .options import settings, split_settings


def register(group: click.Group) -> None:
    @group.command()
    @settings("redis", "serve", "kafka", "topics", "ranking", "model", "download", "decode", "logging")
    def serve(**kwargs) -> None:
        """Serve the read API (GET /hotels/{id}/gallery) and the gallery page on serve_host:serve_port."""
        settings, _ = split_settings(kwargs)
        setup_logging(settings.log_level, settings.log_json)
        from ..api.serve import run

        click.echo(f"gallery page on http://{settings.serve_host}:{settings.serve_port}/")
        run(settings)
