"""Prometheus metrics of the scorer, and the small HTTP server that exposes them.

Names are part of the operations contract: the alert rules in
``deploy/prometheus/alerts.yaml`` and the KEDA/HPA scaler refer to them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS = Counter(
    "galleryrank_events_total",
    "Events finished, by outcome (applied, deleted, override, dlq, stale)",
    ["outcome"],
    registry=REGISTRY,
)
DLQ = Counter("galleryrank_dlq_total", "Events sent to the dead-letter topic, by reason", ["reason"], registry=REGISTRY)
IMAGES_SCORED = Counter("galleryrank_images_scored_total", "Images scored by the model", registry=REGISTRY)
BATCH_SIZE = Histogram(
    "galleryrank_batch_size",
    "Images per model micro-batch",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
    registry=REGISTRY,
)
STAGE_SECONDS = Histogram(
    "galleryrank_stage_seconds",
    "Time spent per pipeline stage (download, decode, score, redis, commit) per item or batch",
    ["stage"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "galleryrank_consumer_lag", "High watermark minus committed offset, per partition", ["partition"], registry=REGISTRY
)
PAUSED_PARTITIONS = Gauge("galleryrank_paused_partitions", "Partitions paused by backpressure", registry=REGISTRY)
IN_FLIGHT = Gauge("galleryrank_in_flight_events", "Events fetched but not yet committed", registry=REGISTRY)
LAST_COMMIT = Gauge(
    "galleryrank_last_commit_timestamp_seconds", "Unix time of the last successful offset commit", registry=REGISTRY
)
REDIS_RETRIES = Counter(
    "galleryrank_redis_retries_total", "Redis write attempts that failed and were retried", registry=REGISTRY
)
DLQ_DEGRADED = Counter(
    "galleryrank_dlq_degraded_total",
    "DLQ records the broker refused as they were, sent truncated or as headers only (form)",
    ["form"],
    registry=REGISTRY,
)
DLQ_SEND_RETRIES = Counter(
    "galleryrank_dlq_send_retries_total", "DLQ sends that failed on broker trouble and were retried", registry=REGISTRY
)
HOTEL_CACHE = Counter(
    "galleryrank_hotel_cache_total",
    "Hotel state cache of the writer: hit, miss (loaded from Redis), evicted, conflict (another writer moved it)",
    ["event"],
    registry=REGISTRY,
)
MODEL_INFO = Gauge(
    "galleryrank_model_info",
    "The model this process scores with (value 1; the labels say which)",
    ["model_version", "checkpoint", "backend", "device"],
    registry=REGISTRY,
)
STAGE_OLDEST = Gauge(
    "galleryrank_stage_oldest_seconds",
    "Age of the oldest item in progress in a stage (a stuck stage grows here)",
    ["stage"],
    registry=REGISTRY,
)
DECODE_BUSY = Gauge("galleryrank_decode_workers_busy", "Decode worker processes decoding now", registry=REGISTRY)
DECODE_KILLED = Gauge(
    "galleryrank_decode_workers_killed",
    "Decode workers killed over their CPU or wall budget (since start)",
    registry=REGISTRY,
)
DECODE_PEAK_RSS = Gauge(
    "galleryrank_decode_worker_peak_rss_bytes", "Largest peak RSS any decode worker reported", registry=REGISTRY
)
DECODE_PATH = Gauge(
    "galleryrank_decode_path",
    "The decode path this scorer runs (value 1): hardware, nvjpeg or cpu, and why (consumer/images/decode_path.py)",
    ["path", "reason"],
    registry=REGISTRY,
)
DECODE_FALLBACKS = Counter(
    "galleryrank_decode_fallbacks_total",
    "Images a GPU decode path handed to the CPU decoder, by path and reason",
    ["path", "reason"],
    registry=REGISTRY,
)
