"""`Observation.to_record` writes its JSON directly for the usual types (issue 19): held here to
the standard library's `json.dumps` (compact, ensure_ascii=False), byte for byte, over every kind
of value an Observation can carry, and to the guard's parse of it."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.model import Observation
from gateway.privacy.guard import EgressGuard


def reference(o: Observation) -> bytes:
    rec: dict[str, object] = {"ds": o.datastream_id, "s": o.sensor_id, "p": o.property,
                              "t": o.phenomenon_time, "rt": o.result_time, "r": o.result}  # fmt: skip
    if o.phenomenon_end is not None:
        rec["te"] = o.phenomenon_end
    if o.parameters:
        rec["pa"] = dict(o.parameters)
    return json.dumps(rec, separators=(",", ":"), ensure_ascii=False).encode()


text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)  # no lone surrogates
words = st.one_of(text, st.sampled_from(["ok", 'say "hi"', "back\\slash", "tab\there", "ünï©ødé", "\u2028", "\x00"]))
floats = st.floats(allow_nan=False, allow_infinity=False)
times = st.one_of(floats, st.integers(-(10**12), 10**13), st.sampled_from([math.nan, math.inf, -math.inf, -0.0]))
results = st.one_of(floats, st.integers(-(10**20), 10**20), words, st.booleans(), st.none())
params = st.dictionaries(st.sampled_from(["quality", "aggregation", "samples", "suppressed", "period"]),
                         st.one_of(floats, st.integers(), words, st.booleans()), max_size=3)  # fmt: skip


@st.composite
def observations(draw: st.DrawFn) -> Observation:
    return Observation(draw(st.integers(0, 10**17)), draw(words), draw(words), draw(times), draw(times),
                       draw(results), draw(st.one_of(st.none(), times)), draw(params))  # fmt: skip


@settings(max_examples=3000, deadline=None)
@given(observations())
def test_a_record_is_exactly_what_json_dumps_writes(o: Observation) -> None:
    assert o.to_record() == reference(o)
    assert o.to_record() == reference(o)  # the second time from the remembered names


@settings(max_examples=500, deadline=None)
@given(observations())
def test_the_guard_reads_back_what_was_written(o: Observation) -> None:
    got, problem = EgressGuard().record_problem(o.to_record(), names=True)
    if not all(math.isfinite(t) for t in (o.phenomenon_time, o.result_time, o.phenomenon_end or 0.0)):
        assert problem is not None  # no sink can write such a time: blocked
        return
    assert got is not None
    assert (got.datastream_id, got.sensor_id, got.property, got.result, dict(got.parameters)) == \
        (o.datastream_id, o.sensor_id, o.property, o.result, dict(o.parameters))  # fmt: skip
    assert (got.phenomenon_time, got.result_time) == (o.phenomenon_time, o.result_time)


def test_a_lone_surrogate_still_cannot_be_serialised() -> None:
    """The committer quarantines such an observation ("serialise"): it must still raise."""
    with pytest.raises(UnicodeEncodeError):
        Observation(1, "s", "p", 1.0, 1.0, "\ud800").to_record()
    with pytest.raises(UnicodeEncodeError):
        Observation(1, "s\udfff", "p", 1.0, 1.0, 1.0).to_record()


@pytest.mark.parametrize("damage", [
    lambda r: b"", lambda r: b" " + r, lambda r: r + b" ", lambda r: r + b"\n", lambda r: r + r,
    lambda r: b"\xef\xbb\xbf" + r, lambda r: r[:-1], lambda r: b"\xff" + r[1:], lambda r: b"[" + r + b"]",
    lambda r: r.decode().encode("utf-16"), lambda r: b"[" * 100_000, lambda r: b"null", lambda r: b"{}",
])  # fmt: skip
def test_a_record_that_is_not_exactly_one_json_object_of_ours_is_blocked_whole(damage: object) -> None:
    """A damaged outbox row at a sink: blocked (fail closed), never an exception in its write."""
    record = Observation(1234567890123456, "s", "pm2_5", 1.79e9, 1.79e9, 1.5).to_record()
    guard = EgressGuard()
    assert guard.clear_record(record) is not None
    obs, problem = guard.record_problem(damage(record))  # type: ignore[operator]
    assert obs is None and problem is not None and problem[0] in ("not_json", "undeclared_field")


@settings(max_examples=500, deadline=None)
@given(ds=st.integers(0, 2**63), sensor=st.text(max_size=8), prop=st.text(max_size=8),
       t=st.floats(allow_nan=False), rt=st.floats(allow_nan=False), result=st.floats(allow_nan=False, allow_infinity=False),
       quality=st.sampled_from(["", "clock_unsynced", "out_of_range,warming_up"]))  # fmt: skip
def test_the_stages_finite_observation_is_the_constructors(ds: int, sensor: str, prop: str, t: float, rt: float,
                                                            result: float, quality: str) -> None:  # fmt: skip
    import dataclasses

    from gateway.model import finite_observation

    assert list(Observation.__slots__) == [f.name for f in dataclasses.fields(Observation)]  # set in order
    params = {"quality": quality} if quality else {}
    made = finite_observation(ds, sensor, prop, t, rt, result, params)
    reference = Observation(ds, sensor, prop, t, rt, result, None, params)
    assert type(made) is Observation and made == reference and made.to_record() == reference.to_record()
    assert all(getattr(made, f.name) is getattr(reference, f.name) for f in dataclasses.fields(Observation))
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.result = 1.0  # type: ignore[misc]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4), results), min_size=1, max_size=30),
       st.lists(st.one_of(floats, st.integers(-(10**12), 10**13)), min_size=5, max_size=5))  # fmt: skip
def test_a_record_made_from_times_remembered_is_still_exactly_json_dumps(picks: list[tuple[int, int, object]],
                                                                         times: list[float]) -> None:  # fmt: skip
    """`to_record` reuses the text of the last (time, result time) it wrote when it meets the very
    same float objects again (a reading's values, a group's result time): any order of shared and
    fresh time objects, equal values in distinct objects included, gives json.dumps' bytes."""
    pool = [*times, *(float(repr(t)) if isinstance(t, float) else t for t in times)]  # equal, not identical
    for i, (ti, rti, result) in enumerate(picks):
        o = Observation(1234567890123456, f"s{i % 3}", "pm2_5", pool[ti + 5 * (i % 2)], pool[rti], result)  # type: ignore[arg-type]
        assert o.to_record() == reference(o)



