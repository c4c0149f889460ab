"""Per-command settings: each command declares the settings it reads; it gets their flags, its
--help lists them grouped (Kafka, Redis, Model, ...) each with its env var, and only they are
validated when it starts.

    @click.command(cls=SettingsCommand)     # or any command of the `galleryrank` group
    @settings("kafka", "topics", "namespace")   # groups (GROUPS) and/or single field names
    def pin(**kwargs):
        cfg, rest = split_settings(kwargs)

`--batch-size 64` overrides GALLERYRANK_BATCH_SIZE, which overrides the default. A bad value
of a setting the command does not read (GALLERYRANK_BATCH_SIZE=0 for `serve`) is ignored: that
field keeps its default. A new Settings field belongs in one group of GROUPS
(tests/unit/test_cli_options.py checks it).
"""

from __future__ import annotations

import difflib
import functools
import os
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import click
from pydantic import SecretStr, ValidationError

from ..settings import ConfigError, ServiceStopped, Settings, describe_errors, load_settings

ENV_PREFIX = "GALLERYRANK_"

# group -> (title in --help, fields). Order here is the order in --help.
GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "kafka": (
        "Kafka",
        (
            "bootstrap_servers",
            "client_id",
            "security_protocol",
            "sasl_mechanism",
            "sasl_username",
            "sasl_password",
            "ssl_cafile",
        ),
    ),
    "topics": ("Topics", ("topic", "dlq_topic", "labels_topic", "backfill_topic")),
    "group": ("Kafka consumer group", ("group_id", "session_timeout_ms", "max_poll_interval_ms")),
    "redis": ("Redis", ("redis_url", "redis_cluster", "namespace")),
    "state": ("Hotel state writes", ("hotel_cache_images", "write_coalesce_ms", "max_clock_skew_s")),
    "batching": ("Micro-batching", ("batch_size", "max_batch_delay_ms", "max_in_flight", "backfill_max_in_flight")),
    "download": (
        "Downloads",
        (
            "download_concurrency",
            "download_timeout_s",
            "download_connect_timeout_s",
            "download_max_bytes",
            "download_retries",
            "download_max_redirects",
            "download_allow_networks",
        ),
    ),
    "decode": (
        "Decoding",
        ("max_image_pixels", "decode_workers", "decode_timeout_s", "decode_memory_mb", "decode_path"),
    ),
    "model": (
        "Model",
        ("device", "backend", "checkpoint", "model_cache_dir", "model_server", "model_server_timeout_s"),
    ),
    "ranking": ("Ranking", ("ranking_strategy", "ranking_diversity")),
    "service": ("Service", ("metrics_port", "metrics_host", "stop_when_idle_s", "processes", "event_loop")),
    "serve": (
        "Read API, page and review API",
        (
            "serve_host",
            "serve_port",
            "review_rate_per_minute",
            "review_raters",
            "review_trusted_header",
            "review_trusted_proxies",
        ),
    ),
    "logging": ("Logging", ("log_level", "log_json")),
}
# Settings fields that no group names yet (added by someone else this week): shown under "Other".
OTHER = "Other settings"
# GALLERYRANK_* variables that are not settings but are read by tools and tests on purpose.
KNOWN_NON_SETTINGS = frozenset({"HOUSES_DEV", "FEATURES_BACKEND", "CHROMIUM"})


class ConfigUsageError(click.ClickException):
    """A setting that cannot work: one line on stderr, exit code 2 (env vars and flags alike)."""

    exit_code = 2

    def show(self, file: Any = None) -> None:  # one line, no "Error:" prefix doubling the cause
        click.echo(f"error: {self.format_message()}", err=True)


def group_of(field: str) -> str:
    for title, fields in GROUPS.values():
        if field in fields:
            return title
    return OTHER


def _fields(selectors: Iterable[str]) -> list[str]:
    """Field names for group names and/or field names, in Settings' order, without repeats."""
    wanted: set[str] = set()
    for sel in selectors:
        if sel in GROUPS:
            wanted.update(f for f in GROUPS[sel][1] if f in Settings.model_fields)
        elif sel in Settings.model_fields:
            wanted.add(sel)
        elif sel == "all":
            wanted.update(Settings.model_fields)
        else:
            raise ValueError(f"unknown settings group or field {sel!r}")
    return [f for f in Settings.model_fields if f in wanted]


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


