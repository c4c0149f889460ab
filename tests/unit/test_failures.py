"""The one error model (consumer/failures.py): classification, the retry helper, and the
writer's isolation of a hotel whose change raises (a fake store: pure logic)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, NotLeaderForPartitionError
from redis import exceptions as r

from galleryrank.consumer.failures import (
    Backoff,
    EventFault,
    Fault,
    IsolatedFailure,
    RetryBudgetExceeded,
    classify,
    is_environment,
    retry,
)
from galleryrank.consumer.state.store import ApplyResult
from galleryrank.consumer.state.writer import StateWriter

# Error replies as Redis 6.2 / 7 send them, as redis-py hands them over.
NOT_NOW = [
    r.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
    r.ReadOnlyError("You can't write against a read only replica."),
    r.ResponseError("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk."),
    r.ResponseError("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."),
    r.BusyLoadingError("Redis is loading the dataset in memory"),
    r.TryAgainError("Multiple keys request during rehashing of slot"),
    r.ClusterDownError("The cluster is down"),
    r.MasterDownError("Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
    r.ResponseError("NOREPLICAS Not enough good replicas to write."),
    # Wrapped by a Lua script (Redis 6.2 reports a refused redis.call this way).
    r.ResponseError(
        "Error running script (call to f_5b2b2e1d0cbd9a5f): @user_script:4: @user_script: 4: "
        "-OOM command not allowed when used memory > 'maxmemory'."
    ),
    r.ResponseError(
        "Error running script (call to f_1): @user_script:4: @user_script: 4: "
        "-READONLY You can't write against a read only replica."
    ),
    # A pipeline's first error, re-raised by redis-py with the command in front.
    r.ResponseError(
        "Command # 1 (HGETALL galleryrank:x:images:{h}) of pipeline caused error: "
        "('BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.',)"
    ),
    r.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
    r.TimeoutError("Timeout reading from socket"),
    KafkaConnectionError("no broker"),
    NotLeaderForPartitionError(),
    ConnectionResetError("reset"),
    TimeoutError(),
]


@pytest.mark.parametrize("exc", NOT_NOW, ids=lambda e: f"{type(e).__name__}:{str(e)[:30]}")
def test_not_now_failures_are_the_environments(exc):
    assert classify(exc) is Fault.ENVIRONMENT


@pytest.mark.parametrize(
    "exc",
    [
        r.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        r.ResponseError(
            "ERR Error running script (call to f_1): @user_script:2: user_script:2: attempt to compare nil"
        ),
        ValueError("year 10000 is out of range"),
        KeyError("x"),
        MessageSizeTooLargeError(),
        IsolatedFailure(ValueError("x"), 3),
    ],
    ids=lambda e: type(e).__name__,
)
def test_bugs_are_not_the_environments(exc):
    assert classify(exc) is Fault.BUG


def test_event_fault_and_wrapping():
    assert classify(EventFault("occurred_at_in_future", "x")) is Fault.EVENT
    try:
        try:
            raise r.ReadOnlyError("You can't write against a read only replica.")
        except r.ReadOnlyError as inner:
            raise RuntimeError("write failed") from inner
    except RuntimeError as outer:
        assert is_environment(outer)
    assert is_environment(ExceptionGroup("g", [r.ConnectionError("a"), OSError("b")]))
    assert not is_environment(ExceptionGroup("g", [r.ConnectionError("a"), ValueError("b")]))


async def test_retry_retries_the_environment_and_raises_bugs_at_once():
    calls = []

    async def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise r.OutOfMemoryError("command not allowed")
        return "ok"

    assert await retry(flaky, "t", backoff=Backoff(0.001, 0.002)) == "ok"
    assert len(calls) == 3

    async def bug():
        calls.append(1)
        raise ValueError("bug")

    calls.clear()
    with pytest.raises(ValueError):
        await retry(bug, "t", backoff=Backoff(0.001, 0.002))
    assert len(calls) == 1

    async def down():
        raise r.ConnectionError("down")

    started = time.monotonic()
    with pytest.raises(RetryBudgetExceeded):
        await retry(down, "t", backoff=Backoff(0.01, 0.02), budget_s=0.2)
    assert time.monotonic() - started < 5


class _Change:
    def __init__(self, hotel: str, n: int, bad: bool = False):
        self.hotel, self.n, self.bad = hotel, n, bad


class FakeStore:
    """Fails the hotels whose changes include a bad one (as GalleryStore.apply reports it); a
    Redis refusal for the first `refuse` calls."""

    def __init__(self, refuse: int = 0):
        self.refuse = refuse
        self.calls: list[list[tuple[str, object]]] = []
        self.written: list[tuple[str, int]] = []

    async def apply(self, namespace, changes):
        changes = list(changes)
        self.calls.append(changes)
        if self.refuse:
            self.refuse -= 1
            raise r.OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")
        result = ApplyResult()
        bad = {h for h, c in changes if c.bad}
        for h, c in changes:
            if h in bad:
                result.failed[h] = ValueError(f"bad value in {h}")
            else:
                self.written.append((h, c.n))
                result.applied += 1
        return result

    async def active_namespace(self):
        return "ns"

    def forget(self, partitions=None):
        return 0


async def _ns():
    return "ns"


async def test_one_hotels_bug_fails_only_its_culprit_after_trying_it_alone():
    store = FakeStore()
    writer = StateWriter(store, _ns, coalesce_s=0.05)
    writer.start()
    try:
        changes = [(f"h{i}", _Change(f"h{i}", 0)) for i in range(32)]
        changes.append(("h7", _Change("h7", 1, bad=True)))
        changes.append(("h7", _Change("h7", 2)))
        results = await asyncio.gather(*(writer.write(h, c) for h, c in changes), return_exceptions=True)
    finally:
        await writer.stop()
    failed = [c for (h, c), res in zip(changes, results) if isinstance(res, BaseException)]
    assert [(c.hotel, c.n) for c in failed] == [("h7", 1)]
    assert isinstance(results[32], IsolatedFailure) and results[32].attempts == 3
    # Every other change is written: the 31 other hotels in the chunk, h7's good changes alone.
    assert sorted(store.written) == sorted([(f"h{i}", 0) for i in range(32)] + [("h7", 2)])
    alone = [c for c in store.calls if len(c) == 1 and c[0][1].bad]
    assert len(alone) == 3  # the culprit was tried alone BUG_ATTEMPTS times


async def test_redis_refusing_writes_is_retried_never_failed():
    store = FakeStore(refuse=4)
    writer = StateWriter(store, _ns, coalesce_s=0.0, backoff_max_s=0.01)
    writer.start()
    try:
        await asyncio.wait_for(asyncio.gather(*(writer.write(f"h{i}", _Change(f"h{i}", i)) for i in range(5))), 10)
    finally:
        await writer.stop()
    assert sorted(store.written) == [(f"h{i}", i) for i in range(5)]