@settings(max_examples=200, deadline=None)
@given(times=st.lists(st.one_of(st.sampled_from([0.0, -0.0, 0, 1_800_000_000, 1_800_000_000.0005, 1_800_000_000.0015]),
                                st.floats(-2e9, 4e9, allow_nan=False),
                                st.integers(-2_000_000_000, 4_000_000_000)),
                      min_size=1, max_size=60))  # fmt: skip
def test_iso_remembers_times_without_changing_one(times: list[float]) -> None:
    """`iso` keeps the text of the last times it wrote (issue 19: a reading's values share a
    time, and every SensorThings-shaped sink writes it): each time, whether remembered or not,
    after -0.0 or 0, an int or its float, reads as datetime writes it."""
    from datetime import UTC, datetime

    from gateway import model

    for t in times + times[::-1]:
        assert model.iso(t) == datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_iso_forgets_past_its_bound() -> None:
    from gateway import model

    for i in range(3 * model._ISO_KEPT):
        model.iso(1_800_000_000 + i / 1000)
    assert 0 < len(model._ISO) <= model._ISO_KEPT


def sensorthings_reference(o: Observation) -> bytes:
    return json.dumps(o.sensorthings(), separators=(",", ":"), ensure_ascii=False).encode()


@settings(max_examples=2000, deadline=None)
@given(observations())
def test_the_sensorthings_json_is_exactly_what_json_dumps_writes(o: Observation) -> None:
    """What the file and MQTT sinks write per row: the same bytes as json of `sensorthings()`
    (the guard cleared the parts; the bytes need no scan of their own only because they are
    these), or the same exception for a time no ISO 8601 text has."""
    try:
        expected = sensorthings_reference(o)
    except (ValueError, OverflowError, OSError) as e:
        with pytest.raises(type(e)):
            o.sensorthings_json()
        return
    assert o.sensorthings_json() == expected
    assert o.sensorthings_json() == expected  # the second time from the remembered times


def test_the_sensorthings_json_of_an_unusual_result_or_id_goes_through_json() -> None:
    import enum

    class Level(enum.IntEnum):
        HIGH = 3

    for o in (Observation(7, "s", "p", 1.8e9, 1.8e9, Level.HIGH), Observation(True, "s", "p", 1.8e9, 1.8e9, 1.5),
              Observation(7, "s", "p", 1.8e9, 1.8e9, 2**70, 1.8e9 + 60, {"samples": 3, "note": "ünï\n"})):  # fmt: skip
        assert o.sensorthings_json() == sensorthings_reference(o)
