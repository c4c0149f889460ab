"""`galleryrank pin / unpin / hide / unhide`: the events they would publish, validated like the consumer does.

Publishing to a real broker is covered in tests/integration/test_editor_overrides.py.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import orjson
import pytest
from click.testing import CliRunner

from galleryrank.consumer.cli.main import cli
from galleryrank.consumer.stream.events import (
    GalleryPinned,
    GalleryUnpinned,
    ImageHidden,
    ImageUnhidden,
    parse_event,
)


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def events_of(output: str) -> list:
    out = []
    for line in output.splitlines():
        if line.startswith("{"):
            body = orjson.loads(line)
            out.append(parse_event(body["hotel_id"].encode(), line.encode()))
    return out


@pytest.mark.parametrize(
    "args, expected",
    [
        (["pin", "h-1", "img-3", "img-1"], [GalleryPinned(None, "h-1", ("img-3", "img-1"), None)]),
        (["unpin", "h-1"], [GalleryUnpinned(None, "h-1", (), None)]),
        (["unpin", "h-1", "img-3"], [GalleryUnpinned(None, "h-1", ("img-3",), None)]),
        (
            ["hide", "h-1", "img-2", "img-5"],
            [ImageHidden(None, "h-1", "img-2", None), ImageHidden(None, "h-1", "img-5", None)],
        ),
        (["unhide", "h-1", "img-2"], [ImageUnhidden(None, "h-1", "img-2", None)]),
    ],
)
def test_commands_print_the_events_the_consumer_parses(args, expected):
    result = run(*args, "--dry-run")
    assert result.exit_code == 0, result.output
    got = events_of(result.output)
    assert [type(e) for e in got] == [type(e) for e in expected]
    for event, want in zip(got, expected):
        # event ids are fresh uuids and occurred_at is now: compare the rest
        assert event.event_id and event.occurred_at and event.occurred_at.endswith("Z")
        assert replace(event, event_id=None, occurred_at=None) == want
    assert len({e.event_id for e in got}) == len(got)


@pytest.mark.parametrize(
    "args, reason",
    [
        (["pin", "h 1", "img-1"], "invalid_hotel_id"),
        (["pin", "h-1", "img-1", "img-1"], "invalid_image_ids"),
        (["hide", "h-1", "img{1}"], "invalid_image_id"),
    ],
)
def test_what_the_consumer_would_dead_letter_is_refused_before_publishing(args, reason):
    # No broker is reachable at the default address here: a refusal must come first.
    result = run(*args, "--bootstrap-servers", "127.0.0.1:1")
    assert result.exit_code == 2
    assert reason in result.output


def test_pin_needs_an_image_and_help_lists_the_commands():
    assert run("pin", "h-1").exit_code == 2
    listing = run("--help").output
    for name in ("pin", "unpin", "hide", "unhide"):
        assert f"  {name} " in listing


def test_editor_commands_do_not_load_the_model_stack():
    code = (
        "import sys\n"
        "from galleryrank.consumer.cli.main import cli\n"
        "try:\n"
        "    cli(['pin', 'h-1', 'img-1', '--dry-run'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'timm') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
