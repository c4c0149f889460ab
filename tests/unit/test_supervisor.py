"""consumer/supervisor.py: how many processes fit, what each child gets, restart policy.

The restart tests run real child processes (tiny Python one-liners standing in for
`galleryrank consume`); tests/integration/test_processes.py runs the real CLI.
"""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from galleryrank.consumer import supervisor
from galleryrank.consumer.settings import Settings
from galleryrank.consumer.supervisor import Supervisor, child_env, fitting_processes

GB = 1024**3


def test_fitting_processes_by_cores_memory_partitions_and_where_the_model_runs():
    cpu = Settings(device="cpu")
    assert fitting_processes(cpu, cores=16, memory=64 * GB) == 8  # 2 cores per CPU scorer
    assert fitting_processes(Settings(device="cuda"), cores=16, memory=64 * GB) == 4  # decode cores per GPU scorer
    offloaded = Settings(device="cpu").model_copy(update={"backend": "triton"})
    assert fitting_processes(offloaded, cores=16, memory=64 * GB) == 16  # model in a server: the loop's core
    assert fitting_processes(cpu, cores=16, memory=5 * GB) == 2  # 2 GB each
    assert fitting_processes(cpu, cores=64, memory=512 * GB, partitions=6) == 6  # no idle members
    assert fitting_processes(cpu, cores=2, memory=64 * GB) == 1
    assert fitting_processes(cpu, cores=1, memory=GB, partitions=12) == 1  # never 0


def test_child_env_gives_the_same_settings_with_its_own_id_port_and_one_process(monkeypatch):
    s = Settings(metrics_port=9300, client_id="gr", batch_size=48, processes=3, download_allow_networks="10.0.0.0/8")
    env = child_env(s, 2)
    for key in list(os.environ):
        if key.startswith("GALLERYRANK_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("GALLERYRANK_"):
            monkeypatch.setenv(key, value)
    child = Settings()
    assert (child.client_id, child.metrics_port, child.processes) == ("gr-2", 9303, 1)
    same = {"client_id", "metrics_port", "processes"}
    assert child.model_dump(exclude=same) == s.model_dump(exclude=same)


def test_metrics_off_stays_off_for_the_children():
    assert child_env(Settings(metrics_port=0), 1)["GALLERYRANK_METRICS_PORT"] == "0"


def _sup(code: str, processes: int = 1) -> Supervisor:
    return Supervisor(Settings(metrics_port=0), processes, command=[sys.executable, "-c", code])


async def test_a_crashing_child_is_restarted_with_growing_backoff(monkeypatch):
    monkeypatch.setattr(supervisor, "BACKOFF_START_S", 0.05)
    sup = _sup("import sys; sys.exit(3)")
    sup.children[0].backoff_s = 0.05
    task = asyncio.create_task(sup.run(install_signal_handlers=False))
    for _ in range(200):
        if sup.children[0].restarts >= 3:
            break
        await asyncio.sleep(0.05)
    sup.stop()
    assert await asyncio.wait_for(task, 10) == 0
    child = sup.children[0]
    assert child.restarts >= 3
    assert set(child.exit_codes[:3]) == {3}  # the last one may be the SIGTERM of stop()
    assert child.backoff_s >= 0.05 * 2**3  # doubled on every restart


async def test_a_child_that_finishes_is_not_restarted_and_the_supervisor_ends():
    sup = _sup("pass", processes=2)
    assert await asyncio.wait_for(sup.run(install_signal_handlers=False), 20) == 0
    assert [c.restarts for c in sup.children] == [0, 0]
    assert [c.exit_codes for c in sup.children] == [[0], [0]]


async def test_a_configuration_error_stops_everything_with_exit_2():
    sup = _sup("import sys, time; sys.exit(2) if True else time.sleep(60)", processes=1)
    assert await asyncio.wait_for(sup.run(install_signal_handlers=False), 20) == 2


async def test_stop_terminates_running_children():
    sup = _sup("import time; time.sleep(60)", processes=2)
    task = asyncio.create_task(sup.run(install_signal_handlers=False))
    for _ in range(100):
        if all(c.pid for c in sup.children):
            break
        await asyncio.sleep(0.05)
    pids = [c.pid for c in sup.children]
    assert all(pids)
    sup.stop()
    assert await asyncio.wait_for(task, 20) == 0
    assert all(c.proc.returncode is not None for c in sup.children)
    assert [c.exit_codes for c in sup.children] == [[-15], [-15]]  # SIGTERM, seen by each watcher
    assert [c.restarts for c in sup.children] == [0, 0]


@pytest.mark.parametrize("kind", ["auto", "asyncio"])
def test_event_loop_choice_runs_a_coroutine(kind):
    from galleryrank.consumer.eventloop import run, uvloop_available

    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__

    module = run(which(), kind)
    expect_uv = kind == "auto" and uvloop_available()
    assert module.startswith("uvloop") == expect_uv
