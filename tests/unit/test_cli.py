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
    listed = run("--help").stdout
    for name, short_help in MODEL_COMMANDS.items():
        assert name in cli.list_commands(None) and short_help in listed


def test_one_cli_framework():
    """click throughout: the model commands are click commands, typer is not a dependency."""
    import click

    from galleryrank.models import cli as models_cli

    for name in MODEL_COMMANDS:
        assert isinstance(cli.get_command(None, name), click.Command)
    assert "typer" not in models_cli.__dict__


# --- start-up cost: the operations commands never load the model stack -------------------------
HEAVY = ("torch", "torchvision", "timm", "onnx", "onnxruntime", "galleryrank.models")
# Runs the real entry point; at exit (also after sys.exit) prints which heavy modules were imported.
PROBE = (
    "import atexit, sys\n"
    f"heavy = {HEAVY!r}\n"
    "atexit.register(lambda: print('HEAVY=' + ','.join(m for m in heavy if m in sys.modules), file=sys.stderr))\n"
    "from galleryrank.consumer.cli import main\n"
    "main(sys.argv[1:])\n"
)


def heavy_modules_of(*args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, list[str]]:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120, env=env)
    line = next(x for x in out.stderr.splitlines() if x.startswith("HEAVY="))
    return out, [m for m in line[len("HEAVY=") :].split(",") if m]


@pytest.mark.parametrize(
    "command",
    [[], ["promote"], ["namespaces"], ["drop"], ["compare"], ["rerank"], ["replay"], ["serve"], ["consume"]],
)
def test_help_does_not_import_the_model_stack(command):
    out, heavy = heavy_modules_of(*command, "--help")
    assert out.returncode == 0, out.stderr
    assert heavy == [], f"galleryrank {' '.join(command)} --help imported {heavy}"
