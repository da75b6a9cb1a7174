"""PMS5003 decoder: stream properties, rejection and counters, simulator round trip."""

from __future__ import annotations

import random
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.base import Decoded, DecodeError, Event
from firmware_bridge.drivers import pms5003

PROPS = settings(max_examples=200, derandomize=True, database=None, deadline=None)

word = st.integers(0, 0xFFFF)
frames = st.fixed_dictionaries({w: word for w in pms5003.WORDS}).map(
    lambda words: (pms5003.encode_frame(words), {k: words[k] for k in pms5003.PUBLISHED})
)
# garbage without 0x42 cannot start a header, so it can never hide an accidental frame
garbage = st.binary(max_size=40).map(lambda b: b.replace(b"\x42", b""))
cuts = st.lists(st.integers(0, 10_000), max_size=12)


def chunks(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(marks)]


def feed(decoder: pms5003.Decoder, parts: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for part in parts:
        events += decoder.feed(part)
    return events


def values(events: list[Event]) -> list[dict[str, object]]:
    return [dict(e.values) for e in events if isinstance(e, Decoded)]


@PROPS
@given(st.lists(frames, min_size=1, max_size=6), cuts)
def test_frames_decode_the_same_whole_bytewise_and_in_random_splits(
    items: list[tuple[bytes, dict[str, int]]], points: list[int]
) -> None:
    stream = b"".join(f for f, _ in items)
    expected = [v for _, v in items]
    for parts in ([stream], [bytes([b]) for b in stream], chunks(stream, points)):
        decoder = pms5003.Decoder()
        events = feed(decoder, parts)
        assert values(events) == expected
        assert not [e for e in events if isinstance(e, DecodeError)]
        assert decoder.counters.frames_ok == len(items)
        assert decoder.counters.bytes == len(stream)


@PROPS
@given(st.lists(st.tuples(garbage, frames), min_size=1, max_size=6), cuts)
def test_garbage_between_frames_is_skipped_and_counted(
    items: list[tuple[bytes, tuple[bytes, dict[str, int]]]], points: list[int]
) -> None:
    stream = b"".join(g + f for g, (f, _) in items)
    decoder = pms5003.Decoder()
    assert values(feed(decoder, chunks(stream, points))) == [v for _, (_, v) in items]
    if any(g for g, _ in items):
        assert decoder.counters.resyncs >= 1


damage = st.tuples(st.sampled_from(["truncate", "corrupt"]), st.integers(0, 10_000),
                   st.integers(1, 255))  # fmt: skip


def damaged(frame: bytes, kind: str, where: int, xor: int) -> bytes:
    if kind == "truncate":
        return frame[: 1 + where % (len(frame) - 1)]
    i = where % len(frame)
    return frame[:i] + bytes([frame[i] ^ xor]) + frame[i + 1 :]


@PROPS
@given(st.lists(st.tuples(frames, st.none() | damage), min_size=1, max_size=8), frames, cuts)
def test_truncated_and_corrupt_frames_are_rejected_counted_and_hide_no_good_frame(
    items: list[tuple[tuple[bytes, dict[str, int]], tuple[str, int, int] | None]],
    last: tuple[bytes, dict[str, int]],
    points: list[int],
) -> None:
    items = [*items, (last, None)]  # a damaged frame is only known bad once more bytes follow
    stream = b"".join(f if d is None else damaged(f, *d) for (f, _), d in items)
    decoder = pms5003.Decoder()
    assert values(feed(decoder, chunks(stream, points))) == [v for (_, v), d in items if d is None]
    c = decoder.counters
    if any(d is not None for _, d in items):
        assert c.checksum_errors + c.rejected + c.resyncs >= 1


@PROPS
@given(st.binary(max_size=80), st.lists(frames, min_size=2, max_size=4))
def test_decoding_resynchronises_within_one_frame_after_arbitrary_garbage(
    noise: bytes, items: list[tuple[bytes, dict[str, int]]]
) -> None:
    decoder = pms5003.Decoder()
    got = values(decoder.feed(noise + b"".join(f for f, _ in items)))
    assert got[-(len(items) - 1) :] == [v for _, v in items[1:]]


@PROPS
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_random_bytes_never_raise_and_the_buffer_stays_bounded(parts: list[bytes]) -> None:
    decoder = pms5003.Decoder()
    for part in parts:
        for event in decoder.feed(part):
            assert isinstance(event, Decoded | DecodeError)
        assert len(decoder._buf) <= pms5003.MAX_BUFFER


def test_decode_error_details_do_not_depend_on_the_payload() -> None:
    a = pms5003.encode_frame({"pm2_5": 11, "nc0_3": 1234})
    b = pms5003.encode_frame({"pm2_5": 99, "nc0_3": 4321})

    def details(frame: bytes) -> list[str]:
        bad = frame[:-1] + bytes([frame[-1] ^ 1])
        return [e.detail for e in pms5003.Decoder().feed(bad) if isinstance(e, DecodeError)]

    assert details(a) == details(b) == ["frame checksum mismatch"]


def test_command_replies_are_counted_not_emitted() -> None:
    decoder = pms5003.Decoder()
    assert decoder.feed(pms5003.encode_reply(0xE1, 0)) == []
    assert decoder.counters.extra["replies"] == 1


def run_device(driver_options: dict[str, object], seconds: int, seed: int) -> None:
    rng = random.Random(seed)
    device = pms5003.Device(rng)
    poller = pms5003.Poller(driver_options)
    decoder = pms5003.Decoder()
    events: list[Event] = []
    t = 1000.0
    for cmd in poller.on_open(t):
        events += decoder.feed(device.receive(cmd, t))
    for step in range(seconds * 4):
        t = 1000.0 + step * 0.25
        for cmd in poller.due(t):
            events += decoder.feed(device.receive(cmd, t))
        events += decoder.feed(device.tick(t))
    for cmd in poller.on_close():
        events += decoder.feed(device.receive(cmd, t))
    assert device.sent, "the device sent nothing"
    assert values(events) == device.sent


def test_device_round_trip_in_active_mode_gives_exactly_the_sent_values() -> None:
    run_device({}, 30, seed=1)


def test_device_round_trip_in_passive_mode_with_duty_cycle_gives_exactly_the_sent_values() -> None:
    run_device({"mode": "passive", "interval_s": 2, "duty_cycle": {"work_s": 10, "sleep_s": 5}},
               60, seed=2)  # fmt: skip
