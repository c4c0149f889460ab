"""Faults: SIGKILLs, a Redis outage, a failing image server and a group that
grows and shrinks, each checked against an uninterrupted reference run.

Every test prints one `FAULTS {...}` line with its measured figures (run
pytest with `-s` to see them); docs/reliability.md quotes them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections import Counter, defaultdict

import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiokafka import TopicPartition
from pydantic import SecretStr
from redis.exceptions import RedisError

from galleryrank.consumer import metrics
from galleryrank.consumer.runtime import build_scorer, caught_up
from galleryrank.consumer.state import keys
from galleryrank.consumer.state.keys import dlq_marker_pattern
from galleryrank.consumer.stream.kafka import create_topics
from galleryrank.consumer.stream.produce import publish, upserted
from galleryrank.consumer.stream.scorer import Hooks
from tests.crash_harness import ConsumerProcess, kill_schedule
from tests.fault_support import (
    dlq_by_source,
    image_states,
    mixed_events,
    peak_rss_mb,
    wait_for_log,
)
from tests.helpers import (
    drop_namespace,
    galleries,
    headers,
    input_partitions,
    read_topic,
    run_until_caught_up,
    without_timestamps,
)
from tests.private_redis import PrivateRedis

pytestmark = [pytest.mark.integration, pytest.mark.onnx_model]


def report(name: str, **figures) -> None:
    print(f"\nFAULTS {orjson.dumps({'test': name, **figures}).decode()}", flush=True)


async def drop_markers(redis, group_id: str) -> None:
    async for key in redis.scan_iter(match=dlq_marker_pattern(group_id), count=500):
        await redis.unlink(key)


# --------------------------------------------------------------------------- 1. crash safety
CRASH_HOTELS, CRASH_PER_HOTEL, CRASH_KILLS = 100, 20, 10


@pytest.mark.slow
@pytest.mark.timeout(480)
async def test_ten_seeded_sigkills_over_2000_events_lose_nothing_and_apply_nothing_twice(
    settings, model, redis, small_server, tmp_path
):
    urls = [small_server.url(n) for n in sorted(small_server.images)]
    events, bad = mixed_events(urls, small_server.url("missing.jpg"), CRASH_HOTELS, CRASH_PER_HOTEL, seed=2026)
    assert len(events) >= 2000 and bad > 0
    hotels = [f"f-{h}" for h in range(CRASH_HOTELS)]
    await create_topics(settings, partitions=4)
    await publish(settings, events)

    ref = settings.model_copy(
        update={
            "namespace": settings.namespace + "-ref",
            "group_id": settings.group_id + "-ref",
            "dlq_topic": settings.dlq_topic + "-ref",
        }
    )
    crash = settings.model_copy(update={"namespace": settings.namespace + "-crash", "batch_size": 32})
    proc = ConsumerProcess(crash, tmp_path / "consumer.log")
    kill_progress, child_peak_mb, starts_s = [], [], []
    # The reference run shares the CPUs with the crash runs but mostly overlaps
    # their idle time (start-up, session timeouts, joins).
    test_started = time.monotonic()
    reference = asyncio.create_task(run_until_caught_up(ref, model, redis, partitions=4))
    try:
        for delay in kill_schedule(seed=7, kills=CRASH_KILLS, low_s=1.0, high_s=7.0):
            log_start = (tmp_path / "consumer.log").stat().st_size if (tmp_path / "consumer.log").exists() else 0
            started = time.monotonic()
            proc.start()
            # Kill at a seeded moment after the process got its partitions: every
            # kill then lands in the middle of real work, however slow start-up is.
            assert await wait_for_log(tmp_path / "consumer.log", b"assigned partitions", log_start, 90), (
                "the consumer process never got partitions"
            )
            starts_s.append(round(time.monotonic() - started, 1))
            await asyncio.sleep(delay)
            child_peak_mb.append(peak_rss_mb(proc.proc.pid))
            proc.kill()
            kill_progress.append(sum([await redis.hlen(keys.images_key(crash.namespace, h)) for h in hotels]))
        assert proc.kills == CRASH_KILLS

        kills_done = time.monotonic()
        finish = await run_until_caught_up(crash, model, redis, partitions=4)
        finished = time.monotonic()
        await reference

        expected = without_timestamps(await galleries(redis, ref.namespace, hotels))
        got = without_timestamps(await galleries(redis, crash.namespace, hotels))
        assert len(expected) == CRASH_HOTELS
        assert got == expected, "galleries after the SIGKILLs differ from the uninterrupted run"
        # Per-image state too: same fences (partition, offset), event ids, tombstones and scores.
        assert await image_states(redis, crash.namespace, hotels) == await image_states(redis, ref.namespace, hotels)
        images_total = sum(len(v) for v in (await image_states(redis, ref.namespace, hotels)).values())
        assert 0 < kill_progress[-1] < images_total, "the last kill must land before the backlog was done"

        ref_dead = dlq_by_source(await read_topic(ref, ref.dlq_topic, expected=bad), headers)
        crash_records = await read_topic(crash, crash.dlq_topic, expected=bad)
        crash_dead = dlq_by_source(crash_records, headers)
        assert sum(ref_dead.values()) == len(ref_dead) == bad
        assert set(crash_dead) == set(ref_dead), "the DLQ must hold exactly the bad events"
        duplicates = sum(crash_dead.values()) - len(crash_dead)
        # Redis markers make a second DLQ send a no-op; only a kill inside the
        # ~ms between the DLQ ack and the marker write can slip one through.
        assert duplicates <= CRASH_KILLS
        report(
            "sigkill",
            events=len(events),
            bad=bad,
            kills=proc.kills,
            images=images_total,
            progress_at_kills=kill_progress,
            start_to_assigned_s=starts_s,
            lost=0,
            gallery_mismatches=0,
            dlq_records=sum(crash_dead.values()),
            dlq_duplicates=duplicates,
            dlq_resends_suppressed_by_markers=(tmp_path / "consumer.log").read_bytes().count(b"is already in the DLQ"),
            redone_recognised_stale=finish.stale,
            child_peak_rss_mb=round(max(child_peak_mb)),
            kill_phase_s=round(kills_done - test_started),
            finish_s=round(finished - kills_done),
            reference_wait_s=round(time.monotonic() - finished),
        )
    finally:
        proc.stop()
        if not reference.done():
            reference.cancel()
        for ns in (ref.namespace, crash.namespace):
            await drop_namespace(redis, ns)
        for group in (ref.group_id, crash.group_id):
            await drop_markers(redis, group)


# --------------------------------------------------------------------------- 2a. Redis outage
async def until(predicate, timeout_s: float, every_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(every_s)
    return False


async def committed_positions(settings, partitions: int) -> dict[int, int]:
    """The group's committed offsets as the broker has them (a probe that does not join the group)."""
    from galleryrank.consumer.stream.kafka import make_consumer

    probe = make_consumer(settings, settings.group_id)
    await probe.start()
    try:
        out = {}
        for p in range(partitions):
            out[p] = await probe.committed(TopicPartition(settings.topic, p)) or 0
        return out
    finally:
        await probe.stop()


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_redis_killed_mid_run_pauses_commits_only_what_is_written_and_resumes(
    settings, model, small_server, tmp_path, caplog
):
    """SIGKILL the Redis server under load, keep it down 4 s, restart it on the same port.

    "Commits nothing it has not written" is checked against the exact durable
    state at the kill: the append-only file (fsync always) is copied while Redis
    is down and loaded into a second server; every good event below a
    committed offset must be reflected there.
    """
    caplog.set_level(logging.INFO)
    password = "Redis-Pw-" + os.urandom(6).hex()
    server = PrivateRedis(password=password).start()
    client = aioredis.Redis.from_url(server.url)
    partitions, hotels = 4, [f"r-{h}" for h in range(30)]
    s = settings.model_copy(
        update={"redis_url": server.url, "max_in_flight": 48, "sasl_password": SecretStr("Kafka-Pw-unused")}
    )
    urls = [small_server.url(n) for n in sorted(small_server.images)]
    events, bad = mixed_events(urls, small_server.url("missing.jpg"), len(hotels), 12, seed=5, prefix="r")
    await create_topics(s, partitions=partitions)
    await publish(s, events)
    snapshot = None
    scorer = build_scorer(s, model, client, control=Hooks(stop_at=caught_up))
    run = asyncio.create_task(scorer.run())
    try:

        async def images_written() -> int:
            try:
                return sum([await client.hlen(keys.images_key(s.namespace, h)) for h in hotels])
            except (RedisError, OSError):  # the first command on a pooled connection after the restart
                return -1

        async def committed_some() -> bool:
            return sum((await committed_positions(s, partitions)).values()) >= 60

        # Kill Redis once some work is written *and* committed, so the check below has teeth.
        assert await until(lambda: _positive(images_written()), 60), "no progress before the outage"
        assert await until(committed_some, 60, every_s=0.3), "nothing committed before the outage"
        retries_before = metrics.REDIS_RETRIES._value.get()
        written_before = await images_written()
        server.kill()
        killed_at = time.monotonic()
        snapshot_dir = tmp_path / "aof-at-kill"
        shutil.copytree(server._dir, snapshot_dir)

        # The scorer subscribes several topics (stream/priority.py: main, labels, backfill);
        # backpressure must stop the fetch of every one of them, so both are checked: all
        # `partitions` of the main topic (where this load is) and every assigned partition.
        max_main_paused, every_assigned_paused, max_in_flight = 0, False, 0
        # Down for 4 s at least, and until the writer has failed and backed off a few times.
        while time.monotonic() - killed_at < 4.0 or (
            metrics.REDIS_RETRIES._value.get() - retries_before < 3 and time.monotonic() - killed_at < 30
        ):
            progress, assigned = scorer.progress(), scorer.assignment()
            max_main_paused = max(max_main_paused, sum(tp.topic == s.topic for tp in progress.paused))
            every_assigned_paused |= bool(assigned) and assigned <= progress.paused
            max_in_flight = max(max_in_flight, progress.in_flight)
            await asyncio.sleep(0.1)
        committed_in_outage = await committed_positions(s, partitions)
        retries_in_outage = metrics.REDIS_RETRIES._value.get() - retries_before
        outage_s = time.monotonic() - killed_at
        assert not run.done(), "the consumer must wait out a Redis outage, not stop"
        assert max_main_paused == partitions, "the in-flight cap must pause every main-topic partition"
        assert every_assigned_paused, "... and every other subscribed topic's partition (no fetch past the cap)"
        assert max_in_flight <= s.max_in_flight + 500  # one getmany of at most 500 records past the cap
        assert retries_in_outage >= 3, "the writer must keep retrying"

        server.start()  # same port, same data directory
        restarted_at = time.monotonic()
        assert await until(lambda: _greater(images_written(), written_before), 30), "no progress after restart"
        resumed_after_s = time.monotonic() - restarted_at
        await asyncio.wait_for(run, 120)

        # Every good event below a committed offset was durable in Redis at the kill.
        snapshot = PrivateRedis(password=password, _dir=str(snapshot_dir)).start()
        snap_client = aioredis.Redis.from_url(snapshot.url)
        durable = await image_states(snap_client, s.namespace, hotels)
        await snap_client.aclose()
        records = await read_topic(s, s.topic, expected=len(events))
        checked = 0
        for rec in records:
            if rec.offset >= committed_in_outage[rec.partition]:
                continue
            event = _parse(rec)
            if event is None or getattr(event, "url", "").endswith("/missing.jpg"):
                continue  # a bad event: its proof is the DLQ, not Redis
            state = durable.get(event.hotel_id, {}).get(event.image_id)
            assert state is not None and (state["p"], state["o"]) >= (rec.partition, rec.offset), (
                f"offset {rec.partition}@{rec.offset} was committed while its change was not in Redis"
            )
            checked += 1

        # The end state equals an uninterrupted run.
        ref = s.model_copy(
            update={
                "namespace": s.namespace + "-ref",
                "group_id": s.group_id + "-ref",
                "dlq_topic": s.dlq_topic + "-ref",
            }
        )
        await run_until_caught_up(ref, model, client, partitions=partitions)
        assert without_timestamps(await galleries(client, s.namespace, hotels)) == without_timestamps(
            await galleries(client, ref.namespace, hotels)
        )
        assert await image_states(client, s.namespace, hotels) == await image_states(client, ref.namespace, hotels)
        dead = dlq_by_source(await read_topic(s, s.dlq_topic, expected=bad), headers)
        assert len(dead) == bad and sum(dead.values()) == bad

        # Secrets: the Redis password and the SASL password never reach logs or DLQ headers.
        assert password not in caplog.text and "Kafka-Pw-unused" not in caplog.text
        assert "redis write failed" in caplog.text  # the outage was logged, without the URL's password
        assert checked > 0
        report(
            "redis_outage",
            events=len(events),
            outage_s=round(outage_s, 1),
            committed_events_checked_against_aof=checked,
            paused_main_partitions=max_main_paused,
            max_in_flight=max_in_flight,
            writer_retries=retries_in_outage,
            resumed_after_restart_s=round(resumed_after_s, 2),
            lost=0,
            gallery_mismatches=0,
        )
    finally:
        if not run.done():
            scorer.stop()
            run.cancel()
        await client.aclose()
        server.close()
        if snapshot is not None:
            snapshot.close()


