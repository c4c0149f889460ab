"""Hostile and broken input through the real consumer (real Tansu, Redis, HTTP, model).

Every case of tests/hostile_events.py ends exactly as expected: scored into its
hotel's gallery with the right score, a tombstone, or the DLQ with its reason.
The service never stops, memory stays bounded, secrets stay out of logs and
DLQ headers, and nothing reaches a refused address.
"""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import orjson
import pytest
from aiohttp import web
from pydantic import SecretStr

from galleryrank.consumer.images.decode import decode_image
from galleryrank.consumer.images.download import DownloadError, ImageDownloader
from galleryrank.consumer.settings import Settings
from galleryrank.consumer.state import keys
from galleryrank.consumer.state.keys import dlq_marker_pattern
from galleryrank.consumer.state.records import decode_record
from galleryrank.consumer.stream.kafka import create_topics
from galleryrank.consumer.stream.produce import publish, upserted
from tests.fault_support import peak_rss_mb, trimmed_rss_mb
from tests.helpers import drop_namespace, galleries, headers, read_topic, run_until_caught_up
from tests.hostile_events import DELETED, SCORED, URL_PASSWORD, hostile_events
from tests.hostile_images import case, corpus
from tests.integration.test_download import RawServerProcess, RebindingResolver

pytestmark = pytest.mark.integration


class CorpusServer:
    """/img/<case> serves tests.hostile_images with its Content-Type; /status/<code>; /redirect-to?target=."""

    def __init__(self) -> None:
        self.cases = {c.name: c for c in corpus()}
        self.base = ""
        self.runner: web.AppRunner | None = None

    async def image(self, request: web.Request) -> web.Response:
        c = self.cases[request.match_info["name"]]
        return web.Response(body=c.data, headers={"Content-Type": c.content_type})

    async def status(self, request: web.Request) -> web.Response:
        extra = {"Retry-After": request.query["retry_after"]} if "retry_after" in request.query else {}
        return web.Response(status=int(request.match_info["code"]), text="no", headers=extra)

    async def redirect_to(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["target"])

    async def start(self) -> CorpusServer:
        app = web.Application()
        app.router.add_get("/img/{name}", self.image)
        app.router.add_get("/status/{code}", self.status)
        app.router.add_get("/redirect-to", self.redirect_to)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self


@pytest.fixture
async def corpus_server():
    server = await CorpusServer().start()
    yield server
    await server.runner.cleanup()


@pytest.fixture(scope="module")
def raw_server():
    server = RawServerProcess()
    yield server
    server.close()


def independent_aesthetic(model, data: bytes) -> float:
    """The score of one image computed outside the consumer (same decode, batch of one)."""
    pixels = decode_image(data, model.input_size).pixels
    return float(model.score(pixels[np.newaxis]).aesthetic[0])


