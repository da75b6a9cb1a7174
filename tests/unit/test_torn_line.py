"""A write a crash, a power cut or a full disk interrupts leaves part of a line at the end of an
append-only JSON Lines file. Its batch was not acknowledged and is written again whole; the part
must go first, or it glues itself onto the first line appended after it and that line is lost
to every reader (the file store, the SensorThings sink's parked rows)."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sinks.base import RetryableError
from gateway.sinks.file import FileSink
from gateway.sinks.jsonlines import trim_torn_line
from gateway.sinks.sensorthings import Parked
from tests.unit.test_sink_formats import observations, rows, setup

no_newline = st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"x"))


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(no_newline, max_size=8), part=no_newline, big=st.sampled_from([0, 65535, 65536, 200_000]))
def test_what_follows_the_last_newline_is_cut_and_nothing_before_it(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], part: bytes, big: int
) -> None:
    path = tmp_path_factory.mktemp("t") / "f.jsonl"
    whole = b"".join(line + b"\n" for line in lines)
    part = part + b"y" * big  # parts longer than the 64 KiB the search reads at a time
    path.write_bytes(whole + part)
    assert trim_torn_line(path) == len(part)
    assert path.read_bytes() == whole
    assert trim_torn_line(path) == 0  # whole lines are left alone
    assert path.read_bytes() == whole


def test_a_file_that_is_not_there_is_left_alone(tmp_path: Path) -> None:
    assert trim_torn_line(tmp_path / "none.jsonl") == 0
    assert not (tmp_path / "none.jsonl").exists()


def written(sink: FileSink) -> list[dict[str, Any]]:
    return [json.loads(line) for line in sink.path.read_text().splitlines()]  # every line, or it fails


def test_a_batch_written_again_after_a_crash_mid_write_is_whole_in_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plan, sink, _ = setup(tmp_path, "sensorthings")
    batch = rows(observations(plan))
    first, second = batch[:4], batch[4:]
    asyncio.run(sink.write(first))
    asyncio.run(sink.close())
    expected = written(sink)
    # the crash: the second batch's write reached the disk only in part, its cursor did not move
    sink.write_local(second)
    asyncio.run(sink.close())
    text = sink.path.read_bytes()
    whole = len(b"".join(line + b"\n" for line in text.splitlines()[: len(first)]))
    sink.path.write_bytes(text[: whole + 37])
    # the restarted gateway writes the second batch again
    _, again, _ = setup(tmp_path, "sensorthings")
    with caplog.at_level(logging.WARNING, logger="gateway.sinks.file"):
        r = asyncio.run(again.write(second))
        asyncio.run(again.close())
    assert r.written == len(second)
    # the same lines as a gateway that never crashed wrote
    (tmp_path / "clean").mkdir()
    _, clean, _ = setup(tmp_path / "clean", "sensorthings")
    asyncio.run(clean.write(batch))
    asyncio.run(clean.close())
    assert written(again)[: len(first)] == expected
    assert written(again) == written(clean)
    cut = [rec for rec in caplog.records if "part of a line" in rec.getMessage()]
    assert len(cut) == 1 and cut[0].__dict__["bytes"] == 37


class FullDisk:
    """A file whose next write reaches the disk only in part, then fails as a full disk does."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh

    def write(self, data: bytes) -> int:
        self.fh.write(data[: len(data) // 2])
        self.fh.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def tell(self) -> int:
        return int(self.fh.tell())

    def close(self) -> None:
        self.fh.close()


def test_a_write_that_fails_part_way_leaves_nothing_and_is_retried_whole(tmp_path: Path) -> None:
    plan, sink, _ = setup(tmp_path, "sensorthings")
    batch = rows(observations(plan))
    sink.write_local(batch[:3])
    assert sink._fh is not None
    sink._fh = FullDisk(sink._fh)  # type: ignore[assignment]
    with pytest.raises(RetryableError):
        sink.write_local(batch[3:])
    assert len(written(sink)) == 3  # what reached the file of the failed batch is gone
    sink.write_local(batch[3:])  # the sink runner's retry
    asyncio.run(sink.close())
    (tmp_path / "clean").mkdir()
    _, clean, _ = setup(tmp_path / "clean", "sensorthings")
    clean.write_local(batch)
    asyncio.run(clean.close())
    assert written(sink) == written(clean)


def test_rows_parked_after_a_power_cut_mid_append_are_all_read_back(tmp_path: Path) -> None:
    path = tmp_path / "sensorthings-sta-parked.jsonl"
    parked = Parked(path, limit=100)
    parked.add([(1, '{"r":1}', "HTTP 500"), (2, '{"r":2}', "HTTP 500")], 1.0)
    text = path.read_bytes()
    parked.add([(3, '{"r":3}', "HTTP 500")], 2.0)
    path.write_bytes(path.read_bytes()[: len(text) + 10])  # row 3's append was cut: not acknowledged
    after = Parked(path, limit=100)
    after.load()
    assert sorted(after.items) == [1, 2]
    after.add([(3, '{"r":3}', "HTTP 500"), (4, '{"r":4}', "HTTP 500")], 3.0)  # row 3 parked again
    again = Parked(path, limit=100)
    again.load()
    assert sorted(again.items) == [1, 2, 3, 4]
    assert again.items[4]["record"] == '{"r":4}'