async def _positive(value_coro) -> bool:
    return (await value_coro) > 0


async def _greater(value_coro, than: int) -> bool:
    return (await value_coro) > than


def _parse(record):
    from galleryrank.consumer.stream.events import InvalidEvent, parse_event

    event = parse_event(record.key, record.value)
    return None if isinstance(event, InvalidEvent) else event


# --------------------------------------------------------------------------- 2b. image server faults
class FlakyImageServer:
    """Serves one small JPEG under paths that fail on purpose, and logs when each request came.

    /flaky500/<id>/<k>   HTTP 500 for the first k requests, then the image
    /flakyhang/<id>/<k>  hangs (past the download timeout) for the first k requests, then the image
    /down/<id>           always HTTP 500
    /hang/<id>           always hangs
    /outage/<id>         HTTP 500 while `outage` is set (a global outage the test ends)
    """

    def __init__(self, jpeg: bytes):
        self.jpeg = jpeg
        self.requests: dict[str, list[float]] = defaultdict(list)
        self.outage = True
        self.outage_ended_at: float | None = None
        self.base = ""
        self._runner = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        kind, rest = request.match_info["kind"], request.match_info["rest"]
        path = f"/{kind}/{rest}"
        self.requests[path].append(time.monotonic())
        n = len(self.requests[path])
        failures = int(rest.rsplit("/", 1)[1]) if kind.startswith("flaky") else None
        if kind == "down" or (kind == "flaky500" and n <= failures) or (kind == "outage" and self.outage):
            return web.Response(status=500, text="upstream broke")
        if kind == "hang" or (kind == "flakyhang" and n <= failures):
            await asyncio.sleep(60)
        return web.Response(body=self.jpeg, content_type="image/jpeg")

    def first_request_at(self) -> float | None:
        return min((t[0] for t in self.requests.values() if t), default=None)

    async def start(self) -> FlakyImageServer:
        app = web.Application()
        app.router.add_get("/{kind}/{rest:.+}", self.handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        await self._runner.cleanup()


@pytest.mark.slow  # > 7 s: in make test, not in make test-fast
@pytest.mark.timeout(120)
async def test_image_server_500s_and_hangs_are_retried_with_jittered_backoff_then_dead_lettered(
    settings, model, redis, small_server
):
    retries, timeout_s = 4, 1.0
    s = settings.model_copy(
        update={"download_retries": retries, "download_timeout_s": timeout_s, "download_connect_timeout_s": 0.5}
    )
    server = await FlakyImageServer(next(iter(small_server.images.values()))).start()
    hid = "img-faults"
    plan = {  # image id -> (path, expected outcome)
        **{f"flaky500-{i}": (f"/flaky500/{i}/{k}", "scored") for i, k in enumerate((1, 2, retries))},
        **{f"flakyhang-{i}": (f"/flakyhang/{i}/{k}", "scored") for i, k in enumerate((1, 2))},
        **{f"outage-{i}": (f"/outage/{i}", "scored") for i in range(6)},
        **{f"down-{i}": (f"/down/{i}", "http_500") for i in range(6)},
        **{f"hang-{i}": (f"/hang/{i}", "timeout") for i in range(2)},
    }
    await create_topics(s, partitions=1)
    await publish(s, [upserted(hid, image_id, server.base + path) for image_id, (path, _) in plan.items()])

    async def end_outage_after_first_request():
        # The shortest retry span (4 retries, 0.25 s base, half-jittered) is
        # 0.125 + 0.25 + 0.5 + 1.0 = 1.875 s: an outage of 1.0 s must be ridden out.
        while server.first_request_at() is None:
            await asyncio.sleep(0.02)
        await asyncio.sleep(max(0.0, server.first_request_at() + 1.0 - time.monotonic()))
        server.outage = False
        server.outage_ended_at = time.monotonic()

    ender = asyncio.create_task(end_outage_after_first_request())
    try:
        summary = await run_until_caught_up(s, model, redis, partitions=1)
        await ender
        doc = (await galleries(redis, s.namespace, [hid]))[hid]
        scored = {img["image_id"] for img in doc["images"]}
        assert scored == {i for i, (_, want) in plan.items() if want == "scored"}
        dead = await read_topic(s, s.dlq_topic, expected=summary.dead_lettered)
        reasons = {headers(r)["event_id"]: headers(r) for r in dead}
        assert len(dead) == sum(1 for _, want in plan.values() if want != "scored")
        by_image = {orjson.loads(r.value)["image_id"]: headers(r) for r in dead}
        for image_id, (path, want) in plan.items():
            hits = server.requests[path]
            if want == "scored":
                continue
            assert by_image[image_id]["reason"] == want, image_id
            assert f"after {retries + 1} attempts" in by_image[image_id]["error"]
            assert len(hits) == retries + 1, f"{path}: bounded retries, then the DLQ"
        for i, k in enumerate((1, 2, retries)):
            assert len(server.requests[f"/flaky500/{i}/{k}"]) == k + 1  # stops asking once it worked
        # Backoff: the n-th pause (after the request itself failed at once) is in
        # [cap/2, cap] with cap = 0.25 s * 2^n (jitter: half fixed, half random).
        gaps_by_attempt = defaultdict(list)
        for i in range(6):
            hits = server.requests[f"/down/{i}"]
            for n, (a, b) in enumerate(zip(hits, hits[1:])):
                cap = min(4.0, 0.25 * 2**n)
                assert cap / 2 - 0.02 <= b - a <= cap + 0.5, (n, b - a)
                gaps_by_attempt[n].append(b - a)
        spreads = {n: max(g) - min(g) for n, g in gaps_by_attempt.items()}
        assert all(spread > 0.005 for spread in spreads.values()), f"retries must be jittered: {spreads}"
        report(
            "image_server",
            events=len(plan),
            retries=retries,
            scored=len(scored),
            dead_lettered=len(dead),
            outage_s=1.0,
            reasons=dict(Counter(h["reason"] for h in reasons.values())),
            backoff_gap_spread_s={str(n): round(v, 3) for n, v in spreads.items()},
        )
    finally:
        ender.cancel()
        await server.stop()
        await drop_namespace(redis, s.namespace)
        await drop_markers(redis, s.group_id)


# --------------------------------------------------------------------------- 2c. scaling 1 -> 3 -> 1
@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_group_scaled_1_to_3_to_1_during_a_run_loses_nothing(settings, model, redis, small_server):
    from galleryrank.consumer.stream.events import encode_event
    from galleryrank.consumer.stream.kafka import make_producer

    partitions, hotels = 6, [f"s-{h}" for h in range(36)]
    urls = [small_server.url(n) for n in sorted(small_server.images)]
    events, bad = mixed_events(urls, small_server.url("missing.jpg"), len(hotels), 16, seed=9, prefix="s")
    await create_topics(settings, partitions=partitions)
    produced = asyncio.Event()

    async def produce_steadily(chunk: int = 24, every_s: float = 1.0) -> None:
        """Events keep arriving while members join and leave (~25 s of traffic)."""
        producer = make_producer(settings, linger_ms=5)
        await producer.start()
        try:
            for i in range(0, len(events), chunk):
                for ev in events[i : i + chunk]:
                    key, value = ev if isinstance(ev, tuple) else encode_event(ev)
                    await producer.send(settings.topic, key=key, value=value)
                await producer.flush()
                await asyncio.sleep(every_s)
        finally:
            await producer.stop()
        produced.set()

    final_assignment: list[int] = []

    async def stop_when_all_done(scorer) -> bool:
        # caught_up() looks at this member's partitions only: wait until it owns them all again.
        if (
            produced.is_set()
            and input_partitions(settings, scorer.progress().assigned) == partitions
            and await caught_up(scorer)
        ):
            final_assignment.append(input_partitions(settings, scorer.progress().assigned))
            return True
        return False

    first = build_scorer(settings, model, redis, control=Hooks(stop_at=stop_when_all_done))
    extra = [build_scorer(settings, model, redis) for _ in range(2)]
    producer_task = asyncio.create_task(produce_steadily())
    first_task = asyncio.create_task(first.run())
    extra_tasks = []
    try:
        assert await until(lambda: _true(first.ready and first.summary.events > 0), 60)
        extra_tasks = [asyncio.create_task(m.run()) for m in extra]  # scale 1 -> 3
        members = [first, *extra]

        async def three_members_share_the_work() -> bool:
            sizes = [input_partitions(settings, m.progress().assigned) for m in members]
            return all(m.ready and m.summary.events > 0 for m in extra) and sum(sizes) == partitions and min(sizes) >= 1

        assert await until(three_members_share_the_work, 90), "the group never spread over three members"
        shared = [input_partitions(settings, m.progress().assigned) for m in members]
        assert not produced.is_set(), "traffic must still be flowing while the group is at three"
        for m in extra:  # scale 3 -> 1 (graceful: drain, commit, leave)
            m.stop()
        await asyncio.wait_for(asyncio.gather(*extra_tasks), 60)
        await asyncio.wait_for(producer_task, 60)
        await asyncio.wait_for(first_task, 120)
        assert final_assignment == [partitions], "the remaining member must own every partition again"

        ref = settings.model_copy(
            update={
                "namespace": settings.namespace + "-ref",
                "group_id": settings.group_id + "-ref",
                "dlq_topic": settings.dlq_topic + "-ref",
            }
        )
        await run_until_caught_up(ref, model, redis, partitions=partitions)
        assert without_timestamps(await galleries(redis, settings.namespace, hotels)) == without_timestamps(
            await galleries(redis, ref.namespace, hotels)
        )
        assert await image_states(redis, settings.namespace, hotels) == await image_states(redis, ref.namespace, hotels)
        dead = dlq_by_source(await read_topic(settings, settings.dlq_topic, expected=bad), headers)
        assert len(dead) == bad and sum(dead.values()) == bad, "each bad event once, whichever member saw it"
        per_member = [m.summary.events for m in members]
        assert sum(per_member) >= len(events)
        report(
            "scale_1_3_1",
            events=len(events),
            bad=bad,
            partitions_at_three=shared,
            events_per_member=per_member,
            redone_on_rebalance=sum(per_member) - len(events),
            lost=0,
            gallery_mismatches=0,
            dlq_duplicates=sum(dead.values()) - len(dead),
        )
    finally:
        for m in [first, *extra]:
            m.stop()
        for t in [producer_task, first_task, *extra_tasks]:
            if not t.done():
                t.cancel()
        await drop_namespace(redis, settings.namespace)
        await drop_namespace(redis, settings.namespace + "-ref")
        for group in (settings.group_id, settings.group_id + "-ref"):
            await drop_markers(redis, group)


async def _true(value: bool) -> bool:
    return value
