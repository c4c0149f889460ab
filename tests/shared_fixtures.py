"""Fixtures that several integration modules share; a module imports the ones it wants by name.

None has the name of a tests/conftest.py fixture (importing one never swaps a fixture
silently). The ONNX model is conftest's: mark a module ``pytest.mark.onnx_model``.
"""

from __future__ import annotations

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from galleryrank.consumer.dev.embedded import EmbeddedRedis
from galleryrank.consumer.dev.samples import ImageServer
from galleryrank.consumer.state import keys
from tests.fault_support import small_jpegs


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
