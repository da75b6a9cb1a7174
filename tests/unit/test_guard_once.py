"""The egress guard scans what can carry device data once, and sinks build their bytes only from
what it cleared (issue 19). These tests hold that design to the guarantee the old one gave by
rescanning every byte a sink sent:

- every device value in a sink's bytes (result, parameters, times) is a text the guard scanned,
  or a time in the range whose renderings no identifier pattern can match (proved over every
  string of those shapes, not only real times);
- bytes built from cleared parts pass a full scan too: no identifier is formed across the
  boundary of a constant (sensor id, property, tags) and a value;
- an identifier planted in any device slot is blocked at commit and at every sink, and is in no
  sink's bytes;
- the verdict on a text is remembered, so the same value met again (at the sink, or in the next
  reading) is not scanned again.
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.model import Observation, iso, stable_id
from gateway.outbox import Row
from gateway.privacy.guard import (
    NUMBER_BOUND,
    PATTERNS,
    TIME_HIGH,
    TIME_LOW,
    EgressGuard,
    find_identifier,
    is_short_number,
    renderings,
    time_renderings,
)
from gateway.sinks.base import guarded_observations
from gateway.sinks.influxdb import InfluxSink, Settings
from gateway.standards import lineprotocol

# The shapes an in-range time is written in (the record's float, ISO 8601, epoch ms), as
# regular expressions: the hypothesis tests below draw arbitrary strings of them.
REPR_SHAPE = r"[1-9][0-9]{9}\.[0-9]{1,7}"
ISO_SHAPE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z"
MS_SHAPE = r"[1-9][0-9]{12}"


class RecordingGuard(EgressGuard):
    """The real guard; remembers every text it was asked to scan (scanned or remembered)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.seen: set[str] = set()

    def scan(self, text: str) -> str | None:
        self.seen.add(text)
        return super().scan(text)


# ------------------------------------------------------------------ times


@settings(max_examples=3000, deadline=None)
@given(st.one_of(st.from_regex(REPR_SHAPE, fullmatch=True), st.from_regex(ISO_SHAPE, fullmatch=True),
                 st.from_regex(MS_SHAPE, fullmatch=True)))  # fmt: skip
def test_no_string_of_an_in_range_time_shape_looks_like_an_identifier(text: str) -> None:
    """Any digits in those shapes, not only real times: the reason the guard need not scan an
    in-range time holds for every pattern it has."""
    assert find_identifier(text) is None, text


@settings(max_examples=1000)
@given(st.floats(TIME_LOW, TIME_HIGH, exclude_max=True))
def test_every_in_range_time_is_written_in_those_shapes(t: float) -> None:
    t = round(t, 3) if t * 1000 % 1 else t
    record, isotext, ms = time_renderings(t)
    assert re.fullmatch(REPR_SHAPE, record) or re.fullmatch(r"[1-9][0-9]{9}\.0", record), record
    assert re.fullmatch(ISO_SHAPE, isotext) and re.fullmatch(MS_SHAPE, ms), (isotext, ms)


def test_a_time_outside_the_range_is_scanned_in_every_rendering() -> None:
    """A 1990s device clock: its epoch ms has 12 digits, which is also the shape of a MAC
    without separators. The guard scans such a time and blocks it, as the full scan did."""
    g = EgressGuard()
    t = 700_000_000.0
    assert find_identifier(lineprotocol.encode(Observation(1, "s", "p", t, t, 1.0), {})) == "mac"
    assert g.check_observation(Observation(1, "s", "p", t, 1.8e9, 1.0)).reason == "mac"
    assert g.scans >= 3 and all(text in g._memo for text in time_renderings(t))


# ------------------------------------------------------------------ numbers

# The shapes a number in (-NUMBER_BOUND, NUMBER_BOUND) is written in: `str(int)`; `repr(float)`
# in fixed notation (1e-4 <= |x| < 1e16: at most 11 digits before the point below the bound) and
# in exponent notation (|x| < 1e-4: one digit, a fraction, a negative exponent of 2-3 digits).
INT_SHAPE = r"-?(?:0|[1-9][0-9]{0,10})"
FIXED_SHAPE = r"-?(?:0|[1-9][0-9]{0,10})\.[0-9]{1,24}"
EXP_SHAPE = r"-?[1-9](?:\.[0-9]{1,17})?e-[0-9]{2,3}"
NUMBER_SHAPE = f"{INT_SHAPE}|{FIXED_SHAPE}|{EXP_SHAPE}"


@settings(max_examples=5000, deadline=None)
@given(st.one_of(st.from_regex(INT_SHAPE, fullmatch=True), st.from_regex(FIXED_SHAPE, fullmatch=True),
                 st.from_regex(EXP_SHAPE, fullmatch=True)))  # fmt: skip
