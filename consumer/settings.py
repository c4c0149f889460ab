"""One settings object for every galleryrank command.

Every field reads the env var ``GALLERYRANK_<FIELD>`` (upper case) and has a
CLI flag ``--<field-with-dashes>`` (see ``consumer/cli/main.py``). README.md lists
them all; ``tests/unit/test_settings.py`` checks that the README, compose and
the Kubernetes ConfigMap name only settings that exist here.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GALLERYRANK_", extra="ignore")

    # --- Kafka -------------------------------------------------------------
    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated")
    topic: str = Field("hotel-images", description="Input topic with image events")
    dlq_topic: str = Field("hotel-images.dlq", description="Dead-letter topic for events that cannot be applied")
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

    # --- Micro-batching ------------------------------------------------------
    batch_size: int = Field(32, ge=1, le=1024, description="Largest micro-batch sent to the model")
    max_batch_delay_ms: float = Field(
        0.0, ge=0, description="How long a non-full batch may wait for more images (0 = run what is there, as Triton)"
    )
    max_in_flight: int = Field(
        512, ge=1, description="Events held between fetch and commit; above it partitions are paused"
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
    decode_workers: int = Field(0, ge=0, description="Decode worker threads; 0 = number of CPU cores")

    # --- Model -----------------------------------------------------------------
    device: str = Field("auto", description="'auto' (cuda if available), 'cuda', 'cuda:N' or 'cpu'")
    backend: Literal["auto", "torch", "torch-bf16", "onnxruntime"] = Field(
        "auto", description="Inference backend; auto = fastest measured for the device"
    )
    checkpoint: str | None = Field(
        None, description="Model checkpoint file; unset = shipped default heads on ImageNet EfficientNet-Lite0"
    )
    model_cache_dir: str = Field("~/.cache/galleryrank", description="Where exported ONNX graphs are cached")

    # --- Ranking -----------------------------------------------------------------
    ranking_strategy: str = Field(
        "default", description="Gallery ordering strategy: default, xquad, pm2, mmr, dpp, interleave, aesthetic, ..."
    )
    ranking_diversity: float | None = Field(
        None, ge=0, le=1, description="Aesthetics/diversity trade-off 0..1; unset = the benchmarked default (0.9)"
    )

    # --- Operations ----------------------------------------------------------------
    metrics_port: int = Field(9108, ge=0, description="Prometheus /metrics, /healthz, /readyz; 0 = off")
    log_level: str = Field("INFO", description="Python log level")
    log_json: bool = Field(False, description="Structured JSON log lines")
    stop_when_idle_s: float | None = Field(
        None, description="Exit after this many seconds with no new records (demo, replay, tests)"
    )
    serve_host: str = Field("127.0.0.1", description="Read API / gallery page bind address")
    serve_port: int = Field(8080, ge=0, description="Read API / gallery page port")

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
    """Settings from env vars, with explicit overrides (CLI flags) on top."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**clean)
