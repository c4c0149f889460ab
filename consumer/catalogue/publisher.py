"""Publish a catalogue: rows in, image.upserted events on Kafka, politely and resumably.

    rows (sources.py) -> event or reject (rows.py) -> producer.send (keyed by hotel_id)
        -> acks (acks=all) -> checkpoint (checkpoint.py), once a second

The producer batches (linger) and compresses (zstd) records per partition; keying by hotel
keeps one hotel's rows in order on one partition. Sends are pipelined: at most MAX_PENDING
rows wait for their ack, so memory is flat. The checkpoint only ever names a row whose ack
(and every earlier row's ack or reject line) is in: after a crash nothing is lost, and what
is sent again carries the same event_ids.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import os
import signal
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from aiokafka import AIOKafkaProducer

from ..settings import Settings
from ..stream.kafka import make_producer
from . import checkpoint as cp
from .rows import Columns, Reject, row_event
from .sources import SourceFile, check_columns, find_files, read_rows

log = logging.getLogger(__name__)

MAX_PENDING = 20_000  # rows sent and not yet acknowledged
CHECKPOINT_EVERY_S = 1.0
REJECT_FIELDS = ("row", "file", "file_row", "reason", "detail")


class PublishFailed(RuntimeError):
    """The broker refused or lost a record past the producer's retries: resume later."""


@dataclass
class PublishOptions:
    paths: Sequence[str]
    topic: str
    columns: Columns = field(default_factory=Columns)
    format: str | None = None
    rate: float | None = None  # events/s; None = as fast as the broker acknowledges
    rejects: Path = Path("galleryrank-publish.rejects.csv")
    checkpoint: Path = Path("galleryrank-publish.checkpoint.json")
    resume: bool = False
    dry_run: bool = False
    # occurred_at of rows without one: "file-time" (each file's modification time: a row is at
    # most as new as the export that wrote it), an ISO-8601 time, or None (no occurred_at).
    as_of: str | None = "file-time"
    progress: bool = False
    linger_ms: int = 50
    compression: str | None = "zstd"


@dataclass
class PublishSummary:
    topic: str
    files: int = 0
    rows: int = 0  # rows read in this run
    sent: int = 0  # events acknowledged in this run
    rejected: int = 0
    resumed_after: int = 0  # rows done by earlier runs
    reasons: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    complete: bool = False
    interrupted: bool = False

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


