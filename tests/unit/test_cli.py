"""The `galleryrank` entry point: every command's --help works, errors are readable."""

from __future__ import annotations

import subprocess
import sys

import pytest

from galleryrank.consumer.cli.main import MODEL_COMMANDS, cli


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "galleryrank", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "command", [["train", "tagger"], ["train", "aesthetic"], ["evaluate"], ["explain"], ["export"], ["consume"]]
)
def test_help_of_every_kind_of_command_exits_cleanly(command):
    out = run(*command, "--help")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and "Usage" in out.stdout


def test_bad_flag_of_a_model_command_is_a_message_not_a_traceback():
    out = run("train", "tagger", "--data", "/nonexistent-dir")
    assert out.returncode != 0
    assert "Traceback" not in out.stderr and "does not exist" in out.stderr


def test_model_commands_are_listed_in_the_top_level_help():
    assert set(MODEL_COMMANDS) <= set(cli.commands)
