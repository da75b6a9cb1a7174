"""SPS30 SHDLC decoder: stuffing, stream properties, device errors, simulator round trip."""

from __future__ import annotations

import random
import struct
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.base import Decoded, DecodeError, Event
from firmware_bridge.drivers import sps30

PROPS = settings(max_examples=200, derandomize=True, database=None, deadline=None)

f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


def _frame(floats: list[float]) -> tuple[bytes, dict[str, float]]:
    data = struct.pack(">10f", *floats)
    expected = {k: round(v, 3) for k, v in zip(sps30.KEYS, struct.unpack(">10f", data), strict=True)}
    return sps30.encode_response(sps30.CMD_READ, data), expected


frames = st.lists(f32, min_size=10, max_size=10).map(_frame)
# garbage without 0x7E cannot open a frame, so it can never hide an accidental frame
garbage = st.binary(max_size=30).map(lambda b: b.replace(b"\x7e", b""))
cuts = st.lists(st.integers(0, 10_000), max_size=12)
damage = st.tuples(st.sampled_from(["truncate", "corrupt"]), st.integers(0, 10_000),
                   st.integers(1, 255))  # fmt: skip


def chunks(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(marks)]


def feed(decoder: sps30.Decoder, parts: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for part in parts:
        events += decoder.feed(part)
    return events


def values(events: list[Event]) -> list[dict[str, object]]:
    return [dict(e.values) for e in events if isinstance(e, Decoded)]


def damaged(frame: bytes, kind: str, where: int, xor: int) -> bytes:
    if kind == "truncate":
        # keep flag + one byte (a lone flag is not a frame) and lose at least the checksum:
        # losing only the closing flag leaves an intact frame, closed by the next one's flag
        return frame[: 2 + where % (len(frame) - 3)]
    i = where % len(frame)
    return frame[:i] + bytes([frame[i] ^ xor]) + frame[i + 1 :]


def test_destuffing_is_one_left_to_right_pass() -> None:
    assert sps30.destuff(bytes.fromhex("7D 5D 31")) == bytes.fromhex("7D 31")
    # chained replace() would turn the already-destuffed 7D 31 into 11
    assert bytes.fromhex("7D 5D 31").replace(b"\x7d\x5d", b"\x7d").replace(b"\x7d\x31", b"\x11") == b"\x11"


@PROPS
@given(st.binary(max_size=300))
def test_stuffing_round_trips_and_never_leaves_a_flag(data: bytes) -> None:
    stuffed = sps30.stuff(data)
    assert 0x7E not in stuffed
    assert sps30.destuff(stuffed) == data


def test_bad_and_dangling_escapes_are_rejected() -> None:
    assert sps30.destuff(b"\x7d\x00") is None
    assert sps30.destuff(b"\x00\x7d") is None


@PROPS
@given(st.lists(frames, min_size=1, max_size=5), cuts)
def test_frames_decode_the_same_whole_bytewise_and_in_random_splits(
    items: list[tuple[bytes, dict[str, float]]], points: list[int]
) -> None:
    stream = b"".join(f for f, _ in items)
    for parts in ([stream], [bytes([b]) for b in stream], chunks(stream, points)):
        decoder = sps30.Decoder()
        events = feed(decoder, parts)
        assert values(events) == [v for _, v in items]
        assert not [e for e in events if isinstance(e, DecodeError)]
        assert decoder.counters.frames_ok == len(items)


@PROPS
@given(st.lists(st.tuples(garbage, frames), min_size=1, max_size=5), cuts)
def test_garbage_between_frames_is_skipped_and_counted(
    items: list[tuple[bytes, tuple[bytes, dict[str, float]]]], points: list[int]
) -> None:
    stream = b"".join(g + f for g, (f, _) in items)
    decoder = sps30.Decoder()
    assert values(feed(decoder, chunks(stream, points))) == [v for _, (_, v) in items]
    c = decoder.counters
    if any(g for g, _ in items):
        assert c.resyncs + c.rejected + c.checksum_errors >= 1


@PROPS
@given(st.lists(st.tuples(frames, st.none() | damage), min_size=1, max_size=6), frames, cuts)
def test_truncated_and_corrupt_frames_are_rejected_counted_and_hide_no_good_frame(
    items: list[tuple[tuple[bytes, dict[str, float]], tuple[str, int, int] | None]],
    last: tuple[bytes, dict[str, float]],
    points: list[int],
) -> None:
    items = [*items, (last, None)]  # a damaged frame is only known bad once more bytes follow
    stream = b"".join(f if d is None else damaged(f, *d) for (f, _), d in items)
    decoder = sps30.Decoder()
    assert values(feed(decoder, chunks(stream, points))) == [v for (_, v), d in items if d is None]
    c = decoder.counters
    if any(d is not None for _, d in items):
        assert c.checksum_errors + c.rejected + c.resyncs >= 1


@PROPS
@given(st.binary(max_size=80), st.lists(frames, min_size=2, max_size=4))
def test_decoding_resynchronises_within_one_frame_after_arbitrary_garbage(
    noise: bytes, items: list[tuple[bytes, dict[str, float]]]
) -> None:
    got = values(sps30.Decoder().feed(noise + b"".join(f for f, _ in items)))
    assert got[-(len(items) - 1) :] == [v for _, v in items[1:]]


@PROPS
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_random_bytes_never_raise_and_the_buffer_stays_bounded(parts: list[bytes]) -> None:
    decoder = sps30.Decoder()
    for part in parts:
        for event in decoder.feed(part):
            assert isinstance(event, Decoded | DecodeError)
        assert len(decoder._buf) <= sps30.MAX_BUFFER


def test_an_endless_segment_is_dropped_and_the_next_frame_still_decodes() -> None:
    decoder = sps30.Decoder()
    frame, expected = _frame([1.0] * 10)
    events = decoder.feed(b"\x7e" + b"\x01" * (sps30.MAX_SEGMENT + 10))
    events += decoder.feed(frame)
    assert values(events) == [expected]
    assert decoder.counters.resyncs >= 1


def test_a_non_zero_state_byte_is_a_device_error() -> None:
    decoder = sps30.Decoder()
    (event,) = decoder.feed(bytes.fromhex("7E 00 00 43 00 BC 7E"))
    assert isinstance(event, DecodeError)
    assert event.reason == "device_error"
    assert decoder.counters.rejected == 1


def test_an_empty_read_reply_means_no_new_data_and_yields_nothing() -> None:
    decoder = sps30.Decoder()
    assert decoder.feed(bytes.fromhex("7E 00 03 00 00 FC 7E")) == []
    assert decoder.counters.extra["no_new_data"] == 1


def test_command_acks_are_counted_not_emitted() -> None:
    decoder = sps30.Decoder()
    assert decoder.feed(sps30.encode_response(sps30.CMD_START)) == []
    assert decoder.counters.extra["replies"] == 1


def test_integer_format_replies_decode_with_typical_size_in_micrometres() -> None:
    data = struct.pack(">10H", 1, 2, 3, 4, 5, 6, 7, 8, 9, 835)
    (event,) = sps30.Decoder().feed(sps30.encode_response(sps30.CMD_READ, data))
    assert isinstance(event, Decoded)
    assert event.values["pm2_5"] == 2
    assert event.values["typical_size"] == 0.835


def test_decode_error_details_do_not_depend_on_the_payload() -> None:
    def details(frame: bytes) -> list[str]:
        bad = frame[:-2] + bytes([frame[-2] ^ 0x01]) + frame[-1:]
        return [e.detail for e in sps30.Decoder().feed(bad) if isinstance(e, DecodeError)]

    a, b = _frame([1.5] * 10)[0], _frame([99.25] * 10)[0]
    assert details(a) == details(b) == ["SHDLC checksum mismatch"]


def test_poller_starts_reads_every_interval_and_stops() -> None:
    poller = sps30.Poller({"interval_s": 2})
    assert poller.on_open(0.0) == [sps30.CMD_START_FLOAT]
    assert poller.due(1.0) == []
    assert poller.due(2.0) == [sps30.CMD_READ_VALUES]
    assert poller.due(3.0) == []
    assert poller.on_close() == [sps30.CMD_STOP_MEASUREMENT]


def test_device_round_trip_gives_exactly_the_sent_values() -> None:
    device = sps30.Device(random.Random(4))
    poller = sps30.Poller({"interval_s": 0.5})
    decoder = sps30.Decoder()
    events: list[Event] = []
    t = 500.0
    for cmd in poller.on_open(t):
        events += decoder.feed(device.receive(cmd, t))
    for step in range(200):
        t = 500.0 + step * 0.25
        for cmd in poller.due(t):
            events += decoder.feed(device.receive(cmd, t))
    for cmd in poller.on_close():
        events += decoder.feed(device.receive(cmd, t))
    assert len(device.sent) >= 40
    assert values(events) == device.sent
    assert not [e for e in events if isinstance(e, DecodeError)]
    assert decoder.counters.extra["no_new_data"] > 0
