"""The labelling loop through public surfaces (issue 24 b).

Real Tansu broker, real (private) Redis, real HTTP image server and read/write API, real model.
A generated photo set (one texture family per area) is uploaded and scored; reviewers with
tokens from `galleryrank reviewers add` correct areas and rate photos over the HTTP API; the
scorer applies the label events; then the public commands: `labels export` (labels topic only;
photos downloaded once over real HTTP, split by hotel), `labels suspects` (the deliberately wrong
label is found and queued), `labels evidence` (phase-1 training, new vs live on the held-out
hotels, learning curve), `replay` with the candidate, `compare`, `promote` — and the corrected
photos keep their corrected area in the promoted namespace.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import numpy as np
import orjson
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from click.testing import CliRunner

from galleryrank.consumer.api.serve import create_app
from galleryrank.consumer.cli.main import cli
from galleryrank.consumer.dev.samples import ImageServer
from galleryrank.consumer.runtime import run_scorer
from galleryrank.consumer.state import keys
from galleryrank.consumer.stream.kafka import create_topics
from galleryrank.consumer.stream.produce import publish, upserted
from tests.helpers import drop_namespace
from tests.label_photos import texture_jpeg

pytestmark = [pytest.mark.integration, pytest.mark.slow]
AREAS = {"bathroom": "stripes", "bedroom": "checks", "facade": "discs", "kitchen": "grain"}
HOTELS, PER_AREA = 8, 3  # 8 hotels x 4 areas x 3 photos = 96 photos


def galleryrank(*args: str, env: dict | None = None):
    result = CliRunner().invoke(cli, list(args), env=env)
    return result


async def run(*args: str, env: dict | None = None):
    result = await asyncio.to_thread(galleryrank, *args, env=env)
    assert result.exit_code == 0, (args[:2], result.output, result.exception)
    return result


def kafka_flags(s) -> list[str]:
    return ["--bootstrap-servers", s.bootstrap_servers, "--labels-topic", s.labels_topic]


@pytest.fixture
def loop_settings(settings, private_redis_url):  # noqa: F811 (fixture)
    return settings.model_copy(
        update={
            "redis_url": private_redis_url,
            "labels_topic": f"{settings.topic}.labels",
            "review_rate_per_minute": 100_000,
        }
    )


@pytest.fixture
async def photo_server():
    rng = np.random.default_rng(24)
    photos = {}
    truth = {}
    for h in range(HOTELS):
        for area, kind in AREAS.items():
            for k in range(PER_AREA):
                name = f"h{h}-{area}-{k}.jpg"
                photos[name] = texture_jpeg(kind, rng)
                truth[(f"hotel-{h}", f"img-{area}-{k}")] = (area, name)
    server = await ImageServer(photos).start()
    yield server, truth
    await server.stop()


async def test_labels_loop_tokens_api_events_export_train_evaluate_replay_promote(
    loop_settings,
    model,
    private_redis,
    photo_server,
    tmp_path,
    monkeypatch,  # noqa: F811 (fixture)
):
    monkeypatch.setenv("GALLERYRANK_FEATURES_BACKEND", "torch")  # small set: no ONNX export of the feature graph
    s = loop_settings
    redis = private_redis
    server, truth = photo_server
    new_ns = f"{s.namespace}-labelled"
    tag = uuid.uuid4().hex[:6]
    try:
        # 1. the photos are uploaded and scored by the live scorer
        await create_topics(s, partitions=2)
        await publish(s, [upserted(h, i, server.url(name)) for (h, i), (_, name) in truth.items()])
        await run_scorer(s, model, redis=redis, until_caught_up=True, install_signal_handlers=False)

        # 2. two reviewers with tokens from the real command label through the HTTP API
        tokens = {}
        for who in ("ann", "bob"):
            out = await run("reviewers", "add", f"{who}-{tag}", "--role", "reviewer", "--redis-url", s.redis_url)
            tokens[who] = out.stdout.strip().splitlines()[0]
        wrong = ("hotel-1", "img-kitchen-0")  # ann files a kitchen photo as a bedroom; bob agrees with her
        app = TestServer(create_app(s, redis=redis), host="127.0.0.1")
        await app.start_server()
        async with ClientSession(base_url=str(app.make_url(""))) as http:
            for (h, i), (area, _) in sorted(truth.items()):
                given = "bedroom" if (h, i) == wrong else area
                for who in ("ann", "bob") if h in ("hotel-0", "hotel-1") else ("ann",):
                    auth = {"Authorization": f"Bearer {tokens[who]}"}
                    async with http.post(f"/hotels/{h}/images/{i}/area", json={"area": given}, headers=auth) as r:
                        assert r.status == 200, await r.text()
                rating = 8 if area in ("bedroom", "facade") else 4
                auth = {"Authorization": f"Bearer {tokens['ann']}"}
                async with http.post(f"/hotels/{h}/images/{i}/rating", json={"rating": rating}, headers=auth) as r:
                    assert r.status == 200, await r.text()
            # bob disagrees with ann on one photo: a conflict the manifest lists
            auth = {"Authorization": f"Bearer {tokens['bob']}"}
            async with http.post(
                "/hotels/hotel-0/images/img-facade-0/area", json={"area": "kitchen"}, headers=auth
            ) as r:
                assert r.status == 200
        await app.close()
        # a photo on the main topic only: the export never reads it
        await publish(s, [upserted("hotel-x", "main-only", server.url("h0-bathroom-0.jpg"))])
        await run_scorer(s, model, redis=redis, until_caught_up=True, install_signal_handlers=False)
        doc = orjson.loads(await redis.get(keys.gallery_key(s.namespace, wrong[0])))
        entry = next(e for e in doc["images"] if e["image_id"] == wrong[1])
        assert entry["area"] == "bedroom" and "area set by an editor" in entry["reason"]

        # 3. export: labels topic -> train/test by hotel, each photo downloaded once over HTTP
        export = tmp_path / "export"
        flags = [*kafka_flags(s), "--download-allow-networks", "127.0.0.0/8"]
        out = await run("labels", "export", "--out", str(export), "--test-fraction", "0.25", *flags)
        manifest = json.loads((export / "manifest.json").read_text())
        print("export:", json.dumps({k: manifest[k] for k in ("summary", "split")}))
        assert manifest["summary"]["photos"] == len(truth)  # not the main-topic-only photo
        assert manifest["summary"]["raters"] == 2 and manifest["summary"]["photos_with_rating"] == len(truth)
        assert not set(manifest["hotels"]["train"]) & set(manifest["hotels"]["test"])
        assert manifest["split"]["test"]["hotels"] == 2
        assert [c["image_id"] for c in manifest["conflicts"]] == ["img-facade-0"]
        assert not manifest["failed_downloads"]
        assert len(list((export / ".photos").iterdir())) == len(truth)

        # 4. suspects: the wrong label is found, and queued for review
        report_dir = tmp_path / "suspects"
        await run(
            "labels",
            "suspects",
            "--data",
            str(export),
            "--out",
            str(report_dir),
            "--no-progress",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--redis-url",
            s.redis_url,
        )
        report = json.loads((report_dir / "suspects.json").read_text())
        flagged = [i["photo"] for i in report["label_issues"]]
        print(f"suspects: {len(flagged)} flagged of {report['photos']}: {flagged[:8]}")
        assert f"{wrong[0]} {wrong[1]}" in flagged
        assert (report_dir / "suspects.png").stat().st_size > 1000
        queued = await redis.zrange(keys.LABEL_SUSPECTS_KEY, 0, -1, withscores=True)
        assert f"{wrong[0]} {wrong[1]}".encode() in dict(queued)

        # 5. evidence: phase-1 training on the train split, new vs live on the held-out hotels
        runs = tmp_path / "evidence"
        await run(
            "labels",
            "evidence",
            "--export",
            str(export),
            "--out",
            str(runs),
            "--fractions",
            "0.5,1",
            "--epochs-heads",
            "4",
            "--device",
            "cpu",
            "--cache-dir",
            str(tmp_path / "cache"),
        )
        ev = json.loads((runs / "evidence.json").read_text())
        print(
            "evidence:",
            json.dumps(
                {
                    "live": ev["live"]["areas"]["top1"],
                    "new": ev["new"]["areas"]["top1"],
                    "curve": [(c["labels"], c["top1"]) for c in ev["learning_curve"]],
                    "ratings_new": ev["new"].get("ratings"),
                    "ratings_live": ev["live"].get("ratings"),
                }
            ),
        )
        assert [c["fraction"] for c in ev["learning_curve"]] == [0.5, 1.0]
        assert ev["test_photos"] == 2 * len(AREAS) * PER_AREA
        assert ev["new"]["areas"]["top1"] > ev["live"]["areas"]["top1"]
        for key in ("srcc", "lcc", "emd", "auc_good_vs_poor"):
            assert key in ev["new"]["ratings"] and key in ev["live"]["ratings"]
        assert (runs / "learning_curve.png").exists() and (runs / "live.confusion.png").exists()
        candidate = ev["candidate"]

        # 6. replay with the candidate (every topic: the labels too), compare, promote
        ops = [
            "--redis-url",
            s.redis_url,
            "--bootstrap-servers",
            s.bootstrap_servers,
            "--topic",
            s.topic,
            "--labels-topic",
            s.labels_topic,
            "--group-id",
            s.group_id,
        ]
        await run(
            "replay",
            "--namespace",
            new_ns,
            "--checkpoint",
            candidate,
            "--no-progress",
            *ops,
            "--download-allow-networks",
            "127.0.0.0/8",
            "--backend",
            "torch",
            "--device",
            "cpu",
            "--session-timeout-ms",
            "6000",
        )
        compared = await run("compare", s.namespace, new_ns, "--redis-url", s.redis_url)
        print(compared.output[-800:])
        await run("promote", new_ns, "--force", "--redis-url", s.redis_url)
        assert (await redis.get(keys.ACTIVE_KEY)).decode() == new_ns
        promoted = orjson.loads(await redis.get(keys.gallery_key(new_ns, wrong[0])))
        entry = next(e for e in promoted["images"] if e["image_id"] == wrong[1])
        assert entry["area"] == "bedroom" and "area set by an editor" in entry["reason"]
        assert promoted["model_version"].startswith("aesthetic-") or promoted["model_version"].startswith("tagger-")
        # a photo no reviewer contradicted keeps its label; the retrained model's own area is beside it
        right = next(e for e in promoted["images"] if e["image_id"] == "img-facade-1")
        assert right["area"] == "facade" and right.get("model_area") is not None
    finally:
        for ns in (s.namespace, new_ns):
            await drop_namespace(redis, ns)
        await redis.delete(keys.LABEL_SUSPECTS_KEY, keys.REVIEWERS_KEY)
        logging.getLogger(__name__).info("done")
