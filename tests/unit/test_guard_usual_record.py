"""The egress guard decides the usual outbox record (an instant, a number, no parameters) on a
short path (issue 19). Held here to the full path — the same guard with that path switched off —
over records of the usual key set with every kind of value in every slot (identifiers, bools,
ints, out-of-range times, unknown Datastreams, non-finite numbers, strings) and over records
whose key set differs by one: the same parsed fields and the same verdict, in any order of
records (the constants' memo filled or not), with and without the names."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.model import Observation
from gateway.privacy import guard as guard_module
from gateway.privacy.guard import EgressGuard

ALLOWED = frozenset({1234567890123456, 2234567890123456})
VOCAB = {1234567890123456: ("s1", frozenset({"ok"}))}

numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.floats(-1e3, 1e3), st.integers(-(10**14), 10**14),
    st.sampled_from([1.79e9, 1.0e9, 9_999_999_999.0, 1e11, -1e11, 447700900123.0, 0.0, -0.0]),
)  # fmt: skip
times = st.one_of(st.floats(1.5e9, 2e9), st.sampled_from([1e9, 9_999_999_999.0, 999_999_999.9, 0.0, 1e15, 1e16]),
                  st.integers(0, 10**13), numbers)  # fmt: skip
slot = st.one_of(numbers, st.booleans(), st.none(), st.sampled_from(["ok", "AB12 CDE", "3c:22:fb:12:34:56", "x"]),
                 st.lists(st.integers(), max_size=2))  # fmt: skip
names = st.sampled_from(["s1", "hs-p0s0", "pm2_5", "AB12CDE", "3c:22:fb:12:34:56", "alex@example.org", "x y"])
datastreams = st.sampled_from([1234567890123456, 2234567890123456, 3234567890123456, True, 1.5, "1234567890123456"])


@st.composite
def usual_records(draw: st.DrawFn) -> bytes:
    doc: dict[str, object] = {"ds": draw(datastreams), "s": draw(st.one_of(names, slot)),
                              "p": draw(st.one_of(names, slot)), "t": draw(times), "rt": draw(times),
                              "r": draw(st.one_of(numbers, numbers, slot))}  # fmt: skip
    doc = dict(draw(st.permutations(list(doc.items()))))  # any key order
    change = draw(st.sampled_from(["none", "none", "drop", "add_te", "add_pa", "add_x"]))
    if change == "drop":
        doc.pop(draw(st.sampled_from(sorted(doc))))
    elif change == "add_te":
        doc["te"] = draw(times)
    elif change == "add_pa":
        doc["pa"] = draw(st.dictionaries(st.sampled_from(["quality", "samples", "mac"]), slot, max_size=2))
    elif change == "add_x":
        doc["x"] = 1
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    return text.encode()



def verdicts(guard: EgressGuard, records: list[bytes], names: bool) -> list[object]:
    out: list[object] = []
    for rec in records:
        doc, problem = guard.record_fields(rec, names)
        out.append((json.dumps(doc, sort_keys=True, default=repr) if doc is not None else None, problem))
        if problem is None and doc is not None:  # what a sink makes of the fields: the same Observation
            o = guard_module.record_observation(doc)
            out.append((o.datastream_id, o.sensor_id, o.property, o.phenomenon_time, o.result_time, o.result))
    return out


@settings(max_examples=400, deadline=None)
@given(st.lists(usual_records(), min_size=1, max_size=12), st.booleans())
def test_the_usual_records_short_path_gives_the_full_paths_verdicts(records: list[bytes], names: bool) -> None:
    records = records + records  # the second time with the constants remembered
    short = verdicts(EgressGuard(ALLOWED, VOCAB), records, names)
    saved = guard_module.USUAL_RECORD_KEYS
    guard_module.USUAL_RECORD_KEYS = frozenset({"no such record"})  # the full path only
    try:
        full = verdicts(EgressGuard(ALLOWED, VOCAB), records, names)
    finally:
        guard_module.USUAL_RECORD_KEYS = saved
    assert short == full


def test_the_short_path_is_taken_for_the_usual_record_and_blocks_what_the_full_path_blocks() -> None:
    """Not vacuous: the usual record passes on it, and each slot holding something else is
    refused (counted by reason) however many times its Datastream's constants were cleared."""
    guard = EgressGuard(ALLOWED, VOCAB)
    good = Observation(1234567890123456, "s1", "pm2_5", 1.79e9, 1.79e9 + 0.5, 12.5).to_record()
    assert guard.record_fields(good) == (json.loads(good), None)
    assert guard.record_fields(good, names=True) == (json.loads(good), None)
    bad = {
        "r": [447700900123.0, "3c:22:fb:12:34:56", "free text", math.inf],
        "t": [999_999_999.0, 1e16, True],
        "rt": [1e16, "1.79e9", 99_999_999_999.5],
        "ds": [3234567890123456, True, "1234567890123456"],
        "s": [1, None],
        "p": [["pm2_5"]],
    }
    for key, values in bad.items():
        for value in values:
            doc = {**json.loads(good), key: value}
            rec = json.dumps(doc, separators=(",", ":")).encode()
            assert guard.record_fields(rec)[1] is not None, (key, value)
    named = Observation(1234567890123456, "AB12 CDE", "pm2_5", 1.79e9, 1.79e9, 1.5).to_record()
    assert guard.record_fields(named)[1] is None  # a sink writes no sensor name of the record
    assert guard.record_fields(named, names=True)[1] == ("vehicle_registration", None)
    assert guard.record_fields(named, names=True)[1] == ("vehicle_registration", None)  # remembered


