"""The `galleryrank` command: service, operations and model commands in one click group."""

from .main import main

__all__ = ["main"]
