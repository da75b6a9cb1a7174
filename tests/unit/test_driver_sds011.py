"""SDS011 decoder: stream properties, rejection and counters, warm-up, simulator round trip."""

from __future__ import annotations

import random
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.base import Decoded, DecodeError, Event
from firmware_bridge.drivers import sds011

PROPS = settings(max_examples=200, derandomize=True, database=None, deadline=None)

tenths = st.integers(0, 0xFFFF)
frames = st.tuples(tenths, tenths, st.integers(0, 0xFFFF)).map(
    lambda t: (sds011.encode_frame(t[0], t[1], t[2]), {"pm2_5": t[0] / 10, "pm10": t[1] / 10})
)
# garbage without 0xAA cannot start a frame, so it can never hide an accidental frame
garbage = st.binary(max_size=30).map(lambda b: b.replace(b"\xaa", b""))
cuts = st.lists(st.integers(0, 10_000), max_size=12)
damage = st.tuples(st.sampled_from(["truncate", "corrupt"]), st.integers(0, 10_000),
                   st.integers(1, 255))  # fmt: skip


def chunks(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(marks)]


def feed(decoder: sds011.Decoder, parts: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for part in parts:
        events += decoder.feed(part)
    return events


def values(events: list[Event]) -> list[dict[str, object]]:
    return [dict(e.values) for e in events if isinstance(e, Decoded)]


def damaged(frame: bytes, kind: str, where: int, xor: int) -> bytes:
    if kind == "truncate":
        return frame[: 1 + where % (len(frame) - 1)]
    i = where % len(frame)
    if i == 1 and frame[1] ^ xor == sds011.REPLY:
        xor ^= 0x01  # C0 -> C5 makes a valid reply: the checksum does not cover the command byte
    return frame[:i] + bytes([frame[i] ^ xor]) + frame[i + 1 :]


@PROPS
@given(st.lists(frames, min_size=1, max_size=6), cuts)
def test_frames_decode_the_same_whole_bytewise_and_in_random_splits(
    items: list[tuple[bytes, dict[str, float]]], points: list[int]
) -> None:
    stream = b"".join(f for f, _ in items)
    for parts in ([stream], [bytes([b]) for b in stream], chunks(stream, points)):
        decoder = sds011.Decoder()
        events = feed(decoder, parts)
        assert values(events) == [v for _, v in items]
        assert not [e for e in events if isinstance(e, DecodeError)]
        assert decoder.counters.frames_ok == len(items)


@PROPS
@given(st.lists(st.tuples(garbage, frames), min_size=1, max_size=6), cuts)
def test_garbage_between_frames_is_skipped_and_counted(
    items: list[tuple[bytes, tuple[bytes, dict[str, float]]]], points: list[int]
) -> None:
    stream = b"".join(g + f for g, (f, _) in items)
    decoder = sds011.Decoder()
    assert values(feed(decoder, chunks(stream, points))) == [v for _, (_, v) in items]
    if any(g for g, _ in items):
        assert decoder.counters.resyncs >= 1


@PROPS
@given(st.lists(st.tuples(frames, st.none() | damage), min_size=1, max_size=8), frames, cuts)
def test_truncated_and_corrupt_frames_are_rejected_counted_and_hide_no_good_frame(
    items: list[tuple[tuple[bytes, dict[str, float]], tuple[str, int, int] | None]],
    last: tuple[bytes, dict[str, float]],
    points: list[int],
) -> None:
    items = [*items, (last, None)]  # a damaged frame is only known bad once more bytes follow
    stream = b"".join(f if d is None else damaged(f, *d) for (f, _), d in items)
    decoder = sds011.Decoder()
    assert values(feed(decoder, chunks(stream, points))) == [v for (_, v), d in items if d is None]
    c = decoder.counters
    if any(d is not None for _, d in items):
        assert c.checksum_errors + c.rejected + c.resyncs >= 1


@PROPS
@given(st.binary(max_size=80), st.lists(frames, min_size=2, max_size=4))
def test_decoding_resynchronises_within_one_frame_after_arbitrary_garbage(
    noise: bytes, items: list[tuple[bytes, dict[str, float]]]
) -> None:
    got = values(sds011.Decoder().feed(noise + b"".join(f for f, _ in items)))
    assert got[-(len(items) - 1) :] == [v for _, v in items[1:]]


@PROPS
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_random_bytes_never_raise_and_the_buffer_stays_bounded(parts: list[bytes]) -> None:
    decoder = sds011.Decoder()
    for part in parts:
        for event in decoder.feed(part):
            assert isinstance(event, Decoded | DecodeError)
        assert len(decoder._buf) <= sds011.MAX_BUFFER


def test_decode_error_details_do_not_depend_on_the_payload() -> None:
    def details(frame: bytes) -> list[str]:
        bad = frame[:8] + bytes([frame[8] ^ 1]) + frame[9:]
        return [e.detail for e in sds011.Decoder().feed(bad) if isinstance(e, DecodeError)]

    a, b = sds011.encode_frame(12, 34, 0x1111), sds011.encode_frame(999, 1, 0xBEEF)
    assert details(a) == details(b) == ["frame checksum mismatch"]


def test_device_id_is_not_published() -> None:
    (event,) = sds011.Decoder().feed(sds011.encode_frame(123, 456, 0xA160))
    assert isinstance(event, Decoded)
    assert set(event.values) == {"pm2_5", "pm10"}
    assert {f.key for f in sds011.CATALOGUE.fields} == {"pm2_5", "pm10"}


def test_command_replies_are_counted_not_emitted() -> None:
    decoder = sds011.Decoder()
    assert decoder.feed(sds011.encode_reply(sds011.CMD_FIRMWARE, 15, 7, 10)) == []
    assert decoder.counters.extra["replies"] == 1


def test_frames_after_a_work_echo_in_active_mode_are_flagged_warm_up() -> None:
    decoder = sds011.Decoder()
    decoder.feed(sds011.encode_reply(sds011.CMD_REPORT_MODE, 1, 0))
    decoder.feed(sds011.encode_reply(sds011.CMD_SLEEP_WORK, 1, 1))
    events = decoder.feed(sds011.encode_frame(10, 20) * (sds011.WARMUP_FRAMES + 2))
    flags = [e.flags for e in events if isinstance(e, Decoded)]
    assert flags == [("warm_up",)] * sds011.WARMUP_FRAMES + [(), ()]


def test_query_mode_frames_are_not_flagged_because_the_poller_waits_out_the_warm_up() -> None:
    decoder = sds011.Decoder()
    decoder.feed(sds011.encode_reply(sds011.CMD_SLEEP_WORK, 1, 1))
    decoder.feed(sds011.encode_reply(sds011.CMD_REPORT_MODE, 1, 1))
    events = decoder.feed(sds011.encode_frame(10, 20))
    assert [e.flags for e in events if isinstance(e, Decoded)] == [()]
    poller = sds011.Poller({"mode": "query", "interval_s": 5, "warmup_s": 30})
    assert sds011.CMD_QUERY not in poller.on_open(0.0)
    assert [poller.due(t) for t in (1.0, 29.0)] == [[], []]
    assert poller.due(30.0) == [sds011.CMD_QUERY]


def test_duty_cycle_sleeps_and_wakes_the_sensor_and_close_puts_it_to_sleep() -> None:
    poller = sds011.Poller({"duty_cycle": {"work_s": 30, "sleep_s": 270}})
    assert poller.on_open(0.0) == [sds011.CMD_WORK, sds011.CMD_ACTIVE, sds011.CMD_CONTINUOUS]
    assert poller.due(29.0) == []
    assert poller.due(30.0) == [sds011.CMD_SLEEP]
    assert poller.due(299.0) == []
    assert poller.due(300.0) == [sds011.CMD_WORK]
    assert poller.on_close() == [sds011.CMD_SLEEP]


def test_poller_rejects_an_unknown_mode_naming_the_option() -> None:
    try:
        sds011.Poller({"mode": "passive"})
    except ValueError as err:
        assert "options.mode" in str(err)
    else:
        raise AssertionError("no error")


def run_device(options: dict[str, object], seconds: int, seed: int) -> list[Decoded]:
    device = sds011.Device(random.Random(seed))
    poller = sds011.Poller(options)
    decoder = sds011.Decoder()
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
    assert not [e for e in events if isinstance(e, DecodeError)]
    return [e for e in events if isinstance(e, Decoded)]


def test_device_round_trip_in_active_mode_flags_the_first_frames_after_wake() -> None:
    decoded = run_device({}, 45, seed=1)
    assert [d.flags for d in decoded[: sds011.WARMUP_FRAMES]] == [("warm_up",)] * 30
    assert all(d.flags == () for d in decoded[sds011.WARMUP_FRAMES :])


def test_device_round_trip_in_query_mode_with_duty_cycle_gives_exactly_the_sent_values() -> None:
    options = {"mode": "query", "interval_s": 5, "duty_cycle": {"work_s": 45, "sleep_s": 30}}
    decoded = run_device(options, 200, seed=2)
    assert all(d.flags == () for d in decoded)


def test_device_round_trip_in_active_mode_with_duty_cycle_gives_exactly_the_sent_values() -> None:
    run_device({"duty_cycle": {"work_s": 40, "sleep_s": 20}}, 150, seed=3)
