"""galleryrank publish's pure parts: reading catalogues, rows -> events, the checkpoint after acks."""

from __future__ import annotations

import asyncio
import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from galleryrank.consumer.catalogue import checkpoint as cp
from galleryrank.consumer.catalogue.publisher import PublishOptions, publish_catalogue
from galleryrank.consumer.catalogue.rows import Columns, Reject, catalogue_event_id, row_event
from galleryrank.consumer.catalogue.sources import CatalogueError, check_columns, find_files, read_rows
from galleryrank.consumer.settings import Settings
from galleryrank.consumer.stream.events import ImageUpserted, parse_event

ROWS = [
    {"hotel_id": "h1", "image_id": "a", "url": "http://img/a.jpg"},
    {"hotel_id": "h1", "image_id": "b", "url": "http://img/b.jpg"},
    {"hotel_id": "h 2", "image_id": "c", "url": "http://img/c.jpg"},  # whitespace in the id
    {"hotel_id": "h3", "image_id": "d", "url": "ftp://img/d.jpg"},  # not http(s)
    {"hotel_id": "h3", "image_id": "", "url": "http://img/e.jpg"},  # empty id
    {"hotel_id": "h4", "image_id": "f", "url": "http://img/f.jpg"},
]
GOOD = {1, 2, 6}
REASONS = {3: "invalid_hotel_id", 4: "bad_scheme", 5: "missing_field"}


def write_csv(path, rows, fields=("hotel_id", "image_id", "url")):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields))
        w.writeheader()
        w.writerows(rows)


def test_event_id_is_the_rows_content():
    a = catalogue_event_id("h1", "i1", "http://x/1.jpg")
    assert a == catalogue_event_id("h1", "i1", "http://x/1.jpg")
    assert a != catalogue_event_id("h1", "i1", "http://x/1-new.jpg")  # a changed URL is a new event
    assert a != catalogue_event_id("h1", "i2", "http://x/1.jpg")
    assert a != catalogue_event_id("h1i", "1", "http://x/1.jpg")  # fields are separated


def test_row_event_is_what_the_consumer_parses():
    event, key, value = row_event({"hid": 17, "img": "x", "u": "https://p/x.jpg"}, Columns("hid", "img", "u", None))
    assert key == b"17"
    assert parse_event(key, value) == event == ImageUpserted(event.event_id, "17", "x", "https://p/x.jpg", None)
    with_time = row_event({**ROWS[0], "occurred_at": "2024-05-01T10:00:00Z"}, Columns())
    assert not isinstance(with_time, Reject) and with_time[0].occurred_at == "2024-05-01T10:00:00Z"
    # a row without a time gets the catalogue's (the export's); its own column wins
    as_of = row_event(ROWS[0], Columns(), as_of="2024-01-01T00:00:00Z")
    assert not isinstance(as_of, Reject) and as_of[0].occurred_at == "2024-01-01T00:00:00Z"
    assert as_of[0].event_id == with_time[0].event_id  # the time is not part of the id
    bad_time = row_event({**ROWS[0], "occurred_at": "last tuesday"}, Columns())
    assert bad_time == Reject("bad_occurred_at", "occurred_at 'last tuesday' is not an ISO-8601 time")
    assert row_event({**ROWS[0], "url": 3.5}, Columns()).reason == "wrong_type"  # type: ignore[union-attr]
    long_url = row_event({**ROWS[0], "url": "http://x/" + "a" * 3000}, Columns())
    assert isinstance(long_url, Reject) and long_url.reason == "bad_url"