@st.composite
def observations(draw: st.DrawFn) -> Observation:
    """Observations of every kind (the constructor allows any finite result and any time)."""
    result = draw(st.one_of(numbers, numbers, slot.filter(lambda v: not isinstance(v, list))))
    if isinstance(result, float) and not math.isfinite(result):
        result = 1.5
    params = draw(st.one_of(st.just({}), st.just({}), st.dictionaries(st.sampled_from(["quality", "samples", "mac"]),
                                                                        st.one_of(numbers, names), max_size=2)))  # fmt: skip
    return Observation(draw(datastreams), draw(st.one_of(names, names, slot)), draw(st.one_of(names, slot)),
                       draw(times), draw(times), result, draw(st.one_of(st.none(), st.none(), times)), params)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(observations(), min_size=1, max_size=12))
def test_the_usual_observations_short_path_gives_the_full_paths_verdicts_and_counts(batch: list[Observation]) -> None:
    """`check_observation` (the committer's check) against what it was before the short path:
    `count(parts_problem(…, names=True))`, verdict by verdict and counter by counter."""
    batch = batch + batch  # the second time with the constants remembered
    short, full = EgressGuard(ALLOWED, VOCAB), EgressGuard(ALLOWED, VOCAB)
    for o in batch:
        try:
            want: object = full.count(full.parts_problem(o.datastream_id, o.sensor_id, o.property, o.phenomenon_time,
                                                         o.result_time, o.result, o.phenomenon_end, o.parameters, True))  # fmt: skip
        except Exception as e:  # the committer quarantines the observation ("guard")
            want = type(e)
        try:
            got: object = short.check_observation(o)
        except Exception as e:
            got = type(e)
        assert got == want, o
    assert (short.passed, short.blocked, short.blocked_by_sensor) == (full.passed, full.blocked, full.blocked_by_sensor)


def test_the_committers_check_blocks_a_name_on_the_short_path_too() -> None:
    guard = EgressGuard(ALLOWED, VOCAB)
    named = Observation(1234567890123456, "AB12 CDE", "pm2_5", 1.79e9, 1.79e9, 1.5)
    for _ in range(3):  # first the full path, then the remembered constants
        assert guard.check_observation(named).reason == "vehicle_registration"
    assert guard.check_observation(Observation(1234567890123456, "s1", "pm2_5", 1.79e9, 1.79e9, 1.5)).ok
    assert guard.check_observation(Observation(1234567890123456, "s1", "pm2_5", 1.79e9, 1.79e9, 447700900123.0)).reason == "mac"
    assert guard.check_observation(Observation(3234567890123456, "s1", "pm2_5", 1.79e9, 1.79e9, 1.5)).reason == "unknown_datastream"
    assert guard.blocked == {"vehicle_registration": 3, "mac": 1, "unknown_datastream": 1} and guard.passed == 1
