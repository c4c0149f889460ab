"""The dependency rules of docs/architecture.md, checked on the source.

Every import (module level and inside functions) of every module is resolved
to its absolute name and checked against the rules below, so a layering
mistake fails here rather than in a reviewer's head.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"consumer": "galleryrank.consumer", "models": "galleryrank.models", "ranking": "galleryrank.ranking"}
C = "galleryrank.consumer"

# (module prefix, forbidden import prefixes, why)
RULES = [
    (
        "galleryrank.ranking",
        ("galleryrank.consumer", "galleryrank.models"),
        "ranking is pure ordering: no I/O, no model",
    ),
    ("galleryrank.models", ("galleryrank.consumer",), "the model tool-chain works without the service"),
    (
        f"{C}.images",
        (f"{C}.stream", f"{C}.state", f"{C}.bluegreen", f"{C}.api", f"{C}.cli", f"{C}.dev"),
        "untrusted URL -> pixels knows nothing of Kafka or Redis",
    ),
    (
        f"{C}.state",
        (f"{C}.stream", f"{C}.bluegreen", f"{C}.api", f"{C}.cli", f"{C}.dev"),
        "the Redis layout does not depend on how events arrive",
    ),
    (
        f"{C}.stream",
        (f"{C}.bluegreen", f"{C}.api", f"{C}.cli", f"{C}.dev"),
        "the data path does not know its operators",
    ),
    (
        f"{C}.bluegreen",
        (f"{C}.api", f"{C}.cli", f"{C}.dev"),
        "hand-over and replay are used by the CLI, not the reverse",
    ),
    (
        f"{C}.api",
        (f"{C}.stream", f"{C}.bluegreen", f"{C}.cli", f"{C}.dev"),
        "the read API reads state; its review API publishes events (stream.events, stream.kafka only)",
    ),
    # dev/ (demo, embedded services) is mounted by the CLI and used by tests; the service never needs it.
    (C, (f"{C}.dev",), "production code never imports the demo/embedded services"),
]
ALLOWED_DEV_IMPORTERS = (f"{C}.cli", f"{C}.dev")
# The review API (api/review.py) publishes events: it uses their schema and the producer factory.
ALLOWED_CROSSINGS = {f"{C}.api": (f"{C}.stream.events", f"{C}.stream.kafka")}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    parts[0] = FOLDERS[parts[0]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)  # `from . import keys` imports a module
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "import_module" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and not arg.value.startswith("."):
                found.add(arg.value)
    return {name for name in found if name.startswith("galleryrank")}


def source_files() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("rule", RULES, ids=[r[0] for r in RULES])
def test_dependency_rule(rule) -> None:
    owner, forbidden, why = rule
    broken = []
    for path in source_files():
        mod = module_name(path)
        if not _under(mod, owner):
            continue
        if owner == C and any(_under(mod, p) for p in ALLOWED_DEV_IMPORTERS):
            continue
        for name in imports_of(path):
            if any(_under(name, a) for a in ALLOWED_CROSSINGS.get(owner, ())):
                continue
            if any(_under(name, f) for f in forbidden) and not _under(name, owner if owner != C else "\0"):
                broken.append(f"{mod} imports {name}")
    assert not broken, f"{why}:\n" + "\n".join(broken)


def test_no_import_cycles_between_modules() -> None:
    graph = {module_name(p): imports_of(p) for p in source_files()}
    modules = set(graph)
    edges = {m: {n for n in deps if n in modules and n != m and not m.startswith(n + ".")} for m, deps in graph.items()}
    # Packages' __init__ re-exports are not cycles of substance; look at leaf modules only.
    leaves = {m for m in modules if not any(o.startswith(m + ".") for o in modules)}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node] & leaves):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for m in sorted(leaves):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_nothing_points_outside_the_repository() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    # (The measuring photos at ../shared/data/houses-dev are read when present, with a skip when absent:
    # an optional input, not a reference.)
    # Spelled in pieces so that this file does not match itself (nor a reviewer's grep).
    needles = ("/" + "work" + "/", "shared/" + "design.md", "shared/" + "anchors.md")
    offenders = []
    for name in tracked:
        path = ROOT / name
        if path.suffix in {".pt", ".png", ".jpg", ".onnx", ".npz", ".whl"} or not path.is_file():
            continue
        text = path.read_text(errors="ignore")
        offenders += [f"{name}: {n}" for n in needles if n in text]
    assert not offenders, "files that point outside the repository:\n" + "\n".join(offenders)