def test_no_string_of_a_short_number_shape_looks_like_an_identifier(text: str) -> None:
    """Any digits in those shapes, not only real numbers: why the guard need not render or scan
    a number inside the bound holds for every pattern it has (a pattern added later that could
    match such a text fails here)."""
    assert find_identifier(text) is None, text


def _digits(n: int, first: str, rest: str) -> str:
    return first + rest * (n - 1) if n else ""


def test_the_hardest_strings_of_those_shapes_look_like_no_identifier() -> None:
    """The corners a random draw may miss, every length: the longest runs of digits the shapes
    allow (a bare MAC needs 12, an IMEI 14), runs of zeros (the `00` of an international phone
    number, the `0` of a UK one), after a minus sign, across the point, before the exponent."""
    texts = set()
    for whole in range(1, 12):
        for first, rest in (("1", "0"), ("4", "4"), ("0", "0"), ("9", "9"), ("7", "7")):
            if first == "0" and whole > 1:
                continue
            w = _digits(whole, first, rest)
            for frac in range(0, 25):
                for f in ("0", "1", "9", "00", "07", "44"):
                    tail = (f * 25)[:frac]
                    for sign in ("", "-"):
                        texts.add(f"{sign}{w}.{tail}" if frac else f"{sign}{w}")
    for frac in range(0, 18):
        for f in ("0", "4", "9"):
            for exp in ("05", "10", "99", "100", "324"):
                for sign in ("", "-"):
                    texts.add(f"{sign}1{'.' + (f * 18)[:frac] if frac else ''}e-{exp}")
    assert all(re.fullmatch(NUMBER_SHAPE, t) for t in texts)
    found = {t: k for t in texts if (k := find_identifier(t)) is not None}
    assert found == {}, found
    # the bound is tight: one digit more before the point and it is a bare MAC (or a phone)
    assert find_identifier("100000000000") == "mac" and find_identifier("447700900123.5") == "mac"
    assert len(PATTERNS) == 18  # a new pattern: check these corners cover what it needs


@settings(max_examples=3000)
@given(st.one_of(st.integers(-int(NUMBER_BOUND) + 1, int(NUMBER_BOUND) - 1),
                 st.floats(-NUMBER_BOUND, NUMBER_BOUND, exclude_min=True, exclude_max=True),
                 st.floats(-1e-3, 1e-3), st.sampled_from([0.0, -0.0, 5e-324, 1e-4, 99999999999.99998])))  # fmt: skip
def test_every_number_inside_the_bound_is_written_in_those_shapes(value: float) -> None:
    """Every text any sink writes such a number as (`renderings`: JSON, line protocol's float),
    and what the fast path decides about it: nothing to block."""
    assert is_short_number(value)
    for text in renderings(value):
        assert re.fullmatch(NUMBER_SHAPE, text), text
    assert re.fullmatch(NUMBER_SHAPE, lineprotocol._field(value)), value
    assert EgressGuard()._value_kind(value) is None


@pytest.mark.parametrize("value", [10**11, -(10**11), NUMBER_BOUND, 123456789012, 447700900123.0,
                                   354_398_062_612_345, 1e11 + 0.5, -447700900123.0])  # fmt: skip
def test_a_number_beyond_the_bound_is_scanned_and_one_that_looks_like_an_identifier_blocked(value: float) -> None:
    """A 12-digit number is a phone number or a bare MAC: beyond the bound every rendering is
    scanned, at commit and at the sinks, as before."""
    assert not is_short_number(value)
    guard = RecordingGuard()
    t = 1_790_000_000.0
    o = Observation(1234567890123456, "pm-north", "pm2_5", t, t, value)
    verdict = guard.check_observation(o)
    assert set(renderings(value)) <= guard.seen or not verdict.ok
    assert not verdict.ok, value
    assert sink_bytes(guard, [o], {"gateway": "g", "borough": "camden"}) == ([], [])


def test_only_plain_ints_and_floats_take_the_fast_path() -> None:
    """A bool, a NaN, an infinity or a subclass with its own rendering is scanned (or refused)
    the old way: the proof above is about `str(int)` and `repr(float)` only."""

    class Loud(float):
        def __repr__(self) -> str:
            return "3c:22:fb:12:34:56"

    for value in (True, False, float("nan"), float("inf"), Loud(1.0)):
        assert not is_short_number(value), value
    assert EgressGuard()._value_kind(Loud(1.0)) == "mac"


# ------------------------------------------------------------------ values, constants, sinks

