"""The one error model: whose fault a failure is, and the one retry helper.

Every failure the service meets is classified here, once (docs/architecture.md,
"The error model"):

- ``Fault.EVENT`` -- the event itself can never succeed (bad schema, an image that
  is not one, a value out of range). Its record goes to the DLQ with a stable
  reason, then its offset is committed. Raised as ``EventFault`` (or returned as
  an ``InvalidEvent`` / ``DownloadError`` / ``DecodeError`` where it is found).
- ``Fault.ENVIRONMENT`` -- "not now": Redis, Kafka, the network, the disk, a model
  server. Retried with capped, jittered backoff for as long as it lasts; nothing
  is committed meanwhile (the in-flight cap pauses the partitions), nothing is
  dead-lettered. Redis error replies that mean "not now" (OOM, READONLY, MISCONF,
  BUSY, LOADING, TRYAGAIN, CLUSTERDOWN, MASTERDOWN, NOREPLICAS) count whether
  redis-py mapped them to a class or they come wrapped in "Error running script".
- ``Fault.BUG`` -- anything else: our code failed on this input. It is retried a
  few times, then isolated (the change is applied alone, its hotel alone) and only
  after it failed alone ``BUG_ATTEMPTS`` times is the one record dead-lettered as
  ``internal_error``; every other event goes on.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from redis import exceptions as redis_errors

log = logging.getLogger(__name__)

_T = TypeVar("_T")

# A bug on one event: tried this many times alone before its record is dead-lettered.
BUG_ATTEMPTS = 3
BACKOFF_START_S, BACKOFF_MAX_S = 0.05, 5.0

# Redis reply codes that mean "the server cannot take this now", not "this is wrong".
NOT_NOW_CODES = (
    "OOM",
    "READONLY",
    "MISCONF",
    "BUSY",
    "LOADING",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "MASTERDOWN",
    "NOREPLICAS",
)
# At the start of the reply, or where a wrapper quotes it: a script error
# ("Error running script (call to f_..): @user_script:4: -OOM command not allowed ..."), a
# pipeline ("Command # 1 (HGETALL ..) of pipeline caused error: ('BUSY Redis is busy ...',)").
_NOT_NOW_RE = re.compile(r"(?:^|[-:'\"(]\s*)(" + "|".join(NOT_NOW_CODES) + r")\b")
_REDIS_NOT_NOW = (
    redis_errors.ConnectionError,  # includes AuthenticationError: an operator fixes it, the event is fine
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    redis_errors.ClusterDownError,  # and MasterDownError
    redis_errors.TryAgainError,
    redis_errors.ReadOnlyError,
    redis_errors.OutOfMemoryError,
    redis_errors.MovedError,
    redis_errors.AskError,
)


class Fault(enum.Enum):
    EVENT = "event"
    ENVIRONMENT = "environment"
    BUG = "bug"


class EventFault(Exception):
    """This event can never succeed: dead-letter it with ``reason`` and commit."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class EnvironmentFault(Exception):
    """Raised (or subclassed) by our own code for "not now" failures of a dependency."""


class IsolatedFailure(Exception):
    """A change failed alone ``attempts`` times: a bug on this event, dead-letter it as internal_error."""

    def __init__(self, cause: BaseException, attempts: int):
        super().__init__(f"{type(cause).__name__}: {str(cause)[:200]} (failed alone {attempts} times)")
        self.cause = cause
        self.attempts = attempts


class RetryBudgetExceeded(Exception):
    """The environment stayed down past a bounded retry's budget (the caller decides what that means)."""

    def __init__(self, what: str, budget_s: float, last: BaseException):
        super().__init__(f"{what}: still failing after {budget_s:g} s ({type(last).__name__}: {str(last)[:160]})")
        self.last = last


def not_now_reply(message: str) -> bool:
    """A Redis error reply (as text) that means "not now"."""
    return _NOT_NOW_RE.search(message) is not None


def classify(exc: BaseException) -> Fault:
    """Whose fault ``exc`` is (see the module docstring). Explicit wrapping (``raise X from Y``)
    and exception groups are looked through: a wrapped "not now" is still the environment's."""
    if isinstance(exc, EventFault):
        return Fault.EVENT
    if isinstance(exc, IsolatedFailure):
        return Fault.BUG
    if _environment(exc):
        return Fault.ENVIRONMENT
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        kinds = {classify(e) for e in exc.exceptions}
        if kinds == {Fault.ENVIRONMENT}:
            return Fault.ENVIRONMENT
    if exc.__cause__ is not None and exc.__cause__ is not exc:
        return classify(exc.__cause__)
    return Fault.BUG


def _environment(exc: BaseException) -> bool:
    if isinstance(exc, (EnvironmentFault, *_REDIS_NOT_NOW)):
        return True
    if isinstance(exc, redis_errors.ResponseError):
        return not_now_reply(str(exc))
    if isinstance(exc, KafkaConnectionError | KafkaTimeoutError):
        return True
    if getattr(exc, "retriable", False) is True:  # aiokafka's retriable errors (leader moved, not enough replicas)
        return True
    # The network, the disk, a timeout of our own (asyncio.TimeoutError is TimeoutError).
    return isinstance(exc, OSError | ConnectionError | TimeoutError)


def is_environment(exc: BaseException) -> bool:
    return classify(exc) is Fault.ENVIRONMENT


class Backoff:
    """Capped exponential backoff with jitter (0.5x-1.5x): many consumers never retry in step."""

    def __init__(self, start_s: float = BACKOFF_START_S, max_s: float = BACKOFF_MAX_S, jitter: bool = True):
        self.start_s, self.max_s, self.jitter = start_s, max_s, jitter
        self.delay = start_s
        self.tries = 0

    def next(self) -> float:
        """The next pause, and grow the one after it."""
        delay = self.delay * (0.5 + random.random()) if self.jitter else self.delay
        self.delay = min(self.delay * 2, self.max_s)
        self.tries += 1
        return delay

    async def sleep(self) -> float:
        delay = self.next()
        await asyncio.sleep(delay)
        return delay

    def reset(self) -> None:
        self.delay, self.tries = self.start_s, 0


async def retry(
    call: Callable[[], Awaitable[_T]],
    what: str,
    *,
    retry_if: Callable[[BaseException], bool] = is_environment,
    backoff: Backoff | None = None,
    budget_s: float | None = None,
    on_retry: Callable[[BaseException, float, int], None] | None = None,
) -> _T:
    """``await call()`` until it succeeds, retrying the failures ``retry_if`` accepts (the
    environment's, by default) with ``backoff``; any other failure is raised at once.

    ``budget_s``: give up after that long and raise ``RetryBudgetExceeded`` (None: retry for as
    long as the environment is down -- it is never the event's fault). ``on_retry(exc, delay,
    tries)`` replaces the default log line (metrics, readiness).
    """
    backoff = backoff or Backoff()
    deadline = None if budget_s is None else time.monotonic() + budget_s
    while True:
        try:
            return await call()
        except Exception as exc:
            if not retry_if(exc):
                raise
            delay = backoff.next()
            if deadline is not None and time.monotonic() + delay > deadline:
                raise RetryBudgetExceeded(what, budget_s or 0.0, exc) from exc
            if on_retry is not None:
                on_retry(exc, delay, backoff.tries)
            else:
                log.warning("%s failed (%s: %s); retrying in %.2fs", what, type(exc).__name__, str(exc)[:160], delay)
            await asyncio.sleep(delay)
