"""Catalogue files -> rows, streamed: CSV, JSON Lines and Parquet, a file or a directory of parts.

Memory stays flat whatever the size: text formats are read line by line, Parquet one record
batch at a time (only the mapped columns). Rows are numbered from 1 across all the files in
name order, so a row number and a checkpoint mean the same thing on every run.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

FORMATS = ("csv", "jsonl", "parquet")
_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
}
PARQUET_BATCH_ROWS = 8192
# A CSV field longer than this is an error, not a reason to hold the file in memory.
csv.field_size_limit(1 << 20)


class CatalogueError(ValueError):
    """The catalogue cannot be read at all (no files, unknown format, missing columns)."""


@dataclass(frozen=True)
class SourceFile:
    path: Path
    format: str
    size: int

    @property
    def name(self) -> str:
        return str(self.path)


@dataclass
class Row:
    number: int  # 1-based across the whole catalogue
    file: str
    file_row: int  # 1-based within its file (data rows, the header not counted)
    values: dict[str, Any] | None  # None: the line could not be parsed
    error: str = ""  # why values is None


def _format_of(path: Path, forced: str | None) -> str | None:
    if forced:
        return forced
    suffixes = [s.lower() for s in path.suffixes]
    for s in reversed(suffixes):  # part-0001.csv.gz is not supported; .csv, .parquet are
        if s in _SUFFIXES:
            return _SUFFIXES[s]
    return None


def find_files(paths: Sequence[str | os.PathLike[str]], forced_format: str | None = None) -> list[SourceFile]:
    """The files of a catalogue: each path a file, or a directory whose part files are taken in name order."""
    found: list[SourceFile] = []
    for given in paths:
        p = Path(given)
        if p.is_dir():
            parts = sorted(c for c in p.rglob("*") if c.is_file() and not c.name.startswith(("_", ".")))
            parts = [c for c in parts if _format_of(c, forced_format)]
            if not parts:
                raise CatalogueError(f"{p}: no .csv, .jsonl or .parquet part files")
        elif p.is_file():
            parts = [p]
        else:
            raise CatalogueError(f"{p}: no such file or directory")
        for part in parts:
            fmt = _format_of(part, forced_format)
            if fmt is None:
                raise CatalogueError(f"{part}: unknown format (use --format csv|jsonl|parquet)")
            found.append(SourceFile(part, fmt, part.stat().st_size))
    return found


class _CountingReader(io.RawIOBase):
    """A binary file that counts the bytes read from it (the progress bar of a text catalogue)."""

    def __init__(self, raw: BinaryIO, progress: list[int]):
        self.raw, self.progress = raw, progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        self.progress[0] += n or 0
        return n or 0


def read_rows(
    files: Sequence[SourceFile],
    columns: Sequence[str],
    skip_rows: int = 0,
    progress: list[int] | None = None,
    file_rows: dict[str, int] | None = None,
) -> Iterator[Row]:
    """Every row of `files` after the first `skip_rows`.

    `progress[0]` counts work done (bytes of text files, rows of Parquet ones) for a progress
    bar; `file_rows` (file -> its row count) is filled as files end, and, given by a checkpoint,
    lets a resume skip whole files unread (Parquet row groups are skipped by their footer).
    """
    progress = progress if progress is not None else [0]
    counts = file_rows if file_rows is not None else {}
    base = 0  # rows in the files before this one
    for f in files:
        known = counts.get(f.name)
        if f.format == "parquet" and known is None:
            known = counts[f.name] = _parquet_count(f)
        if known is not None and base + known <= skip_rows:
            base += known
            progress[0] += known if f.format == "parquet" else f.size
            continue
        last = 0
        if f.format == "parquet":
            rows = _parquet_rows(f, columns, skip_rows - base, progress)
        else:
            rows = _text_rows(f, progress)
        for file_row, values, error in rows:
            last = file_row
            if base + file_row > skip_rows:
                yield Row(base + file_row, f.name, file_row, values, error)
        if f.format != "parquet":
            counts[f.name] = last
        base += counts[f.name]


def _parquet_count(f: SourceFile) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(f.path).metadata.num_rows)


def parquet_rows_total(files: Sequence[SourceFile]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f.path).metadata.num_rows for f in files if f.format == "parquet")


def _text_rows(f: SourceFile, progress: list[int]) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    with open(f.path, "rb") as raw:
        text = io.TextIOWrapper(io.BufferedReader(_CountingReader(raw, progress)), encoding="utf-8", newline="")
        if f.format == "csv":
            delimiter = "\t" if f.path.suffix.lower() == ".tsv" else ","
            reader = csv.DictReader(text, delimiter=delimiter, strict=True)
            n = 0
            while True:
                try:
                    values = next(reader)
                except StopIteration:
                    return
                except (csv.Error, UnicodeDecodeError) as exc:
                    n += 1
                    yield n, None, f"csv: {exc}"
                    continue
                n += 1
                if None in values:  # more fields than the header names
                    yield n, None, f"{len(values) - 1 + len(values[None])} fields, the header has {len(values) - 1}"
                    continue
                yield n, values, ""
        else:
            n = 0
            while True:
                try:
                    line = text.readline()
                except UnicodeDecodeError as exc:
                    n += 1
                    yield n, None, f"not UTF-8: {exc}"
                    return  # the decoder's position is lost: the rest of the file cannot be trusted
                if not line:
                    return
                if not line.strip():
                    continue
                n += 1
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    yield n, None, f"invalid JSON: {str(exc)[:120]}"
                    continue
                if not isinstance(obj, dict):
                    yield n, None, f"a JSON object per line expected, got {type(obj).__name__}"
                    continue
                yield n, obj, ""


def _parquet_rows(
    f: SourceFile, columns: Sequence[str], skip: int, progress: list[int]
) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(f.path)
    names = set(pf.schema_arrow.names)
    wanted = [c for c in columns if c in names]
    n = 0
    groups: list[int] = []  # row groups wholly before the resume point are not read
    for g in range(pf.metadata.num_row_groups):
        rows_in = pf.metadata.row_group(g).num_rows
        if not groups and n + rows_in <= skip:
            n += rows_in
            progress[0] += rows_in
        else:
            groups.append(g)
    if not groups:
        return
    for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=groups, columns=wanted):
        for values in batch.to_pylist():
            n += 1
            yield n, values, ""
        progress[0] += batch.num_rows


def check_columns(files: Sequence[SourceFile], required: Sequence[str]) -> None:
    """Refuse at once a catalogue whose header (CSV) or schema (Parquet) lacks a mapped column:
    otherwise every one of its rows would be a reject. JSON Lines has no header: checked per row."""
    for f in files:
        if f.format == "parquet":
            import pyarrow.parquet as pq

            names = list(pq.ParquetFile(f.path).schema_arrow.names)
        elif f.format == "csv":
            with open(f.path, encoding="utf-8", newline="") as text:
                delimiter = "\t" if f.path.suffix.lower() == ".tsv" else ","
                names = next(csv.reader(text, delimiter=delimiter), [])
        else:
            continue
        missing = [c for c in required if c not in names]
        if missing:
            raise CatalogueError(
                f"{f.path}: no column {', '.join(missing)} (it has {', '.join(names[:20]) or 'none'}); "
                "map them with --hotel-column / --image-column / --url-column"
            )