WORDS = ["AVAILABLE", "CHARGING", "ok", "OUTOFORDER"]
names = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,14}", fullmatch=True)  # config ids (Ident)
props = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)  # driver property keys
results = st.one_of(
    st.integers(-(10**16), 10**16),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(-1e5, 1e5, allow_nan=False).map(lambda v: round(v, 2)),
    st.sampled_from(WORDS),
    st.booleans(),
    st.none(),
)
times = st.one_of(st.floats(TIME_LOW, TIME_HIGH, exclude_max=True).map(lambda t: round(t, 3)),
                  st.floats(0, 253_402_300_799).map(lambda t: round(t, 3)))  # fmt: skip
params = st.fixed_dictionaries({}, optional={
    "quality": st.sampled_from(["clock_unsynced", "partial_window", "out_of_range,warming_up"]),
    "aggregation": st.sampled_from(["mean", "sum", "count_distinct"]),
    "period": st.sampled_from(["PT15M", "PT1H", "PT60S"]),
    "samples": st.integers(0, 10**16),
    "suppressed": st.booleans(),
    "min_count": st.integers(1, 100),
})  # fmt: skip


@st.composite
def observations(draw: st.DrawFn) -> Observation:
    sensor, prop = draw(names), draw(props)
    t = draw(times)
    end = draw(st.one_of(st.none(), st.just(t + 900.0)))
    result = draw(results)
    if end is None and draw(st.booleans()):
        result = draw(st.sampled_from(WORDS))
    return Observation(stable_id("datastream", "g", sensor, prop), sensor, prop, t, draw(times), result, end,
                       draw(params))  # fmt: skip


def sink_bytes(guard: EgressGuard, batch: list[Observation], tags: dict[str, str]) -> tuple[list[str], list[bytes]]:
    """What the by-construction sinks send for `batch`: line protocol, SensorThings JSON."""
    rows = [Row(i + 1, o.datastream_id, o.phenomenon_time, o.to_record()) for i, o in enumerate(batch)]
    sink = InfluxSink(Settings(url="http://127.0.0.1:9", org="o", bucket="b"), site_tags=tags, guard=guard)
    lines, _ = sink.encode(rows)
    items, _ = guarded_observations(rows, guard)
    return [line for _, line in lines], [payload for _, payload in items]


def _lp_values(line: str) -> tuple[list[str], str]:
    """The field values and the timestamp of one line (its texts a device could influence)."""
    head, ts = line.rsplit(" ", 1)
    fields = re.search(r" ((?:[a-z]+=(?:\"(?:[^\"\\\\]|\\\\.)*\"|[^, \"]+),?)+)$", head)
    assert fields is not None, line
    values = [v for _, v in re.findall(r"([a-z]+)=(\"(?:[^\"\\\\]|\\\\.)*\"|[^,]+)", fields.group(1))]
    return values, ts


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(observations(), min_size=1, max_size=8),
       tags=st.fixed_dictionaries({"gateway": names, "borough": st.from_regex(r"[a-z][a-z -]{0,14}", fullmatch=True)}))  # fmt: skip
def test_every_device_value_in_a_sinks_bytes_was_scanned(batch: list[Observation], tags: dict[str, str]) -> None:
    guard = RecordingGuard()
    for o in batch:  # at commit
        guard.check_observation(o)
    lines, payloads = sink_bytes(guard, batch, tags)
    for line in lines:
        values, ts = _lp_values(line)
        for v in values:  # scanned, or a number the tests above prove cannot be an identifier
            assert v in guard.seen or v in ("true", "false") or re.fullmatch(NUMBER_SHAPE, v), (v, line)
        t = int(ts) / 1000
        assert TIME_LOW <= t < TIME_HIGH + 1 or ts in guard.seen, line
    for payload in payloads:
        doc = json.loads(payload)
        for v in [doc["result"], *doc.get("parameters", {}).values()]:
            text = renderings(v)[0]
            assert text in guard.seen or re.fullmatch(NUMBER_SHAPE, text), payload
        for key in ("phenomenonTime", "resultTime"):
            for text in doc[key].split("/"):
                in_range = re.fullmatch(ISO_SHAPE, text) and "2001-09-09" <= text[:10] <= "2286-11-20"
                assert in_range or text in guard.seen, (text, payload)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(observations(), min_size=1, max_size=8),
       tags=st.fixed_dictionaries({"gateway": names, "borough": st.from_regex(r"[a-z][a-z0-9 -]{0,14}", fullmatch=True)}))  # fmt: skip
def test_bytes_built_from_cleared_parts_pass_a_full_scan(batch: list[Observation], tags: dict[str, str]) -> None:
    """No identifier forms across a constant and a value: what the old design rescanned passes
    the same scan, for every observation the guard cleared."""
    lines, payloads = sink_bytes(EgressGuard(), batch, tags)
    for text in [*lines, *(p.decode() for p in payloads)]:
        assert find_identifier(text) is None, text