@pytest.mark.slow  # 126 hostile cases through the real consumer, twice
@pytest.mark.timeout(180)
async def test_hostile_corpus_through_the_real_consumer(settings, model, redis, corpus_server, raw_server, caplog):
    caplog.set_level(logging.INFO)
    s = settings.model_copy(
        update={
            "download_timeout_s": 2.0,
            "download_connect_timeout_s": 0.5,
            "download_retries": 1,
            "download_max_bytes": 4_000_000,
            "sasl_password": SecretStr("Sasl-Pw-never-logged"),
        }
    )
    cases = hostile_events(corpus_server.base, raw_server.base)
    assert len(cases) >= 30
    sentinel = upserted("hx-sentinel", "after-everything", f"{corpus_server.base}/img/jpeg_rgb")
    await create_topics(s, partitions=1)  # one partition: offset i is case i
    await publish(s, [(c.key, c.value) for c in cases] + [sentinel])
    # Warm the model first (its first full batch allocates its working buffers), so that
    # the RSS difference below is what the corpus cost, not the model's one-time set-up.
    model.score(np.zeros((s.batch_size, 3, model.input_size, model.input_size), np.uint8))
    rss_before = trimmed_rss_mb()
    try:
        summary = await run_until_caught_up(s, model, redis, partitions=1)
        rss_after, peak_after = trimmed_rss_mb(), peak_rss_mb()
        assert summary.events == len(cases) + 1, "the service processed every record and did not stop"

        expect_dlq = [c for c in cases if c.expect not in (SCORED, DELETED)]
        dead = await read_topic(s, s.dlq_topic, expected=len(expect_dlq))
        by_offset = {int(headers(r)["source_offset"]): r for r in dead}
        assert len(dead) == len(by_offset), "each bad event once"

        outcomes: dict[str, str] = {}
        for offset, c in enumerate(cases):
            if offset in by_offset:
                rec = by_offset[offset]
                h = headers(rec)
                outcomes[c.name] = h["reason"]
                assert (rec.key, rec.value) == (c.key, c.value), f"{c.name}: the DLQ keeps the original record"
                assert h["error"] and h["source_topic"] == s.topic and h["failed_at"], c.name
            elif c.expect == DELETED:
                raw = await redis.hget(keys.images_key(s.namespace, c.hotel_id), c.image_id)
                outcomes[c.name] = DELETED if raw and decode_record(c.image_id, raw).deleted else "missing"
            else:
                doc = (await galleries(redis, s.namespace, [c.hotel_id])).get(c.hotel_id)
                found = [i for i in (doc or {}).get("images", []) if i["image_id"] == c.image_id]
                outcomes[c.name] = SCORED if found else "missing"
                if found:
                    data = (c.image or case("jpeg_rgb")).data
                    assert found[0]["aesthetic"] == pytest.approx(independent_aesthetic(model, data), abs=2e-3), (
                        f"{c.name}: the gallery must carry the score of exactly this image"
                    )
                    assert found[0]["area"] in model.areas
        mismatches = {c.name: (c.expect, outcomes[c.name]) for c in cases if not c.accepts(outcomes[c.name])}
        assert not mismatches, mismatches
        sentinel_doc = (await galleries(redis, s.namespace, ["hx-sentinel"]))["hx-sentinel"]
        assert [i["image_id"] for i in sentinel_doc["images"]] == ["after-everything"]

        # A photo shown with its EXIF orientation scores like the upright photo.
        upright = independent_aesthetic(model, case("jpeg_rgb").data)
        for o in range(2, 9):
            doc = await galleries(redis, s.namespace, [f"hx-{_index(cases, f'image_jpeg_exif_orientation_{o}')}"])
            (entry,) = next(iter(doc.values()))["images"]
            assert entry["aesthetic"] == pytest.approx(upright, abs=0.05), o

        # Secrets never reach the log or DLQ headers (the original value is kept as sent, by contract).
        assert URL_PASSWORD not in caplog.text and "Sasl-Pw-never-logged" not in caplog.text
        for rec in dead:
            assert all(URL_PASSWORD.encode() not in v for _, v in rec.headers)
        # Log lines stay one line each: no id with a newline or escape got into a message unquoted.
        assert "\x1b[31m" not in caplog.text

        grown = rss_after - rss_before
        assert grown < 400, f"RSS grew by {grown:.0f} MB over the corpus"
        # Bounded, not leaking: the whole corpus once more (new offsets) ends the same way
        # and leaves RSS where the first pass left it (allocator pools are reused).
        await publish(s, [(c.key, c.value) for c in cases])
        second = await run_until_caught_up(s, model, redis, partitions=1)
        rss_second = trimmed_rss_mb()
        assert second.events == len(cases)
        first_reasons = Counter(headers(r)["reason"] for r in dead)
        dead_both = await read_topic(s, s.dlq_topic, expected=2 * len(dead))
        second_reasons = Counter(
            headers(r)["reason"] for r in dead_both if int(headers(r)["source_offset"]) > len(cases)
        )
        assert second_reasons == first_reasons
        # Gross failures (an endless body read to the end, a bomb decoded) cost gigabytes; the
        # allowance covers allocator noise in a long pytest process (measured +35 MB alone).
        assert rss_second - rss_after < 150, f"second pass grew RSS by {rss_second - rss_after:.0f} MB"
        counts = Counter(outcomes.values())
        print(
            "\nHOSTILE "
            + orjson.dumps(
                {
                    "cases": len(cases),
                    "scored": counts[SCORED],
                    "deleted": counts[DELETED],
                    "dead_lettered": len(dead),
                    "reasons": dict(sorted(Counter(headers(r)["reason"] for r in dead).items())),
                    "rss_before_mb": round(rss_before),
                    "rss_after_mb": round(rss_after),
                    "peak_rss_mb": round(peak_after),
                    "rss_after_second_pass_mb": round(rss_second),
                    "peak_rss_after_second_pass_mb": round(peak_rss_mb()),
                }
            ).decode(),
            flush=True,
        )
    finally:
        await drop_namespace(redis, s.namespace)
        async for key in redis.scan_iter(match=dlq_marker_pattern(s.group_id), count=500):
            await redis.unlink(key)


