"""bench/: baselines come from git (bench/baseline.py), and one import style (absolute) throughout."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

from bench import baseline

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _child_imports(side: str) -> str:
    code = "import galleryrank.consumer.state.store as s, bench.baseline; print(s.__file__)"
    cmd = [*baseline.child_command("x")[:2], "-c", code]  # python -P -c
    out = subprocess.run(cmd, env=baseline.child_env(side), capture_output=True, text=True, check=True, cwd=BENCH)
    return out.stdout.strip()


def test_the_old_side_imports_the_baseline_commit_from_a_worktree_and_the_new_side_this_tree():
    try:
        root = baseline.pythonpath()
    except subprocess.CalledProcessError as exc:  # a shallow clone has no dccda32
        pytest.skip(f"baseline commit not in this clone: {exc.stderr}")
    old, new = _child_imports("old"), _child_imports("new")
    assert Path(old).resolve().is_relative_to(root.parent / "tree"), old
    assert Path(new).resolve() == (BENCH.parent / "consumer" / "state" / "store.py").resolve()
    # The old tree is the commit's own code: its store has no in-memory hotel cache (issue 12 added it).
    assert "HotelState" not in Path(old).read_text()


def test_no_frozen_copies_of_old_code_in_bench():
    assert not [p.name for p in BENCH.glob("*.py") if p.name.startswith(("baseline_", "legacy_"))]


def test_bench_imports_are_absolute_and_never_patch_sys_path():
    for path in BENCH.glob("*.py"):
        tree = ast.parse(path.read_text())
        relative = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0]
        assert not relative, f"{path.name}: relative imports at lines {relative}"
        inserts = [
            n.lineno
            for n in ast.walk(tree)
            if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and n.func.attr in ("insert", "append")
            and ast.unparse(n.func.value) == "sys.path"
        ]
        assert not inserts, f"{path.name}: sys.path changed at lines {inserts}"
