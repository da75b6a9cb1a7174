"""A damaged outbox row whose time no sink can write is blocked by the egress guard, not handed
to a sink to fail on at every retry.

The guard let through times up to ±1e15 s; `iso` (and so every SensorThings Observation the file
and MQTT sinks write) can only write years 1 to 9999. A row with rt=1e12 (a damaged row: the
committer commits nothing past 9999-12-31) was cleared, and `sensorthings_json` raised ValueError
in the file and MQTT sinks on every retry of its batch, which then never went out: a poison row.
Found by the Hypothesis oracle of tests/unit/test_guard_shared_rows.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.committer import LATEST_TIME
from gateway.model import Observation, iso
from gateway.outbox import Row
from gateway.privacy import guard as guard_module
from gateway.privacy.guard import EgressGuard
from gateway.sinks.file import FileSink

DS = 1234567890123456
GOOD = Observation(DS, "s1", "p", 1.79e9, 1.79e9, 1.0).to_record()
BAD_TIMES = (b"1000000000000", b"253402300800.0", b"-62135596801.0", b"1e300", b"NaN", b"-Infinity")


def with_rt(text: bytes) -> bytes:
    record = GOOD.replace(b'"rt":1790000000.0', b'"rt":' + text)
    assert record != GOOD
    return record


def guard() -> EgressGuard:
    return EgressGuard(frozenset({DS}))


def test_the_bounds_are_what_iso_and_the_committer_can_write() -> None:
    assert guard_module.LATEST_TIME == LATEST_TIME
    assert iso(guard_module.LATEST_TIME) == "9999-12-31T23:59:59.000Z"
    assert iso(guard_module.EARLIEST_TIME) == "0001-01-01T00:00:00.000Z"
    for outside in (guard_module.LATEST_TIME + 1, guard_module.EARLIEST_TIME - 1):
        with pytest.raises((ValueError, OverflowError)):
            iso(outside)


@pytest.mark.parametrize("text", BAD_TIMES)
def test_a_time_no_sink_can_write_is_blocked(text: bytes) -> None:
    g = guard()
    assert g.clear_record(with_rt(text)) is None
    assert g.passed == 0 and g.blocked["undeclared_field"] == 1


@pytest.mark.parametrize("t", [guard_module.EARLIEST_TIME, guard_module.LATEST_TIME, 0.0, -1e9, 1e12 / 1000])
def test_times_within_the_bounds_are_scanned_as_before(t: float) -> None:
    assert guard()._time_kind(t) != "undeclared_field"


def test_the_file_sink_writes_the_good_rows_around_a_damaged_one(tmp_path: Path) -> None:
    rows = [Row(i, DS, 1.79e9, body) for i, body in enumerate([GOOD, *map(with_rt, BAD_TIMES), GOOD])]
    sink = FileSink(tmp_path / "out.jsonl", max_bytes=2**20, keep=1, guard=guard(), name="file")
    result = sink.write_local(rows)
    assert (result.written, result.blocked) == (2, len(BAD_TIMES))
    assert (tmp_path / "out.jsonl").read_bytes().count(b"\n") == 2
    for edge in (b"0.0", b"-1000000000"):  # 1970, 1938: written
        obs = guard().clear_record(with_rt(edge))
        assert obs is not None and b'"resultTime":"19' in obs.sensorthings_json()