class SettingOption(click.Option):
    """A flag of one Settings field: knows its help group and env var."""

    def __init__(self, *args: Any, setting: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setting = setting
        self.group_title = group_of(setting)


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _default_text(field: str) -> str:
    default = Settings.model_fields[field].default
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return "on" if default else "off"
    return repr(default) if isinstance(default, str) else str(default)


def settings(*selectors: str) -> Callable[[Callable], Callable]:
    """Flags for the settings the command reads (group names of GROUPS and/or field names), and
    the start-up rule: a setting that cannot work is one line and exit code 2; a service that
    stops itself says why in one line, exit code 1."""
    fields = _fields(selectors)

    def decorate(func: Callable) -> Callable:
        func = _one_line_errors(func)
        for name in reversed(fields):
            field = Settings.model_fields[name]
            ctype, is_flag = _click_type(field.annotation)
            flag = "--" + name.replace("_", "-")
            help_text = f"{field.description or ''} [env {env_name(name)}; default {_default_text(name)}]"
            decls = [f"{flag}/--no-{flag[2:]}"] if is_flag else [flag]
            func = click.option(
                *decls,
                name,
                cls=SettingOption,
                setting=name,
                type=None if is_flag else ctype,
                default=None,
                help=help_text,
                show_default=False,
            )(func)
        return func

    return decorate


# Every setting: kept for commands written before the per-command mechanism (prefer settings()).
settings_options = settings("all")


def deprecated_alias(old: str, new: str, note: str = "") -> Callable[[Callable], Callable]:
    """A hidden `old` flag that still works for `new` (a flag of the command, e.g. --checkpoint),
    printing one line saying so. The value reaches the command as `new`'s kwarg (see split_settings
    and take_aliases)."""
    dest = "alias__" + new.lstrip("-").replace("-", "_")

    def decorate(func: Callable) -> Callable:
        return click.option(old, dest, default=None, hidden=True, help=f"deprecated: use {new}")(func)

    _ALIASES[dest] = (old, new, note)
    return decorate


_ALIASES: dict[str, tuple[str, str, str]] = {}


def take_aliases(kwargs: dict[str, Any]) -> None:
    """Move deprecated aliases' values onto the flag they stand for (that flag wins when both are given)."""
    for dest in [k for k in kwargs if k.startswith("alias__")]:
        value = kwargs.pop(dest)
        if value is None:
            continue
        old, new, note = _ALIASES[dest]
        click.echo(f"note: {old} is deprecated, use {new}{' (' + note + ')' if note else ''}", err=True)
        target = dest[len("alias__") :]
        if kwargs.get(target) is None:
            kwargs[target] = value


class SettingsCommand(click.Command):
    """--help: the command's own options first, then one section per settings group."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        own: list[tuple[str, str]] = []
        grouped: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            if not isinstance(param, click.Option):  # arguments are in the usage line
                continue
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if isinstance(param, SettingOption):
                grouped.setdefault(param.group_title, []).append(record)
            else:
                own.append(record)
        if own:
            with formatter.section("Options"):
                formatter.write_dl(own)
        order = [title for title, _ in GROUPS.values()] + [OTHER]
        for title in sorted(grouped, key=order.index):
            with formatter.section(f"{title} settings"):
                formatter.write_dl(grouped[title])


def grouped_help(command: click.Command) -> click.Command:
    """Give a plain click command with settings flags the grouped --help (used by the group loader),
    and each subcommand of a group (`reviewers add`, `labels export`, ...)."""
    if type(command) is click.Command and any(isinstance(p, SettingOption) for p in command.params):
        command.__class__ = SettingsCommand
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            grouped_help(sub)
    return command


def _one_line_errors(func: Callable) -> Callable:
    if getattr(func, "_one_line_errors", False):
        return func

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            raise ConfigUsageError(str(exc)) from None
        except ServiceStopped as exc:
            raise click.ClickException(f"stopped: {exc}") from None
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # a refused password, a server not there: one line naming the fix
            line = _start_up_mistake(exc)
            if line is None:
                raise
            raise ConfigUsageError(line) from None

    run._one_line_errors = True  # type: ignore[attr-defined]
    return run


_SETTINGS_META = "galleryrank.settings"


def _start_up_mistake(exc: BaseException) -> str | None:
    from .. import config_mistakes

    ctx = click.get_current_context(silent=True)
    cfg = ctx.meta.get(_SETTINGS_META) if ctx is not None else None
    if cfg is None:
        return None
    line = config_mistakes.describe(exc, cfg)
    if line is None and cfg.security_protocol.startswith("SASL"):
        import asyncio

        line = asyncio.run(config_mistakes.kafka_auth_mistake(cfg))
    return line or config_mistakes.unreachable(exc, cfg)


def split_settings(kwargs: dict[str, Any]) -> tuple[Settings, dict[str, Any]]:
    """Settings from the settings flags in kwargs (env and defaults below them), and the other kwargs.

    Only the settings the command declared (the flags in kwargs) are checked: a bad env value of
    any other field is dropped for its default, since the command never reads it."""
    take_aliases(kwargs)
    fields = {k: kwargs.pop(k) for k in list(kwargs) if k in Settings.model_fields}
    try:
        cfg = load_for(fields, used=set(fields))
    except ConfigError as exc:
        raise ConfigUsageError(str(exc)) from None
    ctx = click.get_current_context(silent=True)
    if ctx is not None:  # for the one-line start-up errors of _one_line_errors
        ctx.meta[_SETTINGS_META] = cfg
    return cfg, kwargs


def load_for(flags: Mapping[str, Any], used: set[str]) -> Settings:
    """Settings with `flags` on top of the env; errors only for fields in `used`."""
    clean = {k: v for k, v in flags.items() if v is not None}
    for _ in range(len(Settings.model_fields) + 1):
        try:
            return Settings(**clean)
        except ValidationError as exc:
            errors = exc.errors()
            bad = {str(e["loc"][0]) for e in errors if e["loc"]}
            mine = [e for e in errors if not e["loc"] or str(e["loc"][0]) in used]
            if mine:
                raise ConfigError(describe_errors(cast(ValidationError, _Errors(mine)), clean)) from None
            for name in bad:  # not read by this command: its default instead of the env value
                clean[name] = Settings.model_fields[name].default
    return load_settings(**clean)  # not reached: each round replaces at least one bad field


class _Errors:
    """The part of a ValidationError that describe_errors reads, holding only some of its errors."""

    def __init__(self, errors: list[Any]) -> None:
        self._errors = errors

    def errors(self) -> list[Any]:
        return self._errors


def unknown_env_warnings(environ: Mapping[str, str] | None = None) -> list[str]:
    """One line per GALLERYRANK_* variable that is no setting, naming the closest real one."""
    env = os.environ if environ is None else environ
    names = [env_name(f) for f in Settings.model_fields]
    lines = []
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or var in names or var[len(ENV_PREFIX) :] in KNOWN_NON_SETTINGS:
            continue
        close = difflib.get_close_matches(var, names, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else " (see `galleryrank COMMAND --help` for the settings)"
        lines.append(f"warning: {var} is not a galleryrank setting and is ignored{hint}")
    return lines
