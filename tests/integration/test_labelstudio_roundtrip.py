"""Round trip through a real Label Studio (SQLite): `labels tasks` -> Label Studio's import API
(the config and pre-annotations it accepts) -> annotations through its API -> its JSON export ->
`labels import` -> label events on the real broker, read back by `labels export`'s reader.

Label Studio is a large Django application, not a project dependency: this test runs where one is
installed in a venv of its own and named by LABEL_STUDIO_BIN (the label-studio executable; it is
started on a free port with a fresh SQLite data dir), or where LABEL_STUDIO_URL + LABEL_STUDIO_TOKEN
name a running instance with legacy API tokens enabled. Setup (about 4 minutes here):

    python -m venv /tmp/lsvenv && /tmp/lsvenv/bin/pip install label-studio 'sentry-sdk<3'
    LABEL_STUDIO_BIN=/tmp/lsvenv/bin/label-studio pytest tests/integration/test_labelstudio_roundtrip.py
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
import urllib.request
import uuid

import pytest
from click.testing import CliRunner

from galleryrank.consumer.cli.main import cli
from galleryrank.consumer.labels.reader import read_labels
from galleryrank.consumer.runtime import run_scorer
from galleryrank.consumer.state import keys
from galleryrank.consumer.stream.events import LabelArea, LabelRating
from galleryrank.consumer.stream.kafka import create_topics
from galleryrank.consumer.stream.produce import publish, upserted
from tests.helpers import drop_namespace

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TOKEN = "0123456789abcdef0123456789abcdef01234567"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    if os.environ.get("LABEL_STUDIO_URL"):
        yield os.environ["LABEL_STUDIO_URL"].rstrip("/"), os.environ["LABEL_STUDIO_TOKEN"]
        return
    binary = os.environ.get("LABEL_STUDIO_BIN")
    if not binary or not os.access(binary, os.X_OK):
        pytest.skip("no Label Studio: set LABEL_STUDIO_BIN (see the module docstring)")
    port, data = _free_port(), tmp_path_factory.mktemp("label-studio")
    env = {k: v for k, v in os.environ.items() if k != "HOST"} | {
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "SENTRY_DSN": "",
    }
    log = open(data / "server.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [
            binary,
            "start",
            "--no-browser",
            "--port",
            str(port),
            "--internal-host",
            "127.0.0.1",
            "--data-dir",
            str(data),
            "--username",
            "reviewer@example.com",
            "--password",
            "pw-123456",
            "--user-token",
            TOKEN,
            "--enable-legacy-api-token",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 420  # first start migrates a new SQLite database: minutes on 2 busy cores
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"Label Studio did not start: {(data / 'server.log').read_text()[-2000:]}"
                    ) from None
                time.sleep(2)
        yield base, TOKEN
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _api(base: str, token: str, method: str, path: str, body=None):
    req = urllib.request.Request(
        base + path,
        method=method,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        data=json.dumps(body).encode() if body is not None else None,
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read() or b"null")


async def test_tasks_to_label_studio_and_its_export_back_to_label_events(
    label_studio,
    settings,
    model,
    private_redis,
    private_redis_url,
    image_server,
    sample_jpegs,
    tmp_path,  # noqa: F811
):
    base, token = label_studio
    s = settings.model_copy(update={"labels_topic": f"{settings.topic}.labels", "redis_url": private_redis_url})
    redis = private_redis  # the test moves galleryrank:active: a Redis of its own
    hotel = f"h-ls-{uuid.uuid4().hex[:6]}"
    try:
        await create_topics(s, partitions=2)
        names = sorted(sample_jpegs)[:3]
        await publish(s, [upserted(hotel, f"img-{i}", image_server.url(n)) for i, n in enumerate(names)])
        await run_scorer(s, model, redis=redis, until_caught_up=True, install_signal_handlers=False)
        # the namespace under test is not the active one: point the command at it
        await redis.set(keys.ACTIVE_KEY, s.namespace)
        tasks_file = tmp_path / "tasks.json"
        run = await asyncio.to_thread(
            CliRunner().invoke,
            cli,
            ["labels", "tasks", "--out", str(tasks_file), "--hotel", hotel, "--redis-url", s.redis_url],
        )
        assert run.exit_code == 0, run.output
        tasks = json.loads(tasks_file.read_text())
        assert len(tasks) == 3 and all(t["predictions"][0]["result"][0]["type"] == "choices" for t in tasks)

        project = _api(
            base,
            token,
            "POST",
            "/api/projects",
            {"title": hotel, "label_config": (tmp_path / "label_config.xml").read_text()},
        )
        _api(base, token, "POST", f"/api/projects/{project['id']}/import", tasks)
        listed = _api(base, token, "GET", f"/api/tasks?project={project['id']}&page_size=100")
        stored = listed["tasks"] if isinstance(listed, dict) else listed
        assert len(stored) == 3 and all(t["total_predictions"] == 1 for t in stored)  # pre-annotations accepted
        wanted = {}
        for k, t in enumerate(stored):
            area = ["bathroom", "not_property", "kitchen"][k]
            wanted[t["data"]["image_id"]] = (area, 3 + k)
            result = [
                {"from_name": "area", "to_name": "image", "type": "choices", "value": {"choices": [area]}},
                {"from_name": "rating", "to_name": "image", "type": "rating", "value": {"rating": 3 + k}},
            ]
            _api(base, token, "POST", f"/api/tasks/{t['id']}/annotations", {"result": result})
        exported = _api(base, token, "GET", f"/api/projects/{project['id']}/export?exportType=JSON")
        export_file = tmp_path / "export.json"
        export_file.write_text(json.dumps(exported))

        run = await asyncio.to_thread(
            CliRunner().invoke,
            cli,
            [
                "labels",
                "import",
                str(export_file),
                "--bootstrap-servers",
                s.bootstrap_servers,
                "--labels-topic",
                s.labels_topic,
            ],
        )
        assert run.exit_code == 0, run.output
        events = (await read_labels(s)).events
        areas = {e.image_id: e.area for e in events if isinstance(e, LabelArea)}
        ratings = {e.image_id: e.rating for e in events if isinstance(e, LabelRating)}
        assert areas == {i: a for i, (a, _) in wanted.items()} and ratings == {i: r for i, (_, r) in wanted.items()}
        assert all(e.hotel_id == hotel and e.reviewer.startswith("labelstudio-") for e in events)
    finally:
        await redis.delete(keys.ACTIVE_KEY)
        await drop_namespace(redis, s.namespace)
