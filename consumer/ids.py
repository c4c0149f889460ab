"""The one check of hotel, image and event ids, wherever an id comes in (events, read API).

Ids end up inside Redis keys and in JSON the website reads: 1-128 printable
characters, no whitespace, no braces (they would break the `{hotel_id}` Redis
Cluster hash tag), matched against the WHOLE string (``fullmatch``: a ``$``
would accept "h-1\\n"). Refused too: every Unicode control (Cc) and format (Cf)
character (zero-width U+200B-U+200D, bidi overrides U+202A-U+202E and
U+2066-U+2069, BOM), surrogates, private-use and unassigned code points, and
every separator; with them two hotels could look identical, or an id could
reorder a log line. An id must be in Unicode NFC form, so one visible id has
one spelling: an NFD "hôtel" is refused, not normalised, because the
producer's Kafka key and the stored key must be the same bytes.

At most ``MAX_ID_BYTES`` UTF-8 bytes as well: the binary image record
(state/records.py) keeps an event id behind one length byte, so the largest id
is 128 one-byte characters, 127 two-byte, 85 three-byte or 63 four-byte ones.
"""

from __future__ import annotations

import re
import unicodedata

MAX_ID_CHARS = 128
MAX_ID_BYTES = 255  # the record layout's one-byte length (state/records.py `_short`)
_ID_RE = re.compile(rf"[^\s{{}}\x00-\x1f\x7f]{{1,{MAX_ID_CHARS}}}")
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
ID_RULE = (
    f"1-{MAX_ID_CHARS} printable NFC characters (at most {MAX_ID_BYTES} UTF-8 bytes) without whitespace,"
    " braces, control or format characters"
)


def valid_id(value: str) -> bool:
    return (
        _ID_RE.fullmatch(value) is not None
        and len(value.encode("utf-8", "surrogatepass")) <= MAX_ID_BYTES
        and not any(unicodedata.category(c) in _REFUSED_CATEGORIES for c in value)
        and unicodedata.is_normalized("NFC", value)
    )
