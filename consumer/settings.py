"""One settings object for every galleryrank command.

Every field reads the env var ``GALLERYRANK_<FIELD>`` (upper case) and has a
CLI flag ``--<field-with-dashes>`` (see ``consumer/cli/main.py``). README.md lists
them all; ``tests/unit/test_settings.py`` checks that the README, compose and
the Kubernetes ConfigMap name only settings that exist here.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .state.namespace import validate_name

MAX_TOPIC_BYTES = 230

_DEVICE_RE = re.compile(r"auto|cpu|cuda(:[0-9]{1,2})?")
_HOST_PORT_RE = re.compile(r"\[?[A-Za-z0-9_.:-]+\]?:[0-9]{1,5}")


class ConfigError(ValueError):
    """A setting that cannot work; the message is one line naming the env var and the flag."""


class ServiceStopped(RuntimeError):
    """A service stopped itself for a reason its message states (the CLI: that line, exit code 1)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GALLERYRANK_", extra="ignore")

    # --- Kafka -------------------------------------------------------------
    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated")
    topic: str = Field("hotel-images", description="Input topic with image events")
    dlq_topic: str = Field("hotel-images.dlq", description="Dead-letter topic for events that cannot be applied")
    backfill_topic: str | None = Field(
        None,
        description="Topic of bulk catalogue events (galleryrank publish), consumed behind the live topic; "
        "unset = '<topic>.backfill' (hotel-images.backfill)",
    )
    labels_topic: str = Field(
        "",
        description="Reviewers' label events (label.area, label.rating; docs/labelling.md); "
        "empty = '<topic>.labels' (hotel-images.labels)",
    )
    group_id: str = Field("galleryrank-scorer", description="Kafka consumer group of the live scorer")
    client_id: str = Field("galleryrank", description="Kafka client id (shows in broker logs and metrics)")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism when security_protocol is SASL_*"
    )
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: SecretStr | None = Field(None, description="SASL password (never logged)")
    ssl_cafile: str | None = Field(None, description="CA bundle for Kafka SSL")
    session_timeout_ms: int = Field(30_000, ge=6_000, description="Kafka consumer session timeout")
    max_poll_interval_ms: int = Field(300_000, ge=10_000, description="Kafka max time between polls")

    # --- Redis -------------------------------------------------------------
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis URL; rediss:// for TLS, redis://:password@host/ for AUTH",
    )
    redis_cluster: bool = Field(
        False,
        description="redis_url names one node of a Redis Cluster: use the cluster client (finds the other nodes itself)",
    )
    namespace: str | None = Field(
        None,
        description="Namespace to write into; unset = follow GET galleryrank:active (default 'live')",
    )
    hotel_cache_images: int = Field(
        200_000,
        ge=1,
        description="Hotel state kept in memory by the writer, in images (LRU; ~2 KB each); Redis stays the truth",
    )
    write_coalesce_ms: float = Field(
        200.0,
        ge=0,
        description="Changes to one hotel within this window are written (and re-ranked) once; 0 = at once",
    )
    max_clock_skew_s: float = Field(
        300.0,
        ge=0,
        description="An occurred_at further than this ahead of its record's timestamp (or now) is dead-lettered"
        " as occurred_at_in_future (a broken producer clock must not freeze an image)",
    )

    # --- Micro-batching ------------------------------------------------------
    batch_size: int = Field(32, ge=1, le=1024, description="Largest micro-batch sent to the model")
    max_batch_delay_ms: float = Field(
        0.0, ge=0, description="How long a non-full batch may wait for more images (0 = run what is there, as Triton)"
    )
    max_in_flight: int = Field(
        512, ge=1, description="Events held between fetch and commit; above it partitions are paused"
    )
    backfill_max_in_flight: int = Field(
        64,
        ge=1,
        description="Backfill events inside the pipeline at once; none start while live events are in flight",
    )

    # --- Downloads -----------------------------------------------------------
    download_concurrency: int = Field(32, ge=1, description="Parallel image downloads")
    download_timeout_s: float = Field(10.0, gt=0, description="Total time cap for one download")
    download_connect_timeout_s: float = Field(3.0, gt=0, description="Connect time cap for one download")
    download_max_bytes: int = Field(20_000_000, gt=0, description="Largest image body accepted")
    download_retries: int = Field(2, ge=0, description="Retries for 5xx/timeouts before the DLQ")
    download_max_redirects: int = Field(3, ge=0, description="Redirects followed (each one re-checked)")
    download_allow_networks: str = Field(
        "",
        description="Comma-separated CIDRs allowed although private/loopback (e.g. 127.0.0.0/8 for tests)",
    )
    max_image_pixels: int = Field(50_000_000, gt=0, description="Decompression-bomb cap (width*height)")
    decode_workers: int = Field(
        0, ge=0, description="Decode worker processes; 0 = the CPUs this container may use (cgroup quota, affinity)"
    )
    decode_timeout_s: float = Field(
        10.0, gt=0, description="CPU-time budget of one image decode; a worker over it is killed (decode_timeout)"
    )
    decode_memory_mb: int = Field(
        768,
        ge=64,
        description="Memory all concurrent decodes may hold, estimated per image from its header; above it they wait",
    )
    decode_path: Literal["auto", "hardware", "nvjpeg", "cpu", "nvimgcodec-cpu"] = Field(
        "auto",
        description="Image decoder: auto = the GPU's hardware JPEG decoder where it exists (extra [gpu]), else "
        "nvJPEG on CUDA, else the CPU pool; or force one (consumer/images/decode_path.py)",
    )

    # --- Model -----------------------------------------------------------------
    device: str = Field("auto", description="'auto' (cuda if available), 'cuda', 'cuda:N' or 'cpu'")
    backend: Literal["auto", "torch", "torch-fp16", "torch-bf16", "onnxruntime"] = Field(
        "auto", description="Inference backend; auto = fastest measured for the device"
    )
    checkpoint: str | None = Field(
        None, description="Model checkpoint file; unset = shipped default heads on ImageNet EfficientNet-Lite0"
    )
    model_cache_dir: str = Field("~/.cache/galleryrank", description="Where exported ONNX graphs are cached")
    model_server: str = Field(
        "",
        description="grpc://host:port of a Triton model server (galleryrank model-server, or Triton with the "
        "export --triton repository) that scores instead of an in-process model; empty = in-process",
    )
    model_server_timeout_s: float = Field(
        10.0, gt=0, description="Deadline of one model-server request; failed requests are retried, never dropped"
    )

    # --- Ranking -----------------------------------------------------------------
    ranking_strategy: str = Field(
        "default", description="Gallery ordering strategy: default, xquad, pm2, mmr, dpp, interleave, aesthetic, ..."
    )
    ranking_diversity: float | None = Field(
        None, ge=0, le=1, description="Aesthetics/diversity trade-off 0..1; unset = the benchmarked default (0.85)"
    )

    # --- Operations ----------------------------------------------------------------
    metrics_port: int = Field(9108, ge=0, le=65535, description="Prometheus /metrics, /healthz, /readyz; 0 = off")
    metrics_host: str = Field(
        "0.0.0.0",
        description="Bind address of the metrics/health server; all interfaces so kubelet probes and Prometheus reach the pod IP",
    )
    log_level: str = Field("INFO", description="Python log level")
    log_json: bool = Field(False, description="Structured JSON log lines")
    stop_when_idle_s: float | None = Field(
        None, description="Exit after this many seconds with no new records (demo, replay, tests)"
    )
    serve_host: str = Field("127.0.0.1", description="Read API / gallery page bind address")
    serve_port: int = Field(8080, ge=0, le=65535, description="Read API / gallery page port")
    review_rate_per_minute: int = Field(
        60, ge=1, description="Writes (labels, ratings, pins, hides) one reviewer may make per minute"
    )
    review_raters: int = Field(3, ge=1, le=50, description="Different reviewers who rate each photo (review queue)")
    review_trusted_header: str = Field(
        "",
        description="Header naming the reviewer, set by an authenticating reverse proxy (e.g. X-Forwarded-User); "
        "empty = off (docs/labelling.md)",
    )
    review_trusted_proxies: str = Field(
        "", description="Comma-separated networks (CIDR) whose requests may carry review_trusted_header"
    )
    processes: int = Field(
        0,
        ge=0,
        le=256,
        description="Scorer processes `consume` runs on this host (one group member each, children on "
        "metrics_port+1+i); 0 = what fits the host (cores, memory) and the topic (partitions)",
    )
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        "auto", description="asyncio event loop of the service; auto = uvloop when installed (galleryrank[fast])"
    )

    # --- Checks of values a type cannot express (run before anything is loaded) ----
    @field_validator("topic", "dlq_topic", "labels_topic", "backfill_topic")
    @classmethod
    def _topic(cls, v: str | None) -> str | None:
        # Every stored record keeps its source "<topic>/<partition>" behind one length byte
        # (state/records.py): 230 bytes leave room for ".backfill" and a 10-digit partition.
        if v and len(v.encode()) > MAX_TOPIC_BYTES:
            raise ValueError(f"topic names are at most {MAX_TOPIC_BYTES} bytes (got {len(v.encode())})")
        return v

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers(cls, v: str) -> str:
        entries = [e.strip() for e in v.split(",")]
        bad = [e for e in entries if not _HOST_PORT_RE.fullmatch(e)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not host:port")
        return ",".join(entries)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("redis", "rediss", "unix") or (parts.scheme != "unix" and not parts.hostname):
            raise ValueError("must be redis://host:port/db, rediss://... or unix://path")
        try:
            parts.port  # noqa: B018 - validates the port
        except ValueError:
            raise ValueError("has an invalid port") from None
        return v

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str | None) -> str | None:
        # The namespace module's rule, reserved names included (GALLERYRANK_NAMESPACE=active is refused).
        return None if v is None else validate_name(v)

    @model_validator(mode="after")
    def _labels_topic(self) -> Settings:
        # Each input topic has its own labels topic: a test's, a staging stack's.
        if not self.labels_topic:
            self.labels_topic = f"{self.topic}.labels"
        return self

    @field_validator("download_allow_networks")
    @classmethod
    def _allow(cls, v: str) -> str:
        from .images.netguard import parse_allow_networks

        parse_allow_networks(v)  # ValueError names the bad entry
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not _DEVICE_RE.fullmatch(v):
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return v

    @field_validator("model_server")
    @classmethod
    def _model_server(cls, v: str) -> str:
        if v:  # the same rule as models/triton_client.py parse_url (not imported: it pulls in torch)
            parts = urlsplit(v)
            if parts.scheme != "grpc" or not parts.hostname or not parts.port:
                raise ValueError(f"must be grpc://host:port, not {v!r}")
        return v

    @field_validator("ranking_strategy")
    @classmethod
    def _strategy(cls, v: str) -> str:
        from galleryrank.ranking import get_strategy

        try:
            get_strategy(v)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
        return v

    @field_validator("checkpoint")
    @classmethod
    def _checkpoint(cls, v: str | None) -> str | None:
        # An explicit checkpoint either takes effect or stops the service: never a silent default.
        if v is not None and not os.path.isfile(os.path.expanduser(v)):
            raise ValueError(f"file {v!r} does not exist")
        return v

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, v: str) -> str:
        if not isinstance(logging.getLevelName(v.upper()), int):
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return v

    @field_validator("metrics_host", "serve_host")
    @classmethod
    def _host(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,253}", v):
            raise ValueError("must be an IP address or a host name")
        return v

    def __repr_args__(self):
        # A Redis password may ride in redis_url (redis://:secret@host): never print it.
        for name, value in super().__repr_args__():
            yield name, (mask_password(value) if name == "redis_url" and isinstance(value, str) else value)


def mask_password(url: str) -> str:
    """The URL with any password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def load_settings(**overrides: object) -> Settings:
    """Settings from env vars, with explicit overrides (CLI flags) on top.

    Raises :class:`ConfigError` with one line per the rule "config errors are one
    clear line and exit code 2" (the CLI turns it into that), never a traceback.
    """
    clean: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, clean)) from None


def describe_errors(exc: ValidationError, flags: dict[str, object]) -> str:
    """'--batch-size / GALLERYRANK_BATCH_SIZE = 0: must be >= 1' for each error, on one line."""
    parts = []
    for err in exc.errors():
        name = str(err["loc"][0]) if err["loc"] else "?"
        source = f"--{name.replace('_', '-')}" if name in flags else f"GALLERYRANK_{name.upper()}"
        value = err.get("input")
        if name == "redis_url" and isinstance(value, str):
            value = mask_password(value)
        shown = "***" if name == "sasl_password" else repr(value)[:80]
        message = err["msg"].removeprefix("Value error, ")
        parts.append(f"{source} = {shown}: {message}")
    return "invalid configuration: " + "; ".join(parts)
