"""/metrics, /healthz and /readyz of a running scorer, scraped over HTTP like Prometheus does."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from galleryrank.consumer import metrics
from galleryrank.consumer.dev.embedded import free_port
from galleryrank.consumer.runtime import run_scorer
from galleryrank.consumer.stream.kafka import create_topics
from galleryrank.consumer.stream.produce import publish, upserted
from tests.helpers import drop_namespace

pytestmark = pytest.mark.integration

EVENTS = 12
STAGES = ("download", "decode", "score", "redis", "commit")


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(scrape: dict, name: str, **labels) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


def local(name: str, **labels) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.slow  # > 7 s: in make test, not in make test-fast
async def test_running_scorer_exposes_moving_metrics_and_health(settings, model, redis, image_server, sample_jpegs):
    settings = settings.model_copy(update={"metrics_port": free_port(), "max_in_flight": 4, "batch_size": 4})
    base = f"http://127.0.0.1:{settings.metrics_port}"
    names = sorted(sample_jpegs)
    await create_topics(settings, partitions=2)
    await publish(
        settings, [upserted(f"h-m-{i % 3}", f"img-{i}", image_server.url(names[i % len(names)])) for i in range(EVENTS)]
    )
    # The registry is process-wide: compare against what earlier tests left behind.
    before = {
        "applied": local("galleryrank_events_total", outcome="applied"),
        "scored": local("galleryrank_images_scored_total"),
        "batches": local("galleryrank_batch_size_count"),
        **{s: local("galleryrank_stage_seconds_count", stage=s) for s in STAGES},
    }
    scraped: dict = {}

    async def scrape_until_caught_up() -> None:
        """Poll like Prometheus until the run shows all events applied and lag 0 (or give up)."""
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                await asyncio.sleep(0.2)
                try:
                    async with http.get(f"{base}/metrics") as resp:
                        scraped["metrics_status"] = resp.status
                        scraped["metrics"] = m = samples(await resp.text())
                    for path in ("/healthz", "/readyz"):
                        async with http.get(base + path) as resp:
                            scraped[path] = (resp.status, await resp.json())
                except aiohttp.ClientConnectionError:
                    continue  # not listening yet
                lags = {value(m, "galleryrank_consumer_lag", partition=str(p)) for p in range(2)}
                applied = value(m, "galleryrank_events_total", outcome="applied") - before["applied"]
                if applied == EVENTS and lags == {0.0} and ("galleryrank_consumer_lag", (("partition", "1"),)) in m:
                    return

    try:
        # The scorer exits after 3 idle seconds: time enough for the last scrapes.
        settings = settings.model_copy(update={"stop_when_idle_s": 3.0})
        scraper = asyncio.create_task(scrape_until_caught_up())
        summary = await asyncio.wait_for(run_scorer(settings, model, redis=redis, install_signal_handlers=False), 240)
        await scraper
        assert summary.applied == EVENTS
        assert scraped["metrics_status"] == 200
        m = scraped["metrics"]
        assert value(m, "galleryrank_events_total", outcome="applied") - before["applied"] == EVENTS
        assert value(m, "galleryrank_images_scored_total") - before["scored"] == EVENTS
        new_batches = value(m, "galleryrank_batch_size_count") - before["batches"]
        assert 1 <= new_batches <= EVENTS  # every image rode in some batch of at most batch_size
        assert value(m, "galleryrank_batch_size_bucket", le="4.0") >= new_batches
        for stage in STAGES:
            assert value(m, "galleryrank_stage_seconds_count", stage=stage) > before[stage], stage
        # Caught up: lag is 0 on both partitions; nothing paused any more; a commit happened.
        assert {value(m, "galleryrank_consumer_lag", partition=str(p)) for p in range(2)} == {0.0}
        assert ("galleryrank_consumer_lag", (("partition", "0"),)) in m  # present, not defaulted
        assert value(m, "galleryrank_paused_partitions") == 0.0
        assert value(m, "galleryrank_last_commit_timestamp_seconds") > 0
        assert scraped["/healthz"][0] == 200 and scraped["/healthz"][1]["ok"] is True
        assert scraped["/readyz"] == (200, {"ready": True})
    finally:
        await drop_namespace(redis, settings.namespace)
