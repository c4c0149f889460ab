"""Start-up of `galleryrank consume` as a real process: config errors, missing dependencies, the model.

* a bad value, as an env var or as a flag, is one line on stderr and exit code 2,
  before anything is loaded (no model, no client, no traceback);
* an unreachable Redis or Kafka: the probe server is up at once, /readyz says
  what is missing, the process retries with backoff and stops on SIGTERM;
* an explicit checkpoint that contradicts the live namespace stops the service
  with one line (it is never silently replaced by the namespace's model);
* the probe server binds metrics_host.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import aiohttp
import pytest

from galleryrank.consumer.bluegreen import namespaces
from galleryrank.consumer.dev.embedded import EmbeddedRedis
from galleryrank.consumer.health import ServiceStatus
from galleryrank.consumer.settings import Settings
from galleryrank.consumer.startup import start_probes
from tests.crash_harness import REPO_ROOT, settings_env

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def consume(env: dict[str, str], *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "galleryrank", "consume", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GALLERYRANK_")}
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("BATCH_SIZE", "0", "greater than or equal to 1"),
        ("DOWNLOAD_ALLOW_NETWORKS", "10.0.0.300/8", "is not a CIDR network"),
        ("RANKING_STRATEGY", "best", "unknown ranking strategy"),
        ("DEVICE", "gpu", "must be auto, cpu, cuda or cuda:N"),
        ("CHECKPOINT", "/no/such/model.pt", "does not exist"),
        ("REDIS_URL", "http://:pw@redis:6379", "must be redis://"),
        ("BOOTSTRAP_SERVERS", "kafka", "is not host:port"),
        ("NAMESPACE", "live\n", "use 1-64 letters"),  # the one name rule, state/namespace.py
        ("METRICS_PORT", "99999", "less than or equal to 65535"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_code_2_as_env_var_and_as_flag(name, value, needle):
    env = base_env()
    as_env = consume({**env, f"GALLERYRANK_{name}": value})
    as_flag = consume(env, f"--{name.lower().replace('_', '-')}", value)
    for result, source in ((as_env, f"GALLERYRANK_{name}"), (as_flag, f"--{name.lower().replace('_', '-')}")):
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, result.stderr
        assert len(lines) == 1, result.stderr  # no traceback, no usage text
        assert lines[0].startswith("error: invalid configuration: ") and source in lines[0] and needle in lines[0]
        assert "scoring with model" not in result.stderr + result.stdout  # nothing was loaded
    assert "pw" not in as_env.stderr or name != "REDIS_URL"  # the password stays masked


async def _get(url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.json()


async def _wait_for_probe(url: str, predicate, timeout_s: float) -> tuple[int, dict]:
    deadline = time.monotonic() + timeout_s
    last: tuple[int, dict] = (0, {})
    while time.monotonic() < deadline:
        try:
            last = await _get(url)
            if predicate(*last):
                return last
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"{url}: last answer {last}")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("missing", ["redis", "kafka"])
async def test_an_unreachable_dependency_is_named_by_readiness_and_retried(kafka, redis_url, tmp_path, missing):
    port = free_port()
    settings = Settings(
        bootstrap_servers=f"127.0.0.1:{free_port()}" if missing == "kafka" else kafka.bootstrap_servers,
        redis_url=f"redis://127.0.0.1:{free_port()}/0" if missing == "redis" else redis_url,
        namespace=f"test-startup-{port}",
        metrics_port=port,
        metrics_host="127.0.0.1",
        device="cpu",
        backend="torch",
        session_timeout_ms=6000,
        model_cache_dir=str(tmp_path),
    )
    log = open(tmp_path / "consume.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "galleryrank", "consume"],
        env=settings_env(settings),
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        status, body = await _wait_for_probe(
            f"http://127.0.0.1:{port}/readyz",
            lambda code, b: code == 503 and "unreachable" in b.get("waiting", {}).get(missing, ""),
            120,
        )
        assert body["ready"] is False and "unreachable" in body["waiting"][missing], body
        healthy, health = await _get(f"http://127.0.0.1:{port}/healthz")
        assert healthy == 200 and health["ok"] is True  # alive: waiting is not wedged
        await asyncio.sleep(2)  # a few more tries
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    output = (tmp_path / "consume.log").read_text()
    tries = [line for line in output.splitlines() if "unreachable" in line and "retrying in" in line]
    assert len(tries) >= 2, output[-2000:]
    assert "Traceback" not in output, output[-3000:]
    assert code in (0, -signal.SIGTERM, 128 + signal.SIGTERM), output[-2000:]
    if missing == "kafka":
        assert health["model"]["model_version"] and health["model"]["checkpoint"] == "(shipped default)"


@pytest.fixture
def private_redis_url(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)  # EmbeddedRedis would reuse it
    server = EmbeddedRedis().start()
    try:
        yield server.url
    finally:
        server.stop()


async def test_an_explicit_checkpoint_that_contradicts_the_live_namespace_stops_the_service(
    kafka, private_redis_url, tmp_path
):
    """The live namespace is filled by the default model; GALLERYRANK_CHECKPOINT names another file."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(private_redis_url)
    try:
        await namespaces.write_meta(client, "live", model_version="default-heads-x", checkpoint="")
    finally:
        await client.aclose()
    checkpoint = tmp_path / "v2.pt"
    checkpoint.write_bytes(b"not loaded: the conflict is found first")
    settings = Settings(
        bootstrap_servers=kafka.bootstrap_servers,
        redis_url=private_redis_url,
        checkpoint=str(checkpoint),
        metrics_port=0,
        device="cpu",
    )
    result = await asyncio.to_thread(consume, settings_env(settings))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert lines[-1].startswith("error: GALLERYRANK_CHECKPOINT / --checkpoint"), lines[-1]
    assert "namespace 'live' is filled by model default-heads-x" in lines[-1]
    assert "Traceback" not in result.stderr


async def test_the_probe_server_binds_metrics_host():
    assert Settings().metrics_host == "0.0.0.0"  # the default: kubelet and Prometheus reach the pod IP
    port = free_port()
    runner = await start_probes(Settings(metrics_port=port, metrics_host="127.0.0.1"), ServiceStatus())
    try:
        assert [a[:2] for a in runner.addresses] == [("127.0.0.1", port)]
        status, body = await _get(f"http://127.0.0.1:{port}/readyz")
        assert status == 503 and set(body["waiting"]) == {"model", "kafka"}
    finally:
        await runner.cleanup()
