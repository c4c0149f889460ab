"""A CLI flag for every Settings field, generated from the model itself.

`--batch-size 64` overrides GALLERYRANK_BATCH_SIZE, which overrides the
default; so adding a field to Settings adds its flag and env var at once.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable
from typing import Any

import click
from pydantic import SecretStr

from ..settings import ConfigError, ServiceStopped, Settings, load_settings


class ConfigUsageError(click.ClickException):
    """A setting that cannot work: one line on stderr, exit code 2 (env vars and flags alike)."""

    exit_code = 2


def _click_type(annotation: Any) -> tuple[Any, bool]:
    """(click type, is_flag) for a pydantic annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return click.Choice([str(a) for a in typing.get_args(annotation)]), False
    if args and origin is not typing.Literal:  # Optional[X] / X | None
        return _click_type(args[0])
    if annotation is bool:
        return bool, True
    if annotation in (int, float, str):
        return annotation, False
    if annotation is SecretStr:
        return str, False
    return str, False


def settings_options(func: Callable) -> Callable:
    """A flag for every setting, and the start-up rule for the command: a setting that cannot
    work (found when read, or later, e.g. a checkpoint that contradicts the namespace) is one
    line and exit code 2; a service that stops itself says why in one line, exit code 1."""
    func = _one_line_errors(func)
    for name, field in reversed(list(Settings.model_fields.items())):
        ctype, is_flag = _click_type(field.annotation)
        flag = "--" + name.replace("_", "-")
        env = "GALLERYRANK_" + name.upper()
        help_text = f"{field.description or ''} [env {env}; default {field.default!r}]"
        if is_flag:
            func = click.option(f"{flag}/--no-{flag[2:]}", name, default=None, help=help_text)(func)
        else:
            func = click.option(flag, name, type=ctype, default=None, help=help_text, show_default=False)(func)
    return func


def _one_line_errors(func: Callable) -> Callable:
    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            raise ConfigUsageError(str(exc)) from None
        except ServiceStopped as exc:
            raise click.ClickException(f"stopped: {exc}") from None

    return run


def split_settings(kwargs: dict[str, Any]) -> tuple[Settings, dict[str, Any]]:
    """Settings from the Settings flags in kwargs (env and defaults below them), and the other kwargs."""
    fields = {k: kwargs.pop(k) for k in list(kwargs) if k in Settings.model_fields}
    try:
        return load_settings(**fields), kwargs
    except ConfigError as exc:
        raise ConfigUsageError(str(exc)) from None
