"""Per-command settings (consumer/cli/options.py), driven as a user drives the CLI: in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from galleryrank.consumer.cli.main import cli
from galleryrank.consumer.cli.options import GROUPS, OTHER, group_of, unknown_env_warnings
from galleryrank.consumer.settings import Settings

# What each command reads, written from the code it runs (not from options.py), by group or field.
READS: dict[str, set[str]] = {
    "consume": {
        "kafka",
        "topics",
        "group",
        "redis",
        "state",
        "batching",
        "download",
        "decode",
        "model",
        "ranking",
        "service",
        "logging",
    },
    "demo": {"topics", "namespace", "state", "batching", "download", "decode", "model", "ranking", "serve", "logging"},
    "create-topics": {"kafka", "topics"},
    "replay": {
        "kafka",
        "topics",
        "group",
        "redis",
        "state",
        "batching",
        "download",
        "decode",
        "model",
        "ranking",
        "logging",
    },
    "promote": {"redis", "group_id", "topic"},
    "namespaces": {"redis"},
    "compare": {"redis"},
    "drop": {"redis"},
    "rerank": {"redis", "ranking"},
    "sheet": {"redis", "download"},
    "pin": {"kafka", "topic"},
    "unpin": {"kafka", "topic"},
    "hide": {"kafka", "topic"},
    "unhide": {"kafka", "topic"},
    "serve": {"redis", "serve", "kafka", "topics", "ranking", "model", "download", "decode", "logging"},
    "demo-producer": {"kafka", "topic", "logging"},
    "publish": {"kafka", "topics", "logging"},
    "model-server": {"checkpoint", "model_cache_dir", "device", "backend"},
    # commands added this week by others (issues 22, 24, 25), as their code reads them
    "reviewers add": {"redis"},
    "reviewers list": {"redis"},
    "reviewers revoke": {"redis"},
    "labels export": {"kafka", "labels_topic", "download", "max_image_pixels"},
    "labels suspects": {"redis"},
    "labels evidence": {"device"},
    "labels tasks": {"redis", "ranking", "review_raters"},
    "labels import": {"kafka", "labels_topic"},
    "labels": set(),  # a group: its subcommands are listed above
    "reviewers": set(),  # a group: add / list / revoke read "redis"
}
SETTING_FLAGS = {"--" + f.replace("_", "-"): f for f in Settings.model_fields}


def fields_of(selectors: set[str]) -> set[str]:
    out: set[str] = set()
    for sel in selectors:
        out.update(GROUPS[sel][1] if sel in GROUPS else {sel})
    return out & set(Settings.model_fields)


def galleryrank(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "galleryrank", *args], capture_output=True, text=True, timeout=120, env=full
    )


def test_every_setting_belongs_to_a_group():
    """A new Settings field must be placed in a group of options.py, or no command shows it sensibly."""
    assert [f for f in Settings.model_fields if group_of(f) == OTHER] == []


def all_commands() -> set[str]:
    import click

    names = set()
    for name in set(cli.list_commands(None)) - {"train", "evaluate", "explain", "export"}:
        command = cli.get_command(None, name)
        if isinstance(command, click.Group):
            names.update(f"{name} {sub}" for sub in command.commands)
        elif command is not None:
            names.add(name)
    return names


def test_every_command_is_covered_here():
    new = all_commands() - set(READS)
    assert not new, f"commands without a READS entry (add what they read): {sorted(new)}"


@pytest.mark.parametrize("command", sorted(READS))
def test_help_lists_only_the_settings_the_command_reads_grouped_with_env_vars(command):
    out = galleryrank(*command.split(), "--help")
    assert out.returncode == 0, out.stderr
    listed = {SETTING_FLAGS[m] for m in re.findall(r"^\s+(--[a-z0-9-]+)", out.stdout, re.M) if m in SETTING_FLAGS}
    expected = fields_of(READS[command])
    # model-server has its own --metrics-port (Triton's), not the setting
    if command == "model-server":
        listed.discard("metrics_port")
    assert listed == expected, f"{command}: extra {sorted(listed - expected)}, missing {sorted(expected - listed)}"
    for field in listed:
        assert f"GALLERYRANK_{field.upper()}" in out.stdout, field
    titles = {group_of(f) for f in listed}
    for title in titles:
        assert f"{title} settings:" in out.stdout


def test_pin_help_is_short_and_has_no_download_settings():
    out = galleryrank("pin", "--help").stdout
    assert "--download-timeout-s" not in out and "--batch-size" not in out
    assert len(out.splitlines()) < 40


@pytest.mark.parametrize("command", [["train", "tagger"], ["evaluate"], ["explain"], ["export"]])
def test_model_commands_name_their_env_vars_and_share_the_services_defaults(command):
    out = galleryrank(*command, "--help").stdout
    if "--device" in out:
        assert "GALLERYRANK_DEVICE" in out and re.search(r"--device.*default: auto", out, re.S)
    if "--checkpoint" in out:
        assert "GALLERYRANK_CHECKPOINT" in out
    assert "--device" in out or "--checkpoint" in out


def test_a_bad_setting_the_command_does_not_read_is_ignored_one_it_reads_is_one_line_exit_2():
    env = {"GALLERYRANK_BATCH_SIZE": "0"}
    # namespaces never reads batch_size: it gets as far as Redis (port 1: nothing there), not a config error
    out = galleryrank("namespaces", "--redis-url", "redis://127.0.0.1:1/0", env=env)
    assert "BATCH_SIZE" not in out.stderr, out.stderr
    # consume reads it: one line, exit 2
    out = galleryrank("consume", env=env)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "GALLERYRANK_BATCH_SIZE" in lines[0] and "Traceback" not in out.stderr


def test_a_misspelt_variable_is_one_warning_naming_the_real_setting():
    out = galleryrank("pin", "--dry-run", "h-1", "img-1", env={"GALLERYRANK_BATCHSIZE": "64"})
    warnings = [line for line in out.stderr.splitlines() if "GALLERYRANK_BATCHSIZE" in line]
    assert len(warnings) == 1 and "GALLERYRANK_BATCH_SIZE" in warnings[0]
    assert out.returncode == 0, out.stderr


def test_known_tool_variables_are_not_warned_about():
    env = {"GALLERYRANK_HOUSES_DEV": "/x", "GALLERYRANK_TOPIC": "t", "GALLERYRANK_BATCHSIZE": "1"}
    lines = unknown_env_warnings(env)
    assert len(lines) == 1 and "GALLERYRANK_BATCHSIZE" in lines[0]


def test_replay_deprecated_aliases_print_one_notice_and_still_work(tmp_path):
    # --model of a file that does not exist: the notice, then the checkpoint check (one line, exit 2)
    out = galleryrank("replay", "--namespace", "v2", "--model", str(tmp_path / "nope.pt"))
    notes = [line for line in out.stderr.splitlines() if line.startswith("note: --model is deprecated")]
    assert len(notes) == 1 and "--checkpoint" in notes[0]
    assert out.returncode == 2 and "--checkpoint" in out.stderr and "does not exist" in out.stderr
    assert "Traceback" not in out.stderr
    help_text = galleryrank("replay", "--help").stdout
    assert re.search(r"^\s+--model\s", help_text, re.M) is None
    assert re.search(r"^\s+--group\s", help_text, re.M) is None
