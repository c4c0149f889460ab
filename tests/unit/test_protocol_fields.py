"""Fields parsed from outside input: HTTP Retry-After and ids. ASCII / full-string / no format characters."""

from __future__ import annotations

import pytest

from galleryrank.consumer.ids import valid_id
from galleryrank.consumer.images.download import parse_retry_after
from galleryrank.consumer.state.namespace import NAMESPACE_RE


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        (" 120 ", 120.0),
        ("²", None),  # str.isdigit() is True for it; float() is not
        ("٣", None),  # Arabic-Indic three: isdigit() and int() both accept it
        ("-1", None),
        ("1e9", None),
        ("9" * 12, None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),  # in the past
        ("Mon, 99 Foo 2026", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_ascii_seconds_or_an_http_date(value, expected):
    assert parse_retry_after(value) == expected


def test_retry_after_http_date_in_the_future_is_seconds_from_now():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0) == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("h-1", True),
        ("hx-hôtel-東京", True),
        ('img:"q"\\b\'', True),
        ("h-1\n", False),  # `$` matches before a trailing newline; fullmatch does not
        ("h\u200b1", False),  # zero-width space
        ("h\u202e1", False),  # right-to-left override
        ("h\u2066x", False),  # left-to-right isolate
        ("\ufeffh", False),  # BOM
        ("ho\u0302tel", False),  # NFD
        ("h\u00a0", False),  # no-break space
        ("h\ue000", False),  # private use
        ("x" * 129, False),
        ("{h}", False),
        ("", False),
    ],
)
def test_ids_are_checked_whole_and_without_control_or_format_characters(value, ok):
    assert valid_id(value) is ok


def test_namespace_rule_is_a_full_match():
    assert NAMESPACE_RE.fullmatch("live") and NAMESPACE_RE.fullmatch("replay-2026.11_30")
    assert not NAMESPACE_RE.fullmatch("live\n") and not NAMESPACE_RE.fullmatch("live:*")