class _Rejects:
    """The rejects CSV: row, file, file_row, reason, detail. On resume, lines of rows after the
    checkpoint (written before the crash, to be read again) are dropped first."""

    def __init__(self, path: Path, keep_upto: int | None):
        path.parent.mkdir(parents=True, exist_ok=True)
        kept: list[list[str]] = []
        if keep_upto is not None and path.exists():
            with open(path, newline="", encoding="utf-8") as old:
                reader = csv.reader(old)
                next(reader, None)
                kept = [r for r in reader if r and r[0].isdigit() and int(r[0]) <= keep_upto]
        self.file: TextIO = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115  # closed by close()
        self.writer = csv.writer(self.file)
        self.writer.writerow(REJECT_FIELDS)
        self.writer.writerows(kept)
        self.count = len(kept)

    def add(self, row: int, file: str, file_row: int, reason: str, detail: str) -> None:
        self.writer.writerow((row, file, file_row, reason, detail))
        self.count += 1

    def sync(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.sync()
        self.file.close()


def _producer(settings: Settings, opts: PublishOptions) -> AIOKafkaProducer:
    # acks=all (make_producer): a row counts as published once every in-sync replica has it.
    return make_producer(
        settings.model_copy(update={"client_id": f"{settings.client_id}-publish"}),
        linger_ms=opts.linger_ms,
        compression_type=opts.compression,
        max_batch_size=256 * 1024,
    )


async def publish_catalogue(
    settings: Settings,
    opts: PublishOptions,
    *,
    make: Callable[[Settings, PublishOptions], AIOKafkaProducer] = _producer,
    stop: asyncio.Event | None = None,
) -> PublishSummary:
    """Publish opts.paths to opts.topic; `stop` set (Ctrl-C) ends the run cleanly at a checkpoint."""
    files = find_files(opts.paths, opts.format)
    check_columns(files, opts.columns.required)
    summary = PublishSummary(opts.topic, files=len(files))
    state = cp.Checkpoint(opts.topic, cp.fingerprint(files))
    if opts.resume and not opts.dry_run:
        previous = cp.load(opts.checkpoint)
        if previous is not None:
            cp.check_matches(previous, opts.topic, files, opts.checkpoint)
            state = previous
            state.complete = False
    summary.resumed_after = state.rows_done
    rejects = _Rejects(opts.rejects, state.rows_done if opts.resume else None)
    producer = None if opts.dry_run else make(settings, opts)
    stop = stop or asyncio.Event()
    started = time.monotonic()
    progress_bar = _Progress(files, summary) if opts.progress else None
    try:
        if producer is not None:
            await producer.start()
        await _run(files, opts, state, summary, rejects, producer, stop, progress_bar)
        summary.complete = not stop.is_set()
        summary.interrupted = stop.is_set()
    finally:
        if progress_bar is not None:
            progress_bar.close()
        rejects.close()
        if producer is not None:
            await producer.stop()
        summary.seconds = time.monotonic() - started
        if not opts.dry_run:  # also after a failure: what was acknowledged stays done
            state.complete = summary.complete
            cp.save(opts.checkpoint, state)
    return summary


async def _run(
    files: list[SourceFile],
    opts: PublishOptions,
    state: cp.Checkpoint,
    summary: PublishSummary,
    rejects: _Rejects,
    producer: AIOKafkaProducer | None,
    stop: asyncio.Event,
    bar: _Progress | None,
) -> None:
    pending: deque[tuple[int, asyncio.Future[Any] | None]] = deque()
    columns, topic, rate = opts.columns, opts.topic, opts.rate
    as_of = {f.name: _as_of(f, opts.as_of) for f in files}
    first_sent = state.sent
    t0 = time.monotonic()
    next_checkpoint = t0 + CHECKPOINT_EVERY_S

    def settle() -> None:
        """Pop the acknowledged prefix: state.rows_done only moves over rows whose ack is in."""
        while pending:
            number, fut = pending[0]
            if fut is not None:
                if not fut.done():
                    return
                exc = fut.exception()
                if exc is not None:
                    raise PublishFailed(f"row {number}: the broker did not take it: {exc}") from exc
                state.sent += 1
                summary.sent += 1
            pending.popleft()
            state.rows_done = number

    def save() -> None:
        rejects.sync()  # every reject up to rows_done is on disk before the checkpoint says so
        state.rejected = rejects.count
        cp.save(opts.checkpoint, state)

    for row in read_rows(files, columns.wanted, state.rows_done, bar.work if bar else None, state.file_rows):
        if stop.is_set():
            break
        summary.rows += 1
        result = (
            row_event(row.values, columns, as_of[row.file])
            if row.values is not None
            else Reject("unreadable_row", row.error)
        )
        if isinstance(result, Reject):
            rejects.add(row.number, row.file, row.file_row, result.reason, result.detail)
            summary.rejected += 1
            summary.reasons[result.reason] += 1
            pending.append((row.number, None))
        elif producer is None:  # --dry-run: validated and counted
            pending.append((row.number, None))
        else:
            _, key, value = result
            if rate:  # --rate: never ahead of rate x elapsed
                ahead = (state.sent - first_sent + len(pending)) / rate - (time.monotonic() - t0)
                if ahead > 0.005:
                    await asyncio.sleep(ahead)
            pending.append((row.number, await producer.send(topic, value=value, key=key)))
            if len(pending) >= MAX_PENDING:
                oldest = pending[0][1]
                if oldest is not None:
                    await asyncio.wait([oldest])
        settle()
        if bar is not None and summary.rows % 512 == 0:
            bar.update()
        if producer is not None and time.monotonic() >= next_checkpoint:
            save()
            next_checkpoint = time.monotonic() + CHECKPOINT_EVERY_S
    if producer is not None:
        await producer.flush()
        while True:  # the last acks, still checkpointing as they come
            waiting = [f for _, f in pending if f is not None and not f.done()]
            if not waiting:
                break
            await asyncio.wait(waiting, timeout=CHECKPOINT_EVERY_S or 0.01)
            settle()
            save()
    settle()
    state.rejected = rejects.count
    if bar is not None:
        bar.update()


def _as_of(f: SourceFile, as_of: str | None) -> str | None:
    if as_of != "file-time":
        return as_of
    mtime = datetime.fromtimestamp(os.stat(f.path).st_mtime, UTC)
    return mtime.isoformat(timespec="seconds").replace("+00:00", "Z")


class _Progress:
    """A rich progress bar on stderr: rows, sent, rejected, rows/s, ETA (bytes of text files,
    rows of Parquet files, as the work measure)."""

    def __init__(self, files: list[SourceFile], summary: PublishSummary):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        from .sources import parquet_rows_total

        self.summary = summary
        self.work = [0]
        total = sum(f.size for f in files if f.format != "parquet") + parquet_rows_total(files)
        self.started = time.monotonic()
        self.bar = Progress(
            TextColumn(f"publish -> {summary.topic}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%  rows {task.fields[rows]:,}  sent {task.fields[sent]:,}"),
            TextColumn("rejected {task.fields[rejected]:,}  {task.fields[rate]:,.0f} rows/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.bar.start()
        self.task = self.bar.add_task("publish", total=total or None, rows=0, sent=0, rejected=0, rate=0.0)

    def update(self) -> None:
        s = self.summary
        elapsed = max(1e-6, time.monotonic() - self.started)
        self.bar.update(
            self.task, completed=self.work[0], rows=s.rows, sent=s.sent, rejected=s.rejected, rate=s.rows / elapsed
        )

    def close(self) -> None:
        self.update()
        self.bar.stop()


def install_stop(stop: asyncio.Event) -> Callable[[], None]:
    """Ctrl-C / SIGTERM end the run at a checkpoint (the second Ctrl-C is Python's default)."""
    loop = asyncio.get_running_loop()

    def handler(sig: int) -> None:
        log.warning("stopping at the next checkpoint (%s)", signal.Signals(sig).name)
        stop.set()
        loop.remove_signal_handler(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handler, sig)

    def remove() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    return remove
