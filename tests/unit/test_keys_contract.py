"""Redis key names have one owner, consumer/state/keys.py, and the docs name only keys it makes."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from galleryrank.consumer.state import keys

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Backticked names that start like a key but are not Redis keys: the container image's tag
# (galleryrank:0.2.0) and Prometheus recording rules (galleryrank:consumer_lag:sum).
NOT_KEYS = re.compile(r"galleryrank:(\d+\.\d+|[a-z_]+:(sum|max|rate)\b)")
PLACEHOLDER = re.compile(r"<[^<>]+>")
WILDCARD = re.compile(r"(\.\.\.|…|\*)$")


def produced() -> list[str]:
    """Every key keys.py makes: its constants, and each ``*_key``/``*_pattern(s)`` function called
    with ``<param>`` placeholders."""
    out = [v for k, v in vars(keys).items() if k.isupper() and isinstance(v, str) and v.startswith("galleryrank:")]
    for name, fn in vars(keys).items():
        if inspect.isfunction(fn) and name.endswith(("_key", "_pattern", "_patterns")):
            params = inspect.signature(fn).parameters
            value = fn(*(f"<{p}>" for p in params))
            out += [value] if isinstance(value, str) else list(value)
    return [k for k in out if k.startswith("galleryrank:")]


def documented() -> dict[str, str]:
    """Backticked ``galleryrank:...`` names in the docs -> the file naming them."""
    found = {}
    for doc in DOCS:
        for span in re.findall(r"`([^`\n]+)`", doc.read_text()):
            key = span.startswith("galleryrank:") and span != "galleryrank:"  # not the bare prefix
            if key and " " not in span and not NOT_KEYS.match(span):
                found[span] = doc.name
    return found


def _regex(key: str) -> re.Pattern[str]:
    parts = PLACEHOLDER.split(key)
    return re.compile("[^:{}]+".join(re.escape(p) for p in parts))


def test_every_key_the_docs_name_is_made_by_keys_py():
    made = produced()
    patterns = [_regex(k) for k in made]
    samples = [PLACEHOLDER.sub("x", k) for k in made]
    assert documented(), "no key found in the docs: the scan is broken"
    wrong = []
    for name, doc in documented().items():
        sample = PLACEHOLDER.sub("x", name)
        if WILDCARD.search(sample):  # a family of keys: some key keys.py makes starts so
            prefix = WILDCARD.sub("", sample)
            ok = any(s.startswith(prefix) for s in samples)
        else:
            ok = any(p.fullmatch(sample) for p in patterns)
        if not ok:
            wrong.append(f"{doc}: `{name}`")
    assert not wrong, "keys named in the docs that consumer/state/keys.py does not make:\n" + "\n".join(wrong)


def test_no_module_but_keys_py_formats_a_galleryrank_key():
    key_like = re.compile(r"^galleryrank:\S")
    offenders = []
    for path in sorted((REPO / "consumer").rglob("*.py")):
        if path == REPO / "consumer" / "state" / "keys.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            text = None
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
                text = str(node.values[0].value)
            if text is not None and key_like.match(text):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {text[:60]!r}")
    assert not offenders, "format galleryrank: keys in consumer/state/keys.py:\n" + "\n".join(offenders)


def test_the_declared_numpy_has_bitwise_count():
    """ranking, state and models call np.bitwise_count (numpy >= 2.0): the declared floor must have it."""
    text = (REPO / "pyproject.toml").read_text()
    floor = re.search(r'"numpy>=(\d+)\.(\d+)', text)
    assert floor and (int(floor.group(1)), int(floor.group(2))) >= (2, 0), floor
