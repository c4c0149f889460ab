"""Consumer -> galleryrank model-server (a real tritonserver, from PyTriton) -> Redis.

The model server runs in its own interpreter (.venv-triton, scripts/model_server_venv.sh),
serving the Triton repository that `galleryrank export --triton` writes; the consumer
scores through the `triton` backend (models/triton_client.py). Real Tansu, real Redis,
real HTTP image server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from galleryrank.consumer.cli.model_server import SERVER_SCRIPT, server_python
from galleryrank.consumer.runtime import run_scorer
from galleryrank.consumer.stream.kafka import create_topics
from galleryrank.consumer.stream.produce import publish, upserted
from tests.helpers import drop_namespace, galleries, read_topic, run_until_caught_up

pytestmark = pytest.mark.integration

# Same graph (ONNX Runtime on the server) vs PyTorch fp32 in-process: tests/unit/test_backends.py's
# onnxruntime tolerance on the aesthetic mean, with margin for float summation order.
AESTHETIC_TOL = 1e-3
AREA_TOL = 1e-3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ModelServer:
    """models/model_server.py in its own process group (so a kill takes tritonserver with it)."""

    def __init__(self, repository: Path, python: str):
        self.repository = repository
        self.python = python
        self.grpc_port, self.http_port, self.metrics_port = _free_port(), _free_port(), _free_port()
        self.url = f"grpc://127.0.0.1:{self.grpc_port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 180.0) -> None:
        args = [
            self.python, str(SERVER_SCRIPT), "--repository", str(self.repository),
            "--grpc-port", str(self.grpc_port), "--http-port", str(self.http_port),
            "--metrics-port", str(self.metrics_port), "--threads", "1", "--queue-delay-us", "2000",
            "--workspace", str(self.repository.parent / f"workspace-{self.grpc_port}-{time.monotonic_ns()}"),
        ]  # fmt: skip
        self.log = self.repository.parent / f"model-server-{self.grpc_port}.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        start = self.log.stat().st_size
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"model server exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            with open(self.log, "rb") as f:
                f.seek(start)
                if b'"ready": true' in f.read():
                    return
            time.sleep(0.5)
        self.kill()
        raise TimeoutError(f"model server not ready: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL to the whole group: the Python process and its tritonserver, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
            # What a clean stop would have removed: PyTriton's shared-memory regions.
            for shm in Path("/dev/shm").glob(f"pytrtion{self.proc.pid}-*"):
                shm.unlink(missing_ok=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="module")
def triton_repository(tmp_path_factory) -> Path:
    from galleryrank.models.triton import TritonConfig, write_repository

    root = tmp_path_factory.mktemp("triton") / "repo"
    result = write_repository(None, root, TritonConfig(instance_kind="KIND_CPU", preferred_batch_sizes=(8, 16)))
    assert result["max_abs_diff"]["max"] < 1e-3
    return root


@pytest.fixture(scope="module")
def model_server(triton_repository):
    import click

    try:
        python = server_python()
    except click.ClickException as exc:
        pytest.skip(f"no model-server environment: {exc.message}")
    server = ModelServer(triton_repository, python)
    server.start()
    yield server
    server.stop()


def _triton_model(url: str):
    from galleryrank.models.triton_client import TritonScoringModel

    return TritonScoringModel(url, timeout_s=5.0, start_timeout_s=60.0)


def test_triton_backend_scores_like_the_in_process_model(model_server, model):
    remote = _triton_model(model_server.url)
    assert remote.model_version == model.model_version
    assert remote.areas == model.areas
    assert (remote.input_size, remote.embedding_dim) == (model.input_size, model.embedding_dim)
    batch = np.random.default_rng(3).integers(0, 256, (5, 3, model.input_size, model.input_size), dtype=np.uint8)
    a, b = remote.score(batch), model.score(batch)
    assert np.abs(a.aesthetic - b.aesthetic).max() < AESTHETIC_TOL
    assert np.abs(a.area_probs - b.area_probs).max() < AREA_TOL
    assert (a.embedding * b.embedding).sum(1).min() > 0.999
    assert len(remote.score(batch[:0])) == 0
    with pytest.raises(ValueError):
        remote.score(batch[:, :, :10])
    remote.close()


def test_down_model_server_at_start_is_a_clear_error():
    from galleryrank.models.triton_client import ModelServerError, TritonScoringModel

    url = f"grpc://127.0.0.1:{_free_port()}"
    with pytest.raises(ModelServerError, match=f"model server {url} did not serve"):
        TritonScoringModel(url, timeout_s=1.0, start_timeout_s=1.0)


@pytest.mark.slow  # > 7 s: in make test, not in make test-fast
async def test_consumer_through_model_server_writes_the_same_galleries(
    settings, model, redis, model_server, image_server, sample_jpegs
):
    names = sorted(sample_jpegs)
    hotels = {f"h-{i}": names[i : i + 4] for i in range(3)}
    await publish(
        settings, [upserted(h, f"img-{j}", image_server.url(n)) for h, ns in hotels.items() for j, n in enumerate(ns)]
    )
    remote_settings = settings.model_copy(
        update={"group_id": settings.group_id + "-triton", "namespace": settings.namespace + "-triton",
                "model_server": model_server.url}
    )  # fmt: skip
    try:
        local = await run_until_caught_up(settings, model, redis)
        remote = await run_until_caught_up(remote_settings, None, redis)  # model built from model_server
        assert local.applied == remote.applied == 12 and remote.dead_lettered == 0
        want = await galleries(redis, settings.namespace, hotels)
        got = await galleries(redis, remote_settings.namespace, hotels)
        assert set(got) == set(want) == set(hotels)
        for hid in hotels:
            assert got[hid]["model_version"] == want[hid]["model_version"] == model.model_version
            w = {i["image_id"]: i for i in want[hid]["images"]}
            g = {i["image_id"]: i for i in got[hid]["images"]}
            assert set(g) == set(w)
            for image_id, img in g.items():
                assert abs(img["aesthetic"] - w[image_id]["aesthetic"]) < AESTHETIC_TOL
                assert img["area"] == w[image_id]["area"]
                assert abs(img["area_confidence"] - w[image_id]["area_confidence"]) < AREA_TOL
            # Scores this close give the same gallery order unless two photos tie within them.
            gaps = np.diff(sorted(i["aesthetic"] for i in w.values()))
            if gaps.size == 0 or gaps.min() > 2 * AESTHETIC_TOL:
                assert [i["image_id"] for i in got[hid]["images"]] == [i["image_id"] for i in want[hid]["images"]]
    finally:
        await drop_namespace(redis, settings.namespace)
        await drop_namespace(redis, remote_settings.namespace)


@pytest.fixture
async def slow_image_server(sample_jpegs):
    """Sample photos, 150 ms per response: the stream is still running when the server is killed."""

    async def photo(request):
        await asyncio.sleep(0.15)
        return web.Response(body=sample_jpegs[request.match_info["name"]], content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/{name}", photo)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield lambda name: f"http://127.0.0.1:{port}/{name}"
    await runner.cleanup()


@pytest.mark.slow  # > 7 s: in make test, not in make test-fast
async def test_model_server_killed_mid_stream_loses_nothing(
    settings, redis, model_server, slow_image_server, sample_jpegs
):
    names = sorted(sample_jpegs)
    hotels = {f"k-{i}": [names[(i + j) % len(names)] for j in range(6)] for i in range(8)}  # 48 events
    events = [upserted(h, f"img-{j}", slow_image_server(n)) for h, ns in hotels.items() for j, n in enumerate(ns)]
    settings = settings.model_copy(update={"download_concurrency": 2, "batch_size": 4})
    await create_topics(settings, partitions=2)
    await publish(settings, events)
    remote = _triton_model(model_server.url)
    run = asyncio.create_task(
        run_scorer(settings, remote, redis=redis, until_caught_up=True, install_signal_handlers=False)
    )
    try:
        deadline = time.monotonic() + 60
        while not await galleries(redis, settings.namespace, hotels):  # the stream is flowing
            assert time.monotonic() < deadline and not run.done()
            await asyncio.sleep(0.05)
        model_server.kill()
        deadline = time.monotonic() + 60
        while remote.retries == 0:  # a batch met the dead server
            assert time.monotonic() < deadline and not run.done()
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)
        assert not run.done(), "the consumer stopped while the model server was down"
        partial = await galleries(redis, settings.namespace, hotels)
        assert sum(len(d["images"]) for d in partial.values()) < len(events)

        await asyncio.to_thread(model_server.start)  # the same address, a fresh server
        summary = await asyncio.wait_for(run, timeout=180)
        assert summary.dead_lettered == 0
        docs = await galleries(redis, settings.namespace, hotels)
        assert {h: {i["image_id"] for i in d["images"]} for h, d in docs.items()} == {
            h: {f"img-{j}" for j in range(6)} for h in hotels
        }
        assert await read_topic(settings, settings.dlq_topic, expected=1, timeout_s=3.0) == []
    finally:
        if not run.done():
            run.cancel()
        if model_server.proc is None or model_server.proc.poll() is not None:
            await asyncio.to_thread(model_server.start)  # for the tests after this one
        remote.close()
        await drop_namespace(redis, settings.namespace)
