"""The types the consumer's collaborators are passed around as (for readers and mypy).

- `RedisClient`: a standalone or a cluster client (runtime.redis_client builds either).
- `RedisPipeline`: a pipeline of either (`redis.pipeline(...)`).
- `KafkaRecord`: one fetched aiokafka record of the input topic (key = hotel_id, JSON value).
- `ScoringBackend`: what the consumer calls on a model; models.scoring.ScoringModel
  (in process) and models.triton_client.TritonScoringModel (a model server) both
  satisfy it structurally, neither imports this module.

Nothing here does anything at run time beyond defining the names.

redis-py annotates the asyncio commands it shares with the sync client as
`Awaitable[T] | T`, so mypy refuses `await redis.hgetall(...)` and the like; those
lines carry `# type: ignore[misc]  # redis-py: Awaitable[T] | T` (a stub problem,
not ours: on an asyncio client every command returns an awaitable).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeAlias

if TYPE_CHECKING:  # annotations only: importing this module loads nothing
    import numpy as np
    import redis.asyncio as aioredis
    from aiokafka.structs import ConsumerRecord
    from redis.asyncio.client import Pipeline
    from redis.asyncio.cluster import ClusterPipeline, RedisCluster

    from galleryrank.models.scoring import ScoreOutput

RedisClient: TypeAlias = "aioredis.Redis | RedisCluster"
RedisPipeline: TypeAlias = "Pipeline | ClusterPipeline"
KafkaRecord: TypeAlias = "ConsumerRecord[bytes, bytes]"


class ScoringBackend(Protocol):
    """A scoring model as the consumer uses it: one `score` call per micro-batch and a few labels.

    `score` takes (N, 3, input_size, input_size) uint8 pixels (models.preprocess_image) and
    returns the batch's aesthetic distributions, area probabilities (columns in `areas`
    order) and embeddings. It runs on the batcher's model thread, one call at a time.
    """

    @property
    def areas(self) -> list[str]: ...

    @property
    def model_version(self) -> str: ...

    @property
    def input_size(self) -> int: ...

    @property
    def device(self) -> str: ...

    @property
    def backend(self) -> str: ...

    def score(self, batch: np.ndarray) -> ScoreOutput: ...
