"""With several sinks, the egress guard parses each outbox row once and hands the parse to the
others (`EgressGuard.row_readers`, issue 19: three sinks each parsed every row, 26 % of the CPU at
1,000 readings/s with every sink). Held here to the guard without sharing: for any row, in any
order of reads by any mix of sinks (InfluxDB's `record_fields`, file and MQTT's
`clear_record_json`, SensorThings' `clear_record`), the same fields, the same Observation and
bytes, the same counts per reason; planted identifiers blocked for every reader; the rows kept
for readers to come bounded and forgotten once all have read; threads reading at once see the
same; and a pipeline with several sinks shares, one sink does not."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import parse_config
from gateway.model import Observation, Reading
from gateway.pipeline import Pipeline
from gateway.privacy import guard as guard_module
from gateway.privacy.guard import EgressGuard
from tests.unit.test_guard_usual_record import ALLOWED, VOCAB, usual_records

READS = ("record_fields", "clear_record_json", "clear_record")


def guard(readers: int) -> EgressGuard:
    g = EgressGuard(ALLOWED, vocabularies=VOCAB)
    g.row_readers = readers
    return g


def read(g: EgressGuard, how: str, record: bytes) -> object:
    """What a sink of each kind takes from the guard for `record`, as comparable text."""
    if how == "record_fields":
        doc, problem = g.record_fields(record)
        return ("fields", json.dumps(doc, sort_keys=True, default=repr) if doc is not None else None, problem)
    if how == "clear_record_json":
        made = g.clear_record_json(record)
        return ("json", None if made is None else (repr(made[0]), made[1]))
    obs = g.clear_record(record)
    return ("obs", repr(obs))


def counts(g: EgressGuard) -> tuple[int, dict[str, int], dict[tuple[str, str], int]]:
    return g.passed, dict(g.blocked), dict(g.blocked_by_sensor)


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(usual_records(), min_size=1, max_size=12), readers=st.integers(2, 4),
       kinds=st.lists(st.sampled_from(READS), min_size=4, max_size=4), seed=st.integers(0, 2**32))  # fmt: skip
def test_a_shared_parse_gives_every_sink_what_its_own_would(rows: list[bytes], readers: int, kinds: list[str],
                                                            seed: int) -> None:  # fmt: skip
    """Each of `readers` sinks reads every row (its own copy of the bytes, as SQLite gives it)
    in an interleaving of the sinks' batches; a guard of one reader (no sharing) is the oracle."""
    shared, alone = guard(readers), guard(1)
    order = [(sink, i) for sink in range(readers) for i in range(len(rows))]
    random.Random(seed).shuffle(order)
    order.sort(key=lambda p: p[1] // 4)  # sinks take batches of 4 rows, in any order within
    for sink, i in order:
        record = bytes(bytearray(rows[i]))  # a new object per read
        assert read(shared, kinds[sink], record) == read(alone, kinds[sink], record)
    assert counts(shared) == counts(alone)
    assert shared._shared == {} or len(set(rows)) < len(rows)  # all read: none kept (but duplicates)


def test_every_sink_but_the_first_takes_the_parse_and_the_last_forgets_it() -> None:
    g = guard(3)
    obs = Observation(1234567890123456, "s1", "pm2_5", 1.79e9, 1.79e9 + 1, 12.5)
    record = obs.to_record()
    fields = g.record_fields(record)
    made = g.clear_record_json(bytes(bytearray(record)))
    assert made is not None and made == (obs, obs.sensorthings_json())
    assert g.shared_hits == 1 and len(g._shared) == 1
    assert g.clear_record_json(bytes(bytearray(record))) is made  # the third reader: the same pair
    assert g.shared_hits == 2 and g._shared == {}
    assert fields[1] is None and g.passed == 2  # record_fields counts nothing (the InfluxDB sink counts)
    g.record_fields(record)  # read again (a sink retrying): parsed again, kept for the others
    assert g.shared_hits == 2 and len(g._shared) == 1


def test_planted_identifiers_are_blocked_for_every_reader_and_counted_per_reader() -> None:
    g = guard(3)
    planted = [
        {"ds": 1234567890123456, "s": "s1", "p": "word", "t": 1.79e9, "rt": 1.79e9, "r": "AB12 CDE"},
        {"ds": 2234567890123456, "s": "s2", "p": "x", "t": 1.79e9, "rt": 1.79e9, "r": 1.0,
         "pa": {"quality": "3c:22:fb:12:34:56"}},
        {"ds": 2234567890123456, "s": "s2", "p": "x", "t": 1.79e9, "rt": 1.79e9, "r": "alex@example.org"},
        {"ds": 2234567890123456, "s": "s2", "p": "x", "t": 1.79e9, "rt": 1.79e9, "r": 447700900123},
        {"ds": 9234567890123456, "s": "s2", "p": "x", "t": 1.79e9, "rt": 1.79e9, "r": 1.0},
    ]  # fmt: skip
    alone = guard(1)
    for doc in planted:
        record = json.dumps(doc, separators=(",", ":")).encode()
        for how in READS:
            got = read(g, how, bytes(bytearray(record)))
            assert got == read(alone, how, bytes(bytearray(record)))
            assert got[-1] is not None and got[-1] != repr(None) if how == "record_fields" else got[-1] in (None, "None")
        assert g.record_fields(record, names=True)[1] is not None  # the commit's check: never shared
    assert g.passed == 0 and sum(g.blocked.values()) == 2 * len(planted)  # record_fields counts nothing
    assert counts(g) == counts(alone)
    assert set(g.blocked) == {"mac", "not_in_vocabulary", "unknown_datastream"}
    assert g._shared == {}


def test_rows_one_sink_never_reads_are_bounded() -> None:
    g = guard(2)  # the other sink cannot deliver: nobody takes these
    for i in range(guard_module.SHARED_ROWS_MAX * 3 + 5):
        g.clear_record_json(Observation(1234567890123456, "s1", "p", 1.79e9 + i, 1.79e9 + i, float(i)).to_record())
        assert len(g._shared) <= guard_module.SHARED_ROWS_MAX
    assert g.passed == guard_module.SHARED_ROWS_MAX * 3 + 5


def test_a_record_not_from_the_outbox_is_not_kept_for_other_sinks() -> None:
    g = guard(3)
    record = Observation(1234567890123456, "s1", "p", 1.79e9, 1.79e9, 1.0).to_record()
    assert g.clear_record(record, outbox_row=False) is not None
    assert g._shared == {} and g.passed == 1
    assert g.clear_record_json(record.decode()) is not None  # type: ignore[arg-type]  # not bytes: not kept
    assert g._shared == {}


def test_sinks_on_threads_reading_at_once_see_what_each_would_alone() -> None:
    rows = [Observation(1234567890123456 if i % 7 else 2234567890123456, "s1", "p", 1.79e9 + i, 1.79e9 + i,
                        "AB12 CDE" if i % 50 == 0 else float(i)).to_record() for i in range(3000)]  # fmt: skip
    alone = guard(1)
    want = [read(alone, "clear_record_json", r) for r in rows]
    g = guard(3)
    got: dict[int, list[object]] = {}
    errors: list[BaseException] = []

    def sink(n: int) -> None:
        try:
            got[n] = [read(g, "clear_record_json", bytes(bytearray(r))) for r in rows]
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=sink, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert got[0] == got[1] == got[2] == want
    assert g.passed == 3 * alone.passed and dict(g.blocked) == {k: 3 * v for k, v in alone.blocked.items()}
    assert dict(g.blocked_by_sensor) == {k: 3 * v for k, v in alone.blocked_by_sensor.items()}
    assert len(g._shared) <= guard_module.SHARED_ROWS_MAX


def config(data_dir: Path, sinks: str) -> object:
    return parse_config(f"""
gateway: {{id: t-gw, borough: camden, location: {{lat: 51.539, lon: -0.1426}}, data_dir: "{data_dir}"}}
sensors:
  - {{id: aq-1, driver: generic_json, mqtt: {{topic: aq/1}},
      options: {{fields: [{{path: pm25, property: pm2_5, unit: ug/m3}}]}}}}
inputs: {{mqtt: {{host: 127.0.0.1}}}}
sinks: {sinks}
outbox: {{sync: normal}}
ops: {{http: null}}
""", env={})  # fmt: skip


async def deliver(cfg: object, n: int) -> Pipeline:
    p = Pipeline(cfg)  # type: ignore[arg-type]
    await p.start()
    for i in range(n):
        await p.submit(Reading("aq-1", 1.79e9 + i, {"pm2_5": float(i)}))
    await p.queue.join()
    await p.stop()
    return p


def test_a_pipeline_with_several_sinks_shares_each_row_and_writes_the_same(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr("gateway.pipeline.build_sources", lambda *args: [])  # readings come in by `submit`
    sinks = "{a: {type: file, path: a.jsonl}, b: {type: file, path: b.jsonl}}"
    p = asyncio.run(deliver(config(tmp_path / "two", sinks), 20))
    assert p.guard.row_readers == 2
    a, b = (tmp_path / "two" / "a.jsonl").read_bytes(), (tmp_path / "two" / "b.jsonl").read_bytes()
    assert a == b and a.count(b"\n") == 20
    assert p.guard.shared_hits == 20 and p.guard._shared == {}
    one = asyncio.run(deliver(config(tmp_path / "one", "{file: {path: a.jsonl}}"), 20))
    assert one.guard.row_readers == 1 and one.guard.shared_hits == 0

    def without_result_time(data: bytes) -> list[dict[str, object]]:  # the commit's wall-clock time
        return [{k: v for k, v in json.loads(line).items() if k != "resultTime"} for line in data.splitlines()]

    assert without_result_time((tmp_path / "one" / "a.jsonl").read_bytes()) == without_result_time(a)


def test_a_time_no_sink_can_write_is_blocked_for_every_reader(tmp_path: Path) -> None:
    """Damaged rows whose time no sink can write (found by the oracle above; the guard's bounds
    are in test_guard_time_bounds.py): blocked by each way a sink reads a row, shared or not, and
    the first and last times `iso` can write still leave."""
    from tests.unit.test_guard_time_bounds import BAD_TIMES, with_rt

    bad = [with_rt(t) for t in BAD_TIMES]
    edge = [with_rt(t) for t in (b"0.0", b"-1000000000")]
    for readers in (1, 3):
        g = guard(readers)
        for record in bad:
            for how in READS:
                assert read(g, how, bytes(bytearray(record)))[-1] in (None, "None", ("undeclared_field", None))
        assert g.passed == 0 and g.blocked["undeclared_field"] == 2 * len(bad)  # record_fields counts nothing
        for record in edge:
            made = g.clear_record_json(record)
            assert made is not None
            assert b'"resultTime":"19' in made[1]  # 1970, 1938: written


class _SlowReads(EgressGuard):
    """A guard whose counters hand the GIL to another thread between reading a count and
    writing it back (the window a `+=` has anyway, made wide): counting from several threads
    loses increments unless the counting is serialised."""

    class SlowCounter(Counter):  # type: ignore[type-arg]
        def __getitem__(self, key: object) -> int:
            value: int = super().__getitem__(key)
            time.sleep(0.0002)
            return value

    def __init__(self) -> None:
        super().__init__(ALLOWED, vocabularies=VOCAB)
        self.blocked = self.SlowCounter()
        self.blocked_by_sensor = self.SlowCounter()

    @property  # type: ignore[override]
    def passed(self) -> int:
        value = self.__dict__.get("_passed", 0)
        time.sleep(0.0002)
        return value  # type: ignore[no-any-return]

    @passed.setter
    def passed(self, value: int) -> None:
        self.__dict__["_passed"] = value


def test_counts_from_sinks_on_several_threads_are_exact_even_when_each_count_is_slow() -> None:
    """The sinks count on worker threads (the file sink's write on the outbox's thread) while the
    loop counts too: every `passed`, `blocked` and `blocked_by_sensor` increment is kept. Fails
    without the guard's `_counting` lock (each thread reads a count the others are changing)."""
    g = _SlowReads()
    per_thread, threads_n = 60, 4
    errors: list[BaseException] = []
    start = threading.Barrier(threads_n)

    def sink() -> None:
        try:
            start.wait()
            for i in range(per_thread):
                g.count(None)  # a verdict to pass
                g.count_passed(2)  # a batch cleared elsewhere
                g.count(("not_json", None))
                g.count(("plate", "s1") if i % 2 else ("email", "s2"))
                g.count_blocked("unknown_datastream")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=sink) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    n = per_thread * threads_n
    assert g.passed == 3 * n
    assert dict(g.blocked) == {"not_json": n, "plate": n // 2, "email": n // 2, "unknown_datastream": n}
    assert dict(g.blocked_by_sensor) == {("s1", "plate"): n // 2, ("s2", "email"): n // 2}
