"""How fast `galleryrank publish` gets a catalogue onto Kafka, next to a plain producer loop.

    python -m bench.publish_bench [--rows 100000] [--bootstrap HOST:PORT]

One run, one broker (a Tansu started here unless --bootstrap is given), each row a fresh topic:

- baseline: the loop an adopter would write: csv.reader -> a minimal image.upserted JSON ->
  producer.send, no validation, no rejects, no checkpoint, no rate limit;
- publish CSV / publish Parquet: `galleryrank publish` (consumer/catalogue/): the consumer's own
  parser on every row, derived event ids, rejects file, a checkpoint after acks each second;
- ceiling: producer.send of records encoded beforehand: what aiokafka and the broker take
  from one Python process, whatever the reading and validation cost.

Every producer is the same: acks=all, zstd, linger 50 ms, 256 KB batches, keyed by hotel_id.
CPU-ms per row is utime+stime from /proc/<pid>/stat over the run, for this process (the
publisher) and for the broker. The load average is printed: on a shared machine the wall
rates move with it, CPU-ms per row much less.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from galleryrank.consumer.catalogue.publisher import PublishOptions, publish_catalogue
from galleryrank.consumer.settings import Settings
from galleryrank.consumer.stream.kafka import create_topics, make_producer

_TICK = os.sysconf("SC_CLK_TCK")
PER_HOTEL = 130  # the seed's catalogue: 308 M photos over 2.3 M hotels


def cpu_s(pid: int | str = "self") -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def make_catalogue(directory: Path, rows: int) -> tuple[Path, Path]:
    """A CSV and a Parquet file of the same `rows` (hotel_id, image_id, url) rows."""
    records = [
        {
            "hotel_id": f"h{i // PER_HOTEL:07d}",
            "image_id": f"img-{i:09d}",
            "url": f"https://photos.example.com/{i // PER_HOTEL:07d}/{i:09d}.jpg",
        }
        for i in range(rows)
    ]
    csv_path, parquet_path = directory / "catalogue.csv", directory / "catalogue.parquet"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["hotel_id", "image_id", "url"])
        w.writeheader()
        w.writerows(records)
    pq.write_table(pa.Table.from_pylist(records), parquet_path, row_group_size=65_536)
    return csv_path, parquet_path


def producer(settings: Settings):
    return make_producer(settings, linger_ms=50, compression_type="zstd", max_batch_size=256 * 1024)


async def plain_loop(settings: Settings, topic: str, csv_path: Path) -> int:
    p = producer(settings)
    await p.start()
    sent, futures = 0, []
    try:
        with open(csv_path, newline="") as f:
            reader = csv.reader(f)
            next(reader)
            for hotel, image, url in reader:
                value = orjson.dumps(
                    {
                        "event_id": uuid.uuid4().hex,
                        "type": "image.upserted",
                        "hotel_id": hotel,
                        "image_id": image,
                        "url": url,
                    }
                )
                futures.append(await p.send(topic, value=value, key=hotel.encode()))
                sent += 1
                if len(futures) >= 20_000:
                    await asyncio.gather(*futures)
                    futures.clear()
        await asyncio.gather(*futures)
    finally:
        await p.stop()
    return sent


async def ceiling(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> int:
    p = producer(settings)
    await p.start()
    futures = []
    try:
        for key, value in records:
            futures.append(await p.send(topic, value=value, key=key))
            if len(futures) >= 20_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await p.stop()
    return len(records)


async def measure(name: str, work: Callable[[], Awaitable[int]], broker_pid: int | None) -> dict:
    broker0 = cpu_s(broker_pid) if broker_pid else 0.0
    cpu0, t0 = cpu_s(), time.perf_counter()
    rows = await work()
    wall, cpu = time.perf_counter() - t0, cpu_s() - cpu0
    broker = (cpu_s(broker_pid) - broker0) if broker_pid else float("nan")
    return {
        "name": name,
        "rows": rows,
        "wall": wall,
        "rate": rows / wall,
        "cpu_ms": 1000 * cpu / rows,
        "broker_ms": 1000 * broker / rows,
        "load": os.getloadavg()[0],
    }


async def run(args: argparse.Namespace, bootstrap: str, broker_pid: int | None) -> list[dict]:
    tag = uuid.uuid4().hex[:6]
    settings = Settings(bootstrap_servers=bootstrap, topic=f"bench-publish-{tag}")
    work_dir = Path(tempfile.mkdtemp(prefix="publish-bench-"))
    csv_path, parquet_path = make_catalogue(work_dir, args.rows)
    topics = {k: f"bench-publish-{tag}-{k}" for k in ("plain", "csv", "parquet", "ceiling")}
    for topic in topics.values():
        await create_topics(settings.model_copy(update={"topic": topic}), partitions=args.partitions)

    def publish(path: Path, topic: str) -> Callable[[], Awaitable[int]]:
        async def go() -> int:
            opts = PublishOptions(
                [str(path)], topic, rejects=work_dir / f"{topic}.rejects.csv", checkpoint=work_dir / f"{topic}.json"
            )
            summary = await publish_catalogue(settings, opts)
            assert summary.complete and summary.rejected == 0, summary
            return summary.sent

        return go

    with open(csv_path, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        encoded = [
            (
                h.encode(),
                orjson.dumps(
                    {"event_id": uuid.uuid4().hex, "type": "image.upserted", "hotel_id": h, "image_id": i, "url": u}
                ),
            )
            for h, i, u in reader
        ]
    results = [
        await measure(
            "baseline: plain aiokafka loop (CSV)", lambda: plain_loop(settings, topics["plain"], csv_path), broker_pid
        ),
        await measure("galleryrank publish (CSV)", publish(csv_path, topics["csv"]), broker_pid),
        await measure("galleryrank publish (Parquet)", publish(parquet_path, topics["parquet"]), broker_pid),
        await measure("ceiling: pre-encoded sends", lambda: ceiling(settings, topics["ceiling"], encoded), broker_pid),
    ]
    return results


def print_table(results: list[dict], args: argparse.Namespace) -> None:
    print(f"\n{args.rows:,} rows, {args.partitions} partitions, acks=all, zstd, linger 50 ms; {os.cpu_count()} cores")
    print(
        f"| {'':<36} | {'rows/s':>8} | {'wall s':>6} | {'CPU-ms/row':>10} | {'broker CPU-ms/row':>17} | {'load avg':>8} |"
    )
    print(f"|{'-' * 38}|{'-' * 10}|{'-' * 8}|{'-' * 12}|{'-' * 19}|{'-' * 10}|")
    for r in results:
        print(
            f"| {r['name']:<36} | {r['rate']:>8,.0f} | {r['wall']:>6.1f} | {r['cpu_ms']:>10.3f} | "
            f"{r['broker_ms']:>17.3f} | {r['load']:>8.2f} |"
        )
    one, two, fifteen = os.getloadavg()
    print(f"load average {one:.2f} / {two:.2f} / {fifteen:.2f} (1/5/15 min)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--bootstrap", default=None, help="a running broker [default: start a Tansu here]")
    args = parser.parse_args()
    if args.bootstrap:
        results = asyncio.run(run(args, args.bootstrap, None))
    else:
        from galleryrank.consumer.dev.embedded import EmbeddedKafka

        with EmbeddedKafka() as broker:
            assert broker.proc is not None
            results = asyncio.run(run(args, broker.bootstrap_servers, broker.proc.pid))
    print_table(results, args)


if __name__ == "__main__":
    main()
