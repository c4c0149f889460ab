"""Fixtures that several integration modules share.

A module imports the ones it wants by name (pytest then finds them in that
module, where they override tests/conftest.py's fixtures of the same name).
"""

from __future__ import annotations

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from galleryrank.consumer.dev.embedded import EmbeddedRedis
from galleryrank.consumer.dev.samples import ImageServer
from galleryrank.consumer.state import keys
from tests.fault_support import small_jpegs


# --- the real model on ONNX Runtime ----------------------------------------------------------
@pytest.fixture(scope="module")
def onnx_model_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("onnx-model"))


@pytest.fixture(scope="module")
def model(onnx_model_dir):
    """The real model on ONNX Runtime: ~3x the images/s of eager fp32 torch on these CPUs
    (docs/references.md), and a batch's scores do not depend on its size. Exported once per module;
    consumer processes started by the tests load the same file."""
    from galleryrank.models import load_scoring_model

    return load_scoring_model(None, device="cpu", backend="onnxruntime", cache_dir=onnx_model_dir)


@pytest.fixture
def settings(settings, onnx_model_dir):
    return settings.model_copy(update={"backend": "onnxruntime", "model_cache_dir": onnx_model_dir})


@pytest_asyncio.fixture
async def small_server(sample_jpegs):
    """64 px copies of the sample photos: the pipeline's cost without the decode's."""
    server = await ImageServer(small_jpegs(sample_jpegs)).start()
    yield server
    await server.stop()


# --- a Redis of the module's own --------------------------------------------------------------
@pytest.fixture(scope="module")
def private_redis_url():
    """promote moves galleryrank:active: a private server, so no other test is disturbed."""
    with EmbeddedRedis() as server:
        yield server.url


@pytest_asyncio.fixture
async def private_redis(private_redis_url):
    client = aioredis.Redis.from_url(private_redis_url)
    yield client
    await client.delete(keys.ACTIVE_KEY, keys.PROMOTING_KEY)
    await client.aclose()