def test_csv_jsonl_and_parquet_parts_read_alike(tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    write_csv(parts / "part-0.csv", ROWS[:2])
    (parts / "part-1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS[2:4]) + "\n[1]\n")
    pq.write_table(pa.Table.from_pylist(ROWS[4:]), parts / "part-2.parquet", row_group_size=1)
    (parts / "_SUCCESS").write_text("")  # a data lake's marker file is not a part
    files = find_files([parts])
    assert [f.format for f in files] == ["csv", "jsonl", "parquet"]
    rows = list(read_rows(files, Columns().wanted))
    assert [r.number for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert [(r.file_row, r.values is None) for r in rows] == [(1, 0), (2, 0), (1, 0), (2, 0), (3, 1), (1, 0), (2, 0)]
    assert rows[4].error.startswith("a JSON object per line expected")
    assert [r.values["image_id"] for r in rows if r.values] == ["a", "b", "c", "d", "", "f"]
    # A resume skips rows by number; known file sizes (from a checkpoint) skip whole files unread.
    counts: dict[str, int] = {}
    list(read_rows(files, Columns().wanted, file_rows=counts))
    assert counts == {files[0].name: 2, files[1].name: 3, files[2].name: 2}
    files[0].path.unlink()  # proof the first file is not opened again
    assert [r.number for r in read_rows(files, Columns().wanted, skip_rows=5, file_rows=counts)] == [6, 7]


def test_a_missing_column_is_refused_up_front(tmp_path):
    write_csv(tmp_path / "c.csv", [{"hotel": "h", "image_id": "i", "url": "http://x"}], ("hotel", "image_id", "url"))
    with pytest.raises(CatalogueError, match="no column hotel_id"):
        check_columns(find_files([tmp_path / "c.csv"]), Columns().required)
    check_columns(find_files([tmp_path / "c.csv"]), Columns(hotel="hotel").required)


def _read_rejects(path) -> dict[int, str]:
    with open(path, newline="") as f:
        return {int(r["row"]): r["reason"] for r in csv.DictReader(f)}


async def test_dry_run_validates_and_counts(tmp_path):
    write_csv(tmp_path / "c.csv", ROWS)
    opts = PublishOptions(
        [str(tmp_path / "c.csv")], "t", dry_run=True, rejects=tmp_path / "r.csv", checkpoint=tmp_path / "cp.json"
    )
    s = await publish_catalogue(Settings(), opts)
    assert (s.rows, s.sent, s.rejected, s.complete) == (6, 0, 3, True)
    assert _read_rejects(tmp_path / "r.csv") == REASONS
    assert not (tmp_path / "cp.json").exists()


class _ManualAcks:
    """A producer whose acks the test gives: the checkpoint may only name acknowledged rows."""

    def __init__(self):
        self.sent: list[tuple[bytes, bytes]] = []
        self.futures: list[asyncio.Future] = []

    async def start(self):
        pass

    async def stop(self):
        pass

    async def flush(self):
        pass

    async def send(self, topic, value, key):
        fut = asyncio.get_running_loop().create_future()
        self.sent.append((key, value))
        self.futures.append(fut)
        return fut


async def test_checkpoint_names_only_acknowledged_rows(tmp_path, monkeypatch):
    from galleryrank.consumer.catalogue import publisher

    monkeypatch.setattr(publisher, "CHECKPOINT_EVERY_S", 0.0)
    write_csv(tmp_path / "c.csv", ROWS)
    producer = _ManualAcks()
    opts = PublishOptions([str(tmp_path / "c.csv")], "t", rejects=tmp_path / "r.csv", checkpoint=tmp_path / "cp.json")
    run = asyncio.create_task(publish_catalogue(Settings(), opts, make=lambda s, o: producer))
    while len(producer.futures) < 3:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    state = cp.load(tmp_path / "cp.json")
    assert state is None or state.rows_done == 0  # nothing acknowledged yet: nothing done
    producer.futures[0].set_result(None)  # row 1 acked; row 2 not: rows 3-5 (rejects) wait behind it
    producer.futures[2].set_result(None)  # row 6 acked out of order
    await asyncio.sleep(0.05)
    state = cp.load(tmp_path / "cp.json")
    assert state is not None and state.rows_done == 1 and not state.complete
    for fut in producer.futures[1:2]:
        fut.set_result(None)
    summary = await run
    assert summary.complete and summary.sent == 3
    state = cp.load(tmp_path / "cp.json")
    assert state is not None and (state.rows_done, state.sent, state.rejected, state.complete) == (6, 3, 3, True)
    # every sent record is keyed by its hotel and parses as the consumer parses it
    assert all(isinstance(parse_event(k, v), ImageUpserted) for k, v in producer.sent)
    assert [k for k, _ in producer.sent] == [b"h1", b"h1", b"h4"]


async def test_resume_starts_after_the_checkpoint_and_keeps_its_rejects(tmp_path):
    write_csv(tmp_path / "c.csv", ROWS)
    files = find_files([tmp_path / "c.csv"])
    cp.save(tmp_path / "cp.json", cp.Checkpoint("t", cp.fingerprint(files), rows_done=4, sent=2, rejected=2))
    # the crashed run had written rejects of rows 3, 4 (done) and 5 (after the checkpoint: read again)
    with open(tmp_path / "r.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "file", "file_row", "reason", "detail"])
        for row in (3, 4, 5):
            w.writerow([row, "c.csv", row, REASONS[row], ""])
    producer = _ManualAcks()

    async def acking_send(topic, value, key):
        fut = await _ManualAcks.send(producer, topic, value, key)
        fut.set_result(None)
        return fut

    producer.send = acking_send  # type: ignore[method-assign]
    opts = PublishOptions(
        [str(tmp_path / "c.csv")], "t", resume=True, rejects=tmp_path / "r.csv", checkpoint=tmp_path / "cp.json"
    )
    s = await publish_catalogue(Settings(), opts, make=lambda s, o: producer)
    assert (s.resumed_after, s.rows, s.sent, s.rejected) == (4, 2, 1, 1)
    assert [json.loads(v)["image_id"] for _, v in producer.sent] == ["f"]
    assert _read_rejects(tmp_path / "r.csv") == REASONS  # row 5 once, rows 3-4 kept
    with pytest.raises(cp.CheckpointError, match="topic"):
        await publish_catalogue(Settings(), PublishOptions(**{**opts.__dict__, "topic": "other"}))
