"""Where a publish run is: the rows Kafka acknowledged, written atomically after the acks.

`rows_done` = every row up to it is acknowledged by the broker (acks=all) or in the rejects
file. A resume starts after it; rows acknowledged after the last checkpoint are sent again,
with the same event_ids, which the consumer absorbs (catalogue/rows.py). The catalogue's
files (names, sizes, modification times) and the topic are recorded: resuming with another
catalogue or topic is refused rather than silently skipping rows of it.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

from .sources import SourceFile

VERSION = 1


class CheckpointError(ValueError):
    pass


def fingerprint(files: list[SourceFile]) -> list[list[object]]:
    return [[f.name, f.size, int(os.stat(f.path).st_mtime)] for f in files]


@dataclass
class Checkpoint:
    topic: str
    files: list[list[object]]
    rows_done: int = 0
    sent: int = 0
    rejected: int = 0
    file_rows: dict[str, int] = field(default_factory=dict)  # row counts of files read to the end
    complete: bool = False
    version: int = VERSION


def load(path: Path) -> Checkpoint | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        data = orjson.loads(raw)
        return Checkpoint(**data)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a publish checkpoint ({exc})") from None


def check_matches(cp: Checkpoint, topic: str, files: list[SourceFile], path: Path) -> None:
    if cp.topic != topic:
        raise CheckpointError(f"{path} is a run to topic {cp.topic!r}, not {topic!r}")
    if cp.files != fingerprint(files):
        raise CheckpointError(
            f"{path} belongs to another catalogue (files, sizes or times differ); "
            "publish without --resume to start over (re-sent rows are harmless)"
        )


def save(path: Path, cp: Checkpoint) -> None:
    """Atomic: a crash leaves the previous checkpoint or this one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(orjson.dumps(asdict(cp), option=orjson.OPT_INDENT_2))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
