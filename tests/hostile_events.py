"""A corpus of hostile, broken and odd *events*, each with its expected outcome
through the real consumer: ``SCORED`` (the image is in its hotel's gallery),
``DELETED`` (a tombstone), or the DLQ ``reason`` header it must carry.

Three layers:

* the record itself: not JSON, binary garbage, huge, deeply nested, wrong
  types, missing fields, unknown types, wrong keys, ids with control or
  Redis-special characters;
* the URL and the server behind it: bad schemes, credentials, private and
  metadata addresses (also via redirects), 404/500, hangs, slow drip, endless
  body, lying ``Content-Length``, not HTTP at all;
* the image bytes: every case of ``tests.hostile_images.corpus()`` (truncated,
  bombs, CMYK, 16-bit, animated, WebP, EXIF-rotated, grayscale, ...), served
  with its own ``Content-Type``.

    events = hostile_events(image_base="http://127.0.0.1:P", raw_base="http://127.0.0.1:Q")

``image_base`` must serve ``/img/<case name>`` (the image corpus),
``/status/<code>`` and ``/redirect-to?target=<url>``; ``raw_base`` is the
misbehaving socket server of ``tests/integration/test_download.py``
(``/hang``, ``/drip``, ``/endless``, ``/lying-short``, ``/lying-long``,
``/garbage``, ``/endless-headers``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import orjson

from tests.hostile_images import ImageCase, corpus

SCORED = "scored"
DELETED = "deleted"

# Secrets planted in events; they must never show up in logs or DLQ headers.
URL_PASSWORD = "Url-Pw-7f3a9c"


@dataclass(frozen=True)
class HostileEvent:
    name: str
    key: bytes | None
    value: bytes | None
    expect: str  # SCORED, DELETED or a DLQ reason
    note: str
    hotel_id: str | None = None  # where a SCORED image must show up
    image_id: str | None = None
    image: ImageCase | None = None  # the bytes behind a SCORED URL
    also: tuple[str, ...] = ()  # other acceptable outcomes, where the race is the client library's

    def accepts(self, outcome: str) -> bool:
        return outcome == self.expect or outcome in self.also


def _event(
    n: int,
    hotel_id: object = None,
    image_id: object = "img",
    url: object = None,
    type_: object = "image.upserted",
    drop: tuple[str, ...] = (),
    **extra: object,
) -> dict:
    body: dict[str, object] = {
        "event_id": f"hx-event-{n}",
        "type": type_,
        "hotel_id": hotel_id if hotel_id is not None else f"hx-{n}",
        "image_id": image_id,
    }
    if url is not None:
        body["url"] = url
    body.update(extra)
    for name in drop:
        body.pop(name, None)
    return body


def _record(
    name: str,
    n: int,
    body: dict,
    expect: str,
    note: str,
    key: bytes | None | str = "hotel",
    image: ImageCase | None = None,
) -> HostileEvent:
    hotel = body.get("hotel_id")
    if key == "hotel":
        key = hotel.encode() if isinstance(hotel, str) else f"hx-{n}".encode()
    image_id = body.get("image_id") if isinstance(body.get("image_id"), str) else None
    return HostileEvent(
        name, key, orjson.dumps(body), expect, note, hotel if isinstance(hotel, str) else None, image_id, image
    )


def download_outcome(case: ImageCase) -> str:
    """What the downloader + decoder make of an image-corpus case served with its own Content-Type."""
    ctype = case.content_type
    if ctype == "image/svg+xml" or not (ctype.startswith("image/") or ctype == "application/octet-stream"):
        return "not_image_content_type"  # refused from the headers, the body is never read
    if not case.data:
        return "empty_body"
    return SCORED if case.expect == "ok" else case.expect


def hostile_events(image_base: str, raw_base: str) -> list[HostileEvent]:
    rng = random.Random(1234)
    img = f"{image_base}/img/jpeg_rgb"
    port = image_base.rsplit(":", 1)[1]
    out: list[HostileEvent] = []

    def raw(name: str, key: bytes | None, value: bytes | None, expect: str, note: str) -> None:
        out.append(HostileEvent(name, key, value, expect, note))

    def ev(name: str, expect: str, note: str, key: bytes | None | str = "hotel", **fields: object) -> None:
        n = len(out)
        fields.setdefault("url", img)
        out.append(_record(name, n, _event(n, **fields), expect, note, key))

    # --- the record itself ----------------------------------------------------------------
    raw("not_json", b"hx-0", b"{not json", "invalid_json", "broken JSON")
    raw("binary_garbage", b"hx-1", bytes(rng.randrange(256) for _ in range(512)), "invalid_json", "512 random bytes")
    raw("empty_value", b"hx-2", b"", "invalid_json", "zero-byte value")
    raw("null_value", b"hx-3", None, "empty_value", "a Kafka tombstone (no value at all)")
    raw(
        "huge_value",
        b"hx-4",
        orjson.dumps(_event(4, url=img, pad="x" * 200_000)),
        "event_too_large",
        "200 KB event (limit 64 KiB)",
    )
    raw(
        "deep_nesting",
        b"hx-5",
        b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}",
        "invalid_json",
        "5,000 nested arrays (orjson stops at depth 1,024, no recursion blow-up)",
    )
    raw(
        "huge_integer",
        b"hx-6",
        b'{"event_id":"e","image_id":' + b"9" * 400 + b"}",
        "invalid_json",
        "a 400-digit integer",
    )
    raw("json_array", b"hx-7", b"[1, 2, 3]", "not_an_object", "a JSON array")
    raw("json_string", b"hx-8", b'"image.upserted"', "not_an_object", "a JSON string")
    raw("invalid_utf8", b"hx-9", b'{"event_id": "\xff\xfe"}', "invalid_json", "invalid UTF-8 inside JSON")
    ev("missing_event_id", "missing_field", "no event_id", drop=("event_id",))
    ev("missing_image_id", "missing_field", "no image_id", drop=("image_id",))
    ev("missing_type", "missing_field", "no type", drop=("type",))
    ev("upsert_without_url", "missing_field", "image.upserted needs a url", url=None, drop=("url",))
    ev("image_id_is_int", "wrong_type", "image_id 7", image_id=7)
    ev("hotel_id_is_list", "wrong_type", "hotel_id [..]", hotel_id=["a", "b"], key=b"hx-list")
    ev("url_is_object", "wrong_type", "url {..}", url={"href": img})
    ev("occurred_at_is_number", "wrong_type", "occurred_at 1700000000", occurred_at=1_700_000_000)
    ev("unknown_type", "unknown_type", "type image.exploded", type_="image.exploded")
    ev("type_is_number", "unknown_type", "type 42", type_=42)
    ev(
        "key_is_other_hotel",
        "key_mismatch",
        "Kafka key of another hotel (would break per-hotel order)",
        key=b"someone-else",
    )
    ev("no_key", "key_mismatch", "record without key", key=None)
    # --- ids: control characters and Redis-special characters -------------------------
    ev("hotel_id_newline", "invalid_hotel_id", "log/keys injection with a newline", hotel_id="hx-a\nb")
    ev("hotel_id_nul", "invalid_hotel_id", "NUL byte", hotel_id="hx-\x00")
    ev(
        "hotel_id_braces",
        "invalid_hotel_id",
        "braces would break the {hotel_id} Cluster hash tag",
        hotel_id="hx-{other}",
    )
    ev("hotel_id_space", "invalid_hotel_id", "whitespace", hotel_id="hx a")
    ev("event_id_ansi_escape", "invalid_event_id", "terminal escape sequence in a log field", event_id="\x1b[31mred")
    ev("image_id_too_long", "invalid_image_id", "500-character image id (limit 128)", image_id="i" * 500)
    # Issue 13: a `$` regex matched before a trailing newline; Cf/Cc characters made look-alike ids.
    ev("hotel_id_trailing_newline", "invalid_hotel_id", "'h-1\\n': full-string match, not `$`", hotel_id="hx-tn\n")
    ev("hotel_id_zero_width_space", "invalid_hotel_id", "U+200B: looks like another hotel", hotel_id="hx-\u200bzw")
    ev("hotel_id_bidi_override", "invalid_hotel_id", "U+202E right-to-left override", hotel_id="hx-\u202ebidi")
    ev("image_id_bom", "invalid_image_id", "U+FEFF byte order mark inside an id", image_id="img-\ufeff")
    ev("hotel_id_nfd", "invalid_hotel_id", "decomposed 'ho\\u0302tel': NFC only", hotel_id="hx-ho\u0302tel")
    ev("event_id_line_separator", "invalid_event_id", "U+2028 line separator", event_id="e-\u2028x")
    ev(
        "hotel_id_redis_glob",
        SCORED,
        "glob characters *?[] stay literal in keys and SCAN patterns",
        hotel_id="hx-*?[ab]",
    )
    ev("hotel_id_unicode", SCORED, "non-ASCII printable id", hotel_id="hx-hôtel-東京")
    ev(
        "image_id_quotes_backslash",
        SCORED,
        "quotes, backslash and colons survive JSON and Lua",
        image_id='img:"q"\\b\'',
    )
    ev(
        "delete_unknown_image",
        DELETED,
        "delete of an image never seen: a tombstone, no error",
        type_="image.deleted",
        url=None,
        drop=("url",),
    )
    # --- URLs -----------------------------------------------------------------------------------
    ev("url_file_scheme", "bad_scheme", "file:///etc/passwd", url="file:///etc/passwd")
    ev("url_gopher_scheme", "bad_scheme", "gopher:// to talk raw TCP to Redis", url="gopher://127.0.0.1:6379/_FLUSHALL")
    ev("url_ftp_scheme", "bad_scheme", "ftp://", url="ftp://127.0.0.1/a.jpg")
    ev("url_javascript_scheme", "bad_scheme", "javascript:", url="javascript:alert(1)")
    ev("url_scheme_relative", "bad_scheme", "//host/path without scheme", url=f"//127.0.0.1:{port}/img/jpeg_rgb")
    ev("url_too_long", "bad_url", "3,000-character URL (limit 2,048)", url="http://example.com/" + "a" * 3000)
    ev(
        "url_header_injection",
        "bad_url",
        "CR LF in the URL (request splitting)",
        url=f"{image_base}/img/jpeg_rgb\r\nX-Injected: 1",
    )
    ev(
        "url_with_credentials",
        "credentials_in_url",
        "user:password@ in the URL (never sent, never logged)",
        url=f"http://admin:{URL_PASSWORD}@127.0.0.1:{port}/img/jpeg_rgb",
    )
    ev(
        "url_cloud_metadata",
        "blocked_address",
        "169.254.169.254 (cloud metadata)",
        url="http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    )
    ev("url_private_10", "blocked_address", "RFC 1918 address", url="http://10.0.0.1/x.jpg")
    ev(
        "url_ipv6_loopback",
        "blocked_address",
        "[::1] (loopback outside the test allow-list)",
        url=f"http://[::1]:{port}/img/jpeg_rgb",
    )
    ev("url_link_local_v6", "blocked_address", "[fe80::1] link-local", url="http://[fe80::1]/x.jpg")
    ev(
        "redirect_to_metadata",
        "blocked_address",
        "an allowed server redirecting to the metadata address",
        url=f"{image_base}/redirect-to?target=http://169.254.169.254/latest/meta-data/",
    )
    ev("redirect_to_file", "bad_scheme", "redirect to file:", url=f"{image_base}/redirect-to?target=file:///etc/passwd")
    # --- servers behaving badly -------------------------------------------------------------
    ev("http_404", "http_404", "not found (no retry)", url=f"{image_base}/status/404")
    ev("http_403", "http_403", "forbidden (no retry)", url=f"{image_base}/status/403")
    ev("http_500", "http_500", "server error (retried, then DLQ)", url=f"{image_base}/status/500")
    ev(
        "retry_after_superscript",
        "http_503",
        "503 with 'Retry-After: \u00b2' (str.isdigit() says yes): ignored, retried, then DLQ - never internal_error",
        url=f"{image_base}/status/503?retry_after=%C2%B2",
    )
    ev(
        "retry_after_garbage_date",
        "http_503",
        "503 with an unparsable HTTP-date in Retry-After",
        url=f"{image_base}/status/503?retry_after=Mon%2C%2099%20Foo%202026",
    )
    ev("server_hangs", "timeout", "accepts, never answers", url=f"{raw_base}/hang")
    ev("slow_drip", "timeout", "one byte every 50 ms", url=f"{raw_base}/drip")
    ev("endless_body", "too_large", "an endless body is cut at download_max_bytes", url=f"{raw_base}/endless")
    ev("content_length_too_long", "incomplete_body", "declares 100,000 bytes, sends 100", url=f"{raw_base}/lying-long")
    ev(
        "content_length_too_short",
        "not_image",
        "declares 10 bytes, sends 5 MB: only 10 are read (or the "
        "response is malformed when the surplus arrives in the same read)",
        url=f"{raw_base}/lying-short",
    )
    out[-1] = replace(out[-1], also=("bad_response",))
    ev("not_http", "bad_response", "bytes that are not HTTP", url=f"{raw_base}/garbage")
    ev("endless_headers", "bad_response", "header lines forever", url=f"{raw_base}/endless-headers")
    # --- the image bytes -----------------------------------------------------------------------
    for case in corpus():
        n = len(out)
        body = _event(n, image_id=f"img-{case.name}", url=f"{image_base}/img/{case.name}")
        out.append(_record(f"image_{case.name}", n, body, download_outcome(case), case.note, image=case))

    names = [e.name for e in out]
    assert len(names) == len(set(names)), "case names must be unique"
    return out