@settings(max_examples=300, deadline=None)
@given(head=st.sampled_from(["ab12", "x-0770", "3c-22-fb", "ab", "a", "ip-10.0.0", "s-44"]),
       word=st.sampled_from(WORDS), number=st.sampled_from([12.0, 900123, 7700900123, 1.5e16, -0.5, 0]),
       t=st.floats(TIME_LOW, TIME_HIGH, exclude_max=True).map(lambda t: round(t, 3)))  # fmt: skip
def test_constants_ending_in_identifier_fragments_do_not_join_with_values(head: str, word: str, number: float,
                                                                         t: float) -> None:  # fmt: skip
    batch = [Observation(stable_id("datastream", "g", head, "p"), head, "p", t, t, number),
             Observation(stable_id("datastream", "g", head, "s"), head, "s", t, t, word)]
    lines, payloads = sink_bytes(EgressGuard(), batch, {"gateway": head, "borough": head})
    for text in [*lines, *(p.decode() for p in payloads)]:
        assert find_identifier(text) is None, text


PLANTED = [
    ("result", "AB12 CDE", "vehicle_registration"),
    ("result", 123456789012, "mac"),
    ("result", 354_398_062_612_345, "imei_imsi"),
    ("quality", "seen 3c:22:fb:12:34:56", "mac"),
    ("period", "resident@example.org", "email"),
    ("samples", 447_700_900_123_45, "imei_imsi"),
    ("time", 700_000_000.123, "mac"),
]


def test_an_identifier_planted_in_any_device_slot_is_blocked_at_commit_and_at_every_sink() -> None:
    tags = {"gateway": "camden-lc-0423", "borough": "camden"}
    for slot, value, kind in PLANTED:
        t = 1_790_000_000.0
        result: object = 1.0
        pa: dict[str, object] = {}
        if slot == "result":
            result = value
        elif slot == "time":
            t = float(value)  # type: ignore[arg-type]
        else:
            pa[slot] = value
        o = Observation(1234567890123456, "pm-north", "pm2_5", t, 1_790_000_000.5, result, None, pa)  # type: ignore[arg-type]
        guard = EgressGuard()
        assert guard.check_observation(o).reason == kind, slot
        lines, payloads = sink_bytes(guard, [o], tags)
        assert lines == [] and payloads == [], slot
        assert guard.blocked[kind] == 3, slot  # commit, line protocol, SensorThings JSON
        assert guard.passed == 0


def test_a_value_is_scanned_once_and_remembered() -> None:
    """At commit the reading's values are scanned; at the sinks, and in the next reading with the
    same values, the verdicts are remembered: no scan."""
    t = 1_790_000_000.0
    batch = [Observation(1234567890123456 + i, "pm-north", p, t, t + 0.5, v)
             for i, (p, v) in enumerate([("pm2_5", 12.3), ("pm10", 20.5), ("temperature", 14.2)])]  # fmt: skip
    guard = EgressGuard()
    for o in batch:
        assert guard.check_observation(o).ok
    first = guard.scans
    sink_bytes(guard, batch, {"gateway": "g", "borough": "camden"})
    after_sinks = guard.scans
    for o in batch:
        assert guard.check_observation(Observation(o.datastream_id, o.sensor_id, o.property, t + 1, t + 1.5, o.result)).ok
    assert after_sinks - first == 3  # the three lines' constant prefixes, once per Datastream
    assert guard.scans == after_sinks  # the next reading: nothing new to scan
    assert iso(t) not in guard._memo  # in-range times need no scan


def test_the_sinks_bytes_are_the_reference_encodings() -> None:
    """Built from cleared parts, the bytes are still exactly the reference encoders' output."""
    t = 1_790_000_000.25
    obs = [Observation(1234567890123456, "pm-north", "pm2_5", t, t + 0.5, 12.3),
           Observation(1234567890123457, "ev-1", "status", t, t + 0.5, "CHARGING", None, {"quality": "clock_unsynced"}),
           Observation(1234567890123458, "ff-1", "footfall", t, t + 0.5, None, t + 900, {"suppressed": True, "min_count": 10})]  # fmt: skip
    tags = {"gateway": "camden-lc-0423", "borough": "camden"}
    lines, payloads = sink_bytes(EgressGuard(), obs, tags)
    assert lines == [lineprotocol.encode(o, tags) for o in obs]
    assert payloads == [json.dumps(o.sensorthings(), separators=(",", ":"), ensure_ascii=False).encode() for o in obs]
