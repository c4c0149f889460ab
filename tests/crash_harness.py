"""Run `galleryrank consume` as a real OS process and kill it with SIGKILL.

Used by the crash tests: the consumer gets no chance to flush or commit, which
is exactly the case the offset/fence design must survive.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from galleryrank.consumer.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process see exactly these Settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GALLERYRANK_")}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"GALLERYRANK_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@dataclass
class ConsumerProcess:
    settings: Settings
    log_path: Path
    proc: subprocess.Popen | None = None
    kills: int = 0
    _logs: list = field(default_factory=list)

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self._logs.append(log)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "galleryrank", "consume"],
            env=settings_env(self.settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL: no flush, no commit, no leave-group."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.kills += 1

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        for log in self._logs:
            log.close()


def kill_schedule(seed: int, kills: int, low_s: float, high_s: float) -> list[float]:
    """Seeded random run times before each SIGKILL (reproducible chaos)."""
    rng = random.Random(seed)
    return [rng.uniform(low_s, high_s) for _ in range(kills)]
