"""The baseline of the benchmarks: an older commit, checked out from git and run in its own process.

A benchmark that compares "old" with "new" runs the old design as it was, not
a copy of it kept in bench/ (a copy drifts, imports live code and keeps old
APIs alive). ``pythonpath()`` makes a git worktree of ``BASELINE_COMMIT`` once
(under ``$GALLERYRANK_BENCH_CACHE``, default ``~/.cache/galleryrank-bench``)
and maps it into a ``galleryrank`` package the way pyproject.toml maps this
tree (consumer/, models/, ranking/ below galleryrank/). ``child_command`` and
``child_env`` start a bench module in a child process against either tree:

- ``side="new"``: this checkout (the installed editable package);
- ``side="old"``: the worktree first on PYTHONPATH, with ``python -P`` so
  neither the current directory nor this checkout's ``galleryrank/`` folder
  shadows it. The harness (``bench.*``) is this checkout's; only the code
  under test is the old one. The third-party libraries are the venv's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# issue 12 and issue 17 measured their designs against this commit: the package split, before either.
BASELINE_COMMIT = "dccda32"
REPO = Path(__file__).resolve().parent.parent
SIDES = ("old", "new")
# pyproject.toml's [tool.setuptools.package-dir]: the rooms that live outside galleryrank/.
_ROOMS = ("consumer", "models", "ranking")


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


def pythonpath(commit: str = BASELINE_COMMIT) -> Path:
    """A folder that, first on PYTHONPATH, makes ``import galleryrank`` the package of ``commit``."""
    sha = _git("rev-parse", "--verify", f"{commit}^{{commit}}")
    cache = Path(os.environ.get("GALLERYRANK_BENCH_CACHE", Path.home() / ".cache" / "galleryrank-bench"))
    root = cache / sha[:12]
    tree, path = root / "tree", root / "pythonpath"
    package = path / "galleryrank"
    if package.is_dir():
        return path
    root.mkdir(parents=True, exist_ok=True)
    if not (tree / ".git").exists():
        _git("worktree", "prune")
        _git("worktree", "add", "--detach", str(tree), sha)
    staging = path.with_name("pythonpath.partial")
    (staging / "galleryrank").mkdir(parents=True, exist_ok=True)
    for entry in (tree / "galleryrank").iterdir():
        link = staging / "galleryrank" / entry.name
        if not link.exists():
            link.symlink_to(entry)
    for room in _ROOMS:
        link = staging / "galleryrank" / room
        if not link.exists():
            link.symlink_to(tree / room)
    staging.rename(path)  # complete or absent: a half-made folder is never used
    return path


def child_env(side: str, commit: str = BASELINE_COMMIT) -> dict[str, str]:
    """The environment of a child that runs ``bench.*`` against ``side``'s galleryrank."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, not {side!r}")
    env = dict(os.environ)
    first = [str(pythonpath(commit))] if side == "old" else []
    env["PYTHONPATH"] = os.pathsep.join([*first, str(REPO)])
    return env


def child_command(module: str, *args: str) -> list[str]:
    """``python -P -m module args``: -P keeps the working directory off sys.path (PYTHONPATH decides)."""
    return [sys.executable, "-P", "-m", module, *args]


def describe(side: str, commit: str = BASELINE_COMMIT) -> str:
    """The label of a side in a table: the baseline names its commit."""
    return f"old ({commit})" if side == "old" else "new"
