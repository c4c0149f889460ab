"""The wheel installs one top-level package, `galleryrank`, with every room inside it.

Three top-level names (consumer, models, ranking) collided with PyPI distributions
of those names; pyproject.toml now maps the repository's folders into
`galleryrank.*`. This builds the real wheel and reads what it would install.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("consumer", "models", "ranking")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (path,) = out.glob("galleryrank-*.whl")
    return zipfile.ZipFile(path)


def test_only_top_level_package_is_galleryrank(wheel: zipfile.ZipFile) -> None:
    tops = {name.split("/")[0] for name in wheel.namelist() if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"galleryrank"}
    top_level = next(n for n in wheel.namelist() if n.endswith(".dist-info/top_level.txt"))
    assert wheel.read(top_level).decode().split() == ["galleryrank"]


def test_every_source_package_and_data_file_is_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    expected = set()
    for room in ROOMS:
        for path in (ROOT / room).rglob("*"):
            if "__pycache__" in path.parts or not path.is_file() or path.suffix == ".pyc":
                continue
            expected.add("galleryrank/" + path.relative_to(ROOT).as_posix())
    missing = sorted(expected - names)
    assert not missing, f"not packaged (add the package to [tool.setuptools] packages or package-data): {missing}"


def test_console_script_points_into_the_package(wheel: zipfile.ZipFile) -> None:
    entry_points = next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    assert "galleryrank = galleryrank.consumer.cli:main" in wheel.read(entry_points).decode()
