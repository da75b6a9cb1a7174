"""Our node's decoder: stream properties over COBS frames, declared fields only, sequence gaps,
simulator round trip."""

from __future__ import annotations

import random
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import framing
from firmware_bridge.base import Decoded, DecodeError, Event
from firmware_bridge.drivers import node

PROPS = settings(max_examples=200, derandomize=True, database=None, deadline=None)

Item = tuple[bytes, dict[str, float]]
number = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**9), 10**9)
readings = st.dictionaries(st.sampled_from(sorted(node.KEYS)), number, min_size=1)
frames = st.tuples(st.integers(0, 255), readings).map(
    lambda t: (framing.encode_readings(t[0], t[1]), t[1])
)
# garbage without 00 stays inside one segment, so it can never hide an accidental frame
garbage = st.binary(max_size=30).map(lambda b: b.replace(b"\x00", b""))
cuts = st.lists(st.integers(0, 10_000), max_size=12)
damage = st.tuples(st.sampled_from(["truncate", "corrupt"]), st.integers(0, 10_000),
                   st.integers(1, 255))  # fmt: skip


def chunks(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(marks)]


def feed(decoder: node.Decoder, parts: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for part in parts:
        events += decoder.feed(part)
    return events


def values(events: list[Event]) -> list[dict[str, object]]:
    return [dict(e.values) for e in events if isinstance(e, Decoded)]


def damaged(frame: bytes, kind: str, where: int, xor: int) -> bytes:
    if kind == "truncate":
        # keep the leading 00 and one byte, lose at least the last CRC byte: losing only the
        # closing 00 leaves an intact frame, closed by the next frame's leading 00
        return frame[: 2 + where % (len(frame) - 3)]
    i = where % len(frame)
    return frame[:i] + bytes([frame[i] ^ xor]) + frame[i + 1 :]


@PROPS
@given(st.lists(frames, min_size=1, max_size=5), cuts)
def test_frames_decode_the_same_whole_bytewise_and_in_random_splits(
    items: list[Item], points: list[int]
) -> None:
    stream = b"".join(f for f, _ in items)
    for parts in ([stream], [bytes([b]) for b in stream], chunks(stream, points)):
        decoder = node.Decoder()
        events = feed(decoder, parts)
        assert values(events) == [v for _, v in items]
        assert not [e for e in events if isinstance(e, DecodeError)]
        assert decoder.counters.frames_ok == len(items)


@PROPS
@given(st.lists(st.tuples(garbage, frames), min_size=1, max_size=5), cuts)
def test_garbage_between_frames_is_rejected_and_counted(
    items: list[tuple[bytes, Item]], points: list[int]
) -> None:
    stream = b"".join(g + f for g, (f, _) in items)
    decoder = node.Decoder()
    assert values(feed(decoder, chunks(stream, points))) == [v for _, (_, v) in items]
    c = decoder.counters
    if any(g for g, _ in items):
        assert c.rejected + c.checksum_errors >= 1


@PROPS
@given(st.lists(st.tuples(frames, st.none() | damage), min_size=1, max_size=6), frames, cuts)
def test_truncated_and_corrupt_frames_are_rejected_counted_and_hide_no_good_frame(
    items: list[tuple[Item, tuple[str, int, int] | None]], last: Item, points: list[int]
) -> None:
    items = [*items, (last, None)]  # a damaged frame is only known bad once more bytes follow
    stream = b"".join(f if d is None else damaged(f, *d) for (f, _), d in items)
    decoder = node.Decoder()
    assert values(feed(decoder, chunks(stream, points))) == [v for (_, v), d in items if d is None]
    c = decoder.counters
    if any(d is not None for _, d in items):
        assert c.checksum_errors + c.rejected + c.resyncs >= 1


@PROPS
@given(st.binary(max_size=80), st.lists(frames, min_size=2, max_size=4))
def test_decoding_resynchronises_within_one_frame_after_arbitrary_garbage(
    noise: bytes, items: list[Item]
) -> None:
    got = values(node.Decoder().feed(noise + b"".join(f for f, _ in items)))
    assert got[-(len(items) - 1) :] == [v for _, v in items[1:]]


@PROPS
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_random_bytes_never_raise_and_the_buffer_stays_bounded(parts: list[bytes]) -> None:
    decoder = node.Decoder()
    for part in parts:
        for event in decoder.feed(part):
            assert isinstance(event, Decoded | DecodeError)
        assert len(decoder._buf) <= node.MAX_BUFFER


def test_an_endless_segment_is_dropped_and_the_next_frame_still_decodes() -> None:
    decoder = node.Decoder()
    events = decoder.feed(b"\x01" * (framing.MAX_ENCODED + 50))
    events += decoder.feed(b"\x02" * 10 + framing.encode_readings(0, {"no2": 1.5}))
    assert values(events) == [{"no2": 1.5}]
    assert decoder.counters.resyncs == 1
    assert not [e for e in events if isinstance(e, DecodeError)]


def test_undeclared_keys_are_dropped_and_counted() -> None:
    decoder = node.Decoder()
    events = decoder.feed(framing.encode_readings(0, {"no2": 20.5, "wifi_ssid_hash": 7}))
    assert values(events) == [{"no2": 20.5}]
    assert decoder.counters.extra["undeclared_keys"] == 1


def test_sequence_gaps_are_counted_and_wrap_is_not_a_gap() -> None:
    decoder = node.Decoder()
    for seq in (254, 255, 0, 1, 5):
        decoder.feed(framing.encode_readings(seq, {"humidity": 50}))
    assert decoder.counters.extra["seq_gaps"] == 1
    assert decoder.counters.frames_ok == 5


def test_unknown_message_type_and_version_are_rejected() -> None:
    decoder = node.Decoder()
    wrong_type = framing.encode_frame(framing.encode_message(9, 0, b"no2=1"))
    wrong_version = framing.encode_frame(bytes([2, 1, 0]) + b"no2=1")
    reasons = [e.reason for e in decoder.feed(wrong_type + wrong_version) if isinstance(e, DecodeError)]
    assert reasons == ["unknown_type", "unsupported_version"]
    assert decoder.counters.rejected == 2


def test_decode_error_details_do_not_depend_on_the_payload() -> None:
    def details(frame: bytes) -> list[str]:
        bad = frame[:-2] + bytes([frame[-2] ^ 1]) + frame[-1:]
        return [e.detail for e in node.Decoder().feed(bad) if isinstance(e, DecodeError)]

    a = framing.encode_readings(1, {"no2": 11.5})
    b = framing.encode_readings(1, {"no2": 99.25})
    assert details(a) == details(b) == ["CRC-16 mismatch"]


def test_device_round_trip_gives_exactly_the_sent_values() -> None:
    device = node.Device(random.Random(5), period_s=2.0)
    decoder = node.Decoder()
    events: list[Event] = []
    for step in range(200):
        events += decoder.feed(device.tick(10.0 + step * 0.5))
    assert len(device.sent) >= 40
    assert values(events) == device.sent
    assert not [e for e in events if isinstance(e, DecodeError)]
    assert "seq_gaps" not in decoder.counters.extra
