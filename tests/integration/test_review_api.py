"""The review API end to end: tokens from the real `galleryrank reviewers` command, the real read
API server on a real port, a real Tansu broker, a real scorer and real Redis.

- auth: no token, a revoked token, a reviewer on an editor action, a token in a query string, a
  cookie, a wrong token, a trusted-proxy header from an untrusted peer: refused (401/403) and
  nothing published; the rate limit answers 429; no token ever reaches a log line or Redis;
- an area correction through the HTTP API changes the gallery as soon as the scorer applies it,
  and stays through a rerank, a re-upload, a reprocessing of every topic from the start, a
  replay into a new namespace and its promote; label events are fenced (duplicate, late) and bad
  ones dead-lettered with their reason;
- the review queue: suspects first, never the same photo twice to one person, N raters.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import orjson
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from click.testing import CliRunner

from galleryrank.consumer.api.serve import PathOnlyAccessLogger, create_app
from galleryrank.consumer.bluegreen import namespaces
from galleryrank.consumer.bluegreen.replay import run_replay
from galleryrank.consumer.cli.main import cli
from galleryrank.consumer.runtime import run_scorer
from galleryrank.consumer.state import keys
from galleryrank.consumer.state.overrides import decode_overrides
from galleryrank.consumer.state.store import GalleryStore
from galleryrank.consumer.stream.events import LabelArea, encode_event
from galleryrank.consumer.stream.kafka import create_topics
from galleryrank.consumer.stream.produce import publish, upserted
from galleryrank.consumer.stream.scorer import Hooks
from tests.helpers import drop_namespace, headers, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]


# promote moves galleryrank:active: this module runs on a Redis of its own.
@pytest.fixture
def redis_url(private_redis_url):
    return private_redis_url


@pytest.fixture
def redis(private_redis):
    return private_redis


def reviewers_cmd(redis_url: str, *args: str):
    result = CliRunner().invoke(cli, ["reviewers", *args, "--redis-url", redis_url])
    return result


async def add_reviewer(redis_url: str, name: str, role: str) -> str:
    result = await asyncio.to_thread(reviewers_cmd, redis_url, "add", name, "--role", role)
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[0]
    assert token.startswith(f"grv1.{name}.")
    return token


@pytest.fixture
def review_settings(settings):
    return settings.model_copy(update={"labels_topic": f"{settings.topic}.labels", "review_rate_per_minute": 30})


@pytest.fixture
async def people(redis, redis_url):
    tag = uuid.uuid4().hex[:6]
    names = {role: f"{role}-{tag}" for role in ("reviewer", "editor", "revoked", "other")}
    tokens = {}
    for role, name in names.items():
        tokens[role] = await add_reviewer(redis_url, name, "editor" if role == "editor" else "reviewer")
    revoked = await asyncio.to_thread(reviewers_cmd, redis_url, "revoke", names["revoked"])
    assert revoked.exit_code == 0, revoked.output
    yield names, tokens
    await redis.hdel(keys.REVIEWERS_KEY, *names.values())


@pytest.fixture
async def api(review_settings, redis):
    server = TestServer(create_app(review_settings, redis=redis), host="127.0.0.1")
    await server.start_server(access_log_class=PathOnlyAccessLogger, access_log=logging.getLogger("aiohttp.access"))
    async with ClientSession(base_url=str(server.make_url(""))) as http:
        yield http
    await server.close()


async def stored_hotel(settings, model, redis, image_server, sample_jpegs, hotel: str, count: int = 4) -> dict:
    """Publish `count` uploads and let a scorer score them; the gallery document."""
    await create_topics(settings, partitions=2)
    names = sorted(sample_jpegs)[:count]
    await publish(settings, [upserted(hotel, f"img-{i}", image_server.url(n)) for i, n in enumerate(names)])
    await run_scorer(settings, model, redis=redis, until_caught_up=True, install_signal_handlers=False)
    return orjson.loads(await redis.get(keys.gallery_key(settings.namespace, hotel)))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_writes_need_an_authenticated_person_and_refused_ones_write_nothing(
    review_settings, model, redis, redis_url, image_server, sample_jpegs, people, api, caplog
):
    caplog.set_level(logging.DEBUG)  # every logger, the access log included
    s = review_settings
    names, tokens = people
    hotel = f"h-auth-{uuid.uuid4().hex[:6]}"
    try:
        doc = await stored_hotel(s, model, redis, image_server, sample_jpegs, hotel, count=2)
        image = doc["images"][0]["image_id"]
        area_path = f"/hotels/{hotel}/images/{image}/area"
        hide_path = f"/hotels/{hotel}/images/{image}/hide"
        body = {"area": "bathroom"}
        refused = [
            ("no token", area_path, {}, ""),
            ("revoked token", area_path, bearer(tokens["revoked"]), ""),
            ("wrong secret", area_path, bearer(tokens["reviewer"][:-4] + "AAAA"), ""),
            ("not bearer", area_path, {"Authorization": f"Basic {tokens['reviewer']}"}, ""),
            ("cookie only", area_path, {"Cookie": f"token={tokens['reviewer']}"}, ""),
            ("token in query", area_path, {}, f"?access_token={tokens['reviewer']}"),
            ("token in query, header too", area_path, bearer(tokens["reviewer"]), f"?token={tokens['reviewer']}"),
            ("reviewer hides", hide_path, bearer(tokens["reviewer"]), ""),
            ("reviewer pins", f"/hotels/{hotel}/pins", bearer(tokens["reviewer"]), ""),
            ("proxy header, no proxy configured", area_path, {"X-Forwarded-User": names["editor"]}, ""),
        ]
        for what, path, hdrs, query in refused:
            async with api.post(path + query, json=body | {"image_ids": [image]}, headers=hdrs) as resp:
                answer = await resp.json()
                assert resp.status in (401, 403), (what, resp.status, answer)
                print(f"{what:38s} -> {resp.status} {answer['error']}")
        async with api.get("/review/queue", params={"hotel": hotel}) as resp:
            assert resp.status == 401
        # Reads stay open.
        async with api.get(f"/hotels/{hotel}/gallery") as resp:
            assert resp.status == 200
        assert not await read_topic(s, s.labels_topic, expected=1, timeout_s=2.0)
        assert not [r for r in await read_topic(s, s.topic, expected=3, timeout_s=2.0) if b'"image.hidden"' in r.value]

        # The same writes, by the right people, are published naming them (not the body's claim).
        async with api.post(
            area_path, json={"area": "bathroom", "reviewer": "mallory"}, headers=bearer(tokens["reviewer"])
        ) as resp:
            assert resp.status == 200, await resp.text()
            sent = await resp.json()
        assert sent["event"]["reviewer"] == names["reviewer"] and sent["topic"] == s.labels_topic
        async with api.post(hide_path, json={}, headers=bearer(tokens["editor"])) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["event"]["author"] == names["editor"]
        for path, payload, kind in (
            (f"/hotels/{hotel}/pins", {"image_ids": [image]}, "gallery.pinned"),
            (f"/hotels/{hotel}/unpin", {}, "gallery.unpinned"),
            (f"/hotels/{hotel}/images/{image}/unhide", {}, "image.unhidden"),
        ):
            async with api.post(path, json=payload, headers=bearer(tokens["editor"])) as resp:
                assert resp.status == 200, await resp.text()
                event = (await resp.json())["event"]
                assert event["type"] == kind and event["author"] == names["editor"]
        async with api.post(f"/hotels/{hotel}/pins", json={"image_ids": []}, headers=bearer(tokens["editor"])) as resp:
            assert resp.status == 400 and (await resp.json())["error"] == "invalid_image_ids"
        (label,) = await read_topic(s, s.labels_topic, expected=1)
        assert orjson.loads(label.value)["reviewer"] == names["reviewer"]
        assert [
            orjson.loads(r.value)["author"]
            for r in await read_topic(s, s.topic, expected=3)
            if b'"image.hidden"' in r.value
        ] == [names["editor"]]
        # Bad values are the client's fault: 400, nothing sent.
        for bad in ({"area": "garage"}, {"area": 7}, {}):
            async with api.post(area_path, json=bad, headers=bearer(tokens["reviewer"])) as resp:
                assert resp.status == 400
        for bad in ({"rating": 0}, {"rating": 11}, {"rating": 5.5}, {"rating": True}):
            async with api.post(
                f"/hotels/{hotel}/images/{image}/rating", json=bad, headers=bearer(tokens["other"])
            ) as resp:
                assert resp.status == 400
        async with api.post(
            area_path,
            data=b"area=kitchen",
            headers=bearer(tokens["reviewer"]) | {"Content-Type": "application/x-www-form-urlencoded"},
        ) as resp:
            assert resp.status == 415  # a cross-site form post cannot be JSON
        assert len(await read_topic(s, s.labels_topic, expected=2, timeout_s=2.0)) == 1

        # Rate limit: review_rate_per_minute writes per person, then 429 with Retry-After.
        statuses = []
        for _ in range(s.review_rate_per_minute + 2):
            async with api.post(
                f"/hotels/{hotel}/images/{image}/rating", json={"rating": 6}, headers=bearer(tokens["other"])
            ) as resp:
                statuses.append(resp.status)
                retry_after = resp.headers.get("Retry-After")
        # Seven 400s above counted as writes tried; the rest up to the limit pass.
        assert statuses[-1] == 429 and retry_after and 200 in statuses
        assert statuses.count(200) + 4 == s.review_rate_per_minute  # the four bad ratings counted too

        # Revoking takes effect at the next request.
        revoked = await asyncio.to_thread(reviewers_cmd, redis_url, "revoke", names["reviewer"])
        assert revoked.exit_code == 0
        async with api.post(area_path, json=body, headers=bearer(tokens["reviewer"])) as resp:
            assert resp.status == 401
        listed = await asyncio.to_thread(reviewers_cmd, redis_url, "list")
        assert names["reviewer"] in listed.stdout and "revoked" in listed.stdout
    finally:
        await drop_namespace(redis, s.namespace)
    # No token (nor its secret) in any log line, in the `list` output or in Redis.
    stored = b"".join((await redis.hgetall(keys.REVIEWERS_KEY)).values())
    for token in tokens.values():
        secret = token.rsplit(".", 1)[1]
        assert secret not in caplog.text and secret.encode() not in stored and secret not in listed.output
    assert "POST /hotels/" in caplog.text  # the access log did run


async def wait_for(predicate, timeout_s: float = 20.0, every_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(every_s)
    raise AssertionError("timed out")


async def test_an_area_correction_changes_the_gallery_at_once_and_survives_rerank_redo_and_replay(
    review_settings, model, redis, image_server, sample_jpegs, people, api
):
    s = review_settings
    names, tokens = people
    hotel = f"h-label-{uuid.uuid4().hex[:6]}"
    replayed = s.namespace + "-r"
    redo = s.model_copy(update={"group_id": s.group_id + "-redo"})
    try:
        before = await stored_hotel(s, model, redis, image_server, sample_jpegs, hotel, count=4)
        hero = before["images"][0]
        areas = sorted(model.areas)
        wrong = next(a for a in areas if a != hero["area"])
        stop = asyncio.Event()

        async def stop_at(_scorer) -> bool:
            return stop.is_set()

        hooks = Hooks(stop_at=stop_at)
        scorer = asyncio.create_task(run_scorer(s, model, redis=redis, install_signal_handlers=False, control=hooks))
        try:

            async def doc() -> dict:
                return orjson.loads(await redis.get(keys.gallery_key(s.namespace, hotel)))

            async def entry(image_id: str, document: dict | None = None) -> dict:
                return next(i for i in (document or await doc())["images"] if i["image_id"] == image_id)

            started = time.monotonic()
            async with api.post(
                f"/hotels/{hotel}/images/{hero['image_id']}/area",
                json={"area": wrong},
                headers=bearer(tokens["reviewer"]),
            ) as resp:
                assert resp.status == 200, await resp.text()
                acked = time.monotonic()

            async def corrected():
                e = await entry(hero["image_id"])
                return e if e["area"] == wrong else None

            e = await wait_for(corrected)
            print(
                f"\nlabel acked in {1e3 * (acked - started):.0f} ms, in the gallery {1e3 * (time.monotonic() - started):.0f} ms after the request"
            )
            assert e["model_area"] == hero["area"] and e["area_confidence"] == 1.0
            assert "area set by an editor" in e["reason"]

            # With the scorer running (the first label waited for its group join), a correction
            # shows in the gallery as soon as the scorer applied it: no download, no model.
            second = before["images"][1]
            other_area = next(a for a in areas if a != second["area"])
            started = time.monotonic()
            async with api.post(
                f"/hotels/{hotel}/images/{second['image_id']}/area",
                json={"area": other_area},
                headers=bearer(tokens["editor"]),
            ) as resp:
                assert resp.status == 200

            async def corrected_too():
                return (await entry(second["image_id"]))["area"] == other_area

            await wait_for(corrected_too, every_s=0.02)
            print(f"second label: in the gallery {1e3 * (time.monotonic() - started):.0f} ms after the request")

            # Ratings are counted per photo, once per reviewer.
            for who in ("reviewer", "editor"):
                async with api.post(
                    f"/hotels/{hotel}/images/{hero['image_id']}/rating", json={"rating": 8}, headers=bearer(tokens[who])
                ) as resp:
                    assert resp.status == 200

            async def rated():
                ov = decode_overrides(await redis.get(keys.overrides_key(s.namespace, hotel)))
                return ov.rating_count(hero["image_id"]) == 2

            await wait_for(rated)

            # Fencing and the DLQ for label events: a duplicate and a late label change nothing,
            # hostile ones go to the DLQ with their reason, the scorer keeps going.
            sent = [r for r in await read_topic(s, s.labels_topic, expected=4) if b"label.area" in r.value][0]
            late = LabelArea(
                "late-1",
                hotel,
                hero["image_id"],
                names["other"],
                "m",
                hero["url"],
                hero["area"],
                "2001-01-01T00:00:00Z",
            )
            label = orjson.loads(sent.value)
            hostile = [
                (hotel.encode(), _with(label, area="Garage!")),
                (hotel.encode(), _with(label, event_id="u-1", area="not_an_area_of_the_model")),
                (hotel.encode(), _with(label, event_id="r-1", type="label.rating", rating=99)),
                (hotel.encode(), _with(label, event_id="n-1", reviewer=None)),
                (b"another-hotel", _with(label, event_id="k-1")),
                (hotel.encode(), b"{not json"),
            ]
            duplicate = (hotel.encode(), _with(label, area=hero["area"]))  # same event_id, another area
            await publish(s, [encode_event(late), duplicate, *hostile], topic=s.labels_topic)
            dead = await read_topic(s, s.dlq_topic, expected=len(hostile))
            reasons = sorted(headers(r)["reason"] for r in dead)
            assert reasons == sorted(
                ["invalid_area", "unknown_area", "invalid_rating", "missing_field", "key_mismatch", "invalid_json"]
            ), reasons
            assert (await entry(hero["image_id"]))["area"] == wrong

            # A re-upload of the photo (new scores, new event) keeps the label.
            await publish(s, [upserted(hotel, hero["image_id"], hero["url"])])

            async def rescored():
                ov = await redis.hget(keys.images_key(s.namespace, hotel), hero["image_id"])
                return ov is not None and (await entry(hero["image_id"]))["area"] == wrong

            await asyncio.sleep(2.0)
            assert await rescored()
        finally:
            stop.set()
            await scorer
        after = await doc()

        # A rerank (no model) keeps it.
        await GalleryStore(redis).rerank(s.namespace, [hotel])
        assert await entry(hero["image_id"]) == await entry(hero["image_id"], after)

        # Every topic reprocessed from the start by a new group into the same namespace: the
        # fences recognise every event, the document does not move.
        await run_scorer(redo, model, redis=redis, until_caught_up=True, install_signal_handlers=False)
        assert await doc() == after

        # `galleryrank replay` (every subscribed topic, labels included) into a new namespace
        # rebuilds it; the promote switches the website to it.
        await run_replay(s, replayed, model, redis)
        other = orjson.loads(await redis.get(keys.gallery_key(replayed, hotel)))
        e = next(i for i in other["images"] if i["image_id"] == hero["image_id"])
        assert e["area"] == wrong and e["model_area"] == hero["area"] and "area set by an editor" in e["reason"]
        ov = decode_overrides(await redis.get(keys.overrides_key(replayed, hotel)))
        assert ov.rating_count(hero["image_id"]) == 2
        await redis.set(keys.ACTIVE_KEY, s.namespace)
        assert await namespaces.promote(redis, replayed) == s.namespace
        active = (await redis.get(keys.ACTIVE_KEY)).decode()
        website = orjson.loads(await redis.get(keys.gallery_key(active, hotel)))
        assert active == replayed and next(i for i in website["images"] if i["image_id"] == hero["image_id"]) == e
    finally:
        await drop_namespace(redis, s.namespace)
        await drop_namespace(redis, replayed)


def _with(event: dict, **changes) -> bytes:
    body = {**event, **changes}
    return orjson.dumps({k: v for k, v in body.items() if v is not None})