def _index(cases, name: str) -> int:
    return next(i for i, c in enumerate(cases) if c.name == name)


def test_settings_never_show_the_sasl_password():
    s = Settings(sasl_username="scorer", sasl_password="Sasl-Pw-repr")
    for text in (repr(s), str(s), s.model_dump_json(), str(s.model_dump())):
        assert "Sasl-Pw-repr" not in text
    assert s.sasl_password.get_secret_value() == "Sasl-Pw-repr"  # still usable by galleryrank.consumer.stream.kafka


@pytest.mark.parametrize(
    ("answers", "category"),
    [
        (["169.254.169.254"], "metadata"),
        (["168.63.129.16"], "Azure WireServer"),
        (["10.1.2.3"], "private"),
        (["169.254.10.10"], "link-local"),
        (["fe80::1"], "IPv6 link-local"),
        (["100.64.0.1"], "carrier-grade NAT"),
        (["127.0.0.2"], "loopback outside the allow-list"),
    ],
)
async def test_redirect_to_a_name_that_resolves_inside_is_refused_before_connecting(corpus_server, answers, category):
    """Redirect *and* DNS together: an allowed server sends us to a harmless-looking
    name whose DNS answer is an internal address. Only 127.0.0.1 is allow-listed."""
    port = corpus_server.base.rsplit(":", 1)[1]
    resolver = RebindingResolver(answers)
    settings = Settings(
        download_allow_networks="127.0.0.1/32",
        download_timeout_s=2.0,
        download_connect_timeout_s=0.5,
        download_retries=0,
    )
    target = f"http://cdn.images.example:{port}/img/jpeg_rgb"
    async with ImageDownloader(settings, resolver=resolver) as downloader:
        assert await downloader.fetch(f"{corpus_server.base}/img/jpeg_rgb")  # the allowed server itself works
        with pytest.raises(DownloadError) as info:
            await downloader.fetch(f"{corpus_server.base}/redirect-to?target={target}")
    assert (info.value.reason, info.value.retriable) == ("blocked_address", False), category
    assert resolver.calls == 1, "the redirect target was resolved and refused"


def test_rediss_url_gives_a_tls_client_with_auth_and_the_ca_bundle():
    """TLS to Redis is configured by the URL alone (the bundled redis-server 6.2 is built
    without TLS, so this checks the client the scorer builds, not a handshake)."""
    from redis.asyncio.connection import SSLConnection

    from galleryrank.consumer.runtime import redis_client

    url = "rediss://scorer:Redis-Tls-Pw@redis.internal:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/ca.pem"
    client = redis_client(Settings(redis_url=url))
    pool = client.connection_pool
    assert pool.connection_class is SSLConnection
    kwargs = pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"]) == ("scorer", "Redis-Tls-Pw")
    assert (kwargs["ssl_cert_reqs"], kwargs["ssl_ca_certs"]) == ("required", "/etc/ca.pem")
    assert "Redis-Tls-Pw" not in repr(client)
