"""The one time parser and formatter of the service (event times, record timestamps, replay bounds).

Everything is integers since the Unix epoch (µs for ``occurred_at``, ms for Kafka
timestamps and documents), computed with timedelta arithmetic, so no value can
overflow a ``datetime`` later: ``9999-12-31T23:59:59-01:00`` is a valid ISO-8601
time whose UTC instant is in year 10000, and it parses (to a number past
``MAX_MS``) instead of raising inside rendering.

Bounds (docs/architecture.md, "Fencing"; docs/reliability.md):
- any text ``datetime.fromisoformat`` accepts parses (``Z``, ``+05:30``, no zone =
  UTC, week dates, fractions); anything else -- year 0000, garbage -- is *absent*;
- an ``occurred_at`` more than ``max_skew_s`` ahead of the record's timestamp (or
  of now, when the record carries none that is believable) can only be a broken
  clock: the event is dead-lettered as ``occurred_at_in_future``, so no single
  event can freeze an image by winning every later comparison;
- a Kafka record timestamp outside [year 1, now + skew] counts as absent (-1);
- ``iso_ms`` formats any integer, clamping to [0001-01-01, 9999-12-31].
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_MS = int((datetime(1, 1, 1, tzinfo=UTC) - EPOCH) / timedelta(milliseconds=1))
MAX_MS = int((datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - EPOCH) / timedelta(milliseconds=1))
# A producer's clock may run this far ahead of the broker's / ours (setting max_clock_skew_s).
DEFAULT_MAX_SKEW_S = 300.0


def parse_iso_us(text: str | None) -> int | None:
    """An ISO-8601 time as µs since the epoch; None when absent or not a time (naive = UTC)."""
    if not text or not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # Aware subtraction never overflows (9999-12-31T23:59:59-01:00 is fine), unlike astimezone(UTC).
    try:
        delta = moment - EPOCH
    except OverflowError:
        return None
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_iso_ms(text: str | None) -> int | None:
    us = parse_iso_us(text)
    return None if us is None else us // 1000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def record_timestamp_ms(value: object, max_skew_s: float = DEFAULT_MAX_SKEW_S, now: int | None = None) -> int:
    """A Kafka record's timestamp (ms) if it is believable, else -1 (unknown)."""
    if not isinstance(value, int) or isinstance(value, bool):
        return -1
    limit = (now_ms() if now is None else now) + int(max_skew_s * 1000)
    if value < MIN_MS or value > min(limit, MAX_MS):
        return -1
    return value


def future_by_s(occurred_us: int | None, record_ms: int, max_skew_s: float, now: int | None = None) -> float:
    """How far (s) ``occurred_us`` is past the allowed future (<= 0: fine). The reference is the
    record's timestamp when known (a replay then decides as the live run did), else now."""
    if occurred_us is None:
        return 0.0
    reference = record_ms if record_ms >= 0 else (now_ms() if now is None else now)
    return occurred_us / 1e6 - (reference / 1000 + max_skew_s)


def iso_ms(ms: int) -> str:
    """``2026-12-08T01:02:03.456Z`` for any integer ms (clamped to years 1-9999)."""
    moment = EPOCH + timedelta(milliseconds=min(max(int(ms), MIN_MS), MAX_MS))
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
