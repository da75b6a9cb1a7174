"""SenseAir S8 over Modbus RTU: stream properties, status flags, rejection, round trip."""

from __future__ import annotations

import random
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import modbus
from firmware_bridge.base import Decoded, DecodeError, Event
from firmware_bridge.drivers import senseair_s8 as s8

PROPS = settings(max_examples=200, derandomize=True, database=None, deadline=None)

Item = tuple[bytes, tuple[dict[str, int], tuple[str, ...]]]


def _response(address: int, regs: list[int]) -> Item:
    data = b"".join(r.to_bytes(2, "big") for r in regs)
    co2 = int.from_bytes(data[-2:], "big", signed=True)
    flags = ("sensor_fault",) if len(regs) == 4 and regs[0] & 0x7F else ()
    return modbus.encode_response(address, 4, data), ({"co2": co2}, flags)


reg = st.integers(0, 0xFFFF)
addresses = st.sampled_from([0xFE, 0x68, 0x01])  # not 0x04/0x84, which garbage leaves out
frames = st.tuples(addresses, st.lists(reg, min_size=4, max_size=4) | st.lists(reg, min_size=1, max_size=1)).map(
    lambda t: _response(*t)
)
# any byte may be an address, so garbage leaves out the function codes 0x04 and 0x84 instead:
# then no frame can start inside it and it can never hide an accidental frame
garbage = st.binary(max_size=30).map(lambda b: b.replace(b"\x04", b"").replace(b"\x84", b""))
cuts = st.lists(st.integers(0, 10_000), max_size=12)
damage = st.tuples(st.sampled_from(["truncate", "corrupt"]), st.integers(0, 10_000),
                   st.integers(1, 255))  # fmt: skip


def chunks(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(marks)]


def feed(decoder: s8.Decoder, parts: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for part in parts:
        events += decoder.feed(part)
    return events


def readings(events: list[Event]) -> list[tuple[dict[str, object], tuple[str, ...]]]:
    return [(dict(e.values), e.flags) for e in events if isinstance(e, Decoded)]


def damaged(frame: bytes, kind: str, where: int, xor: int) -> bytes:
    if kind == "truncate":
        return frame[: 1 + where % (len(frame) - 1)]
    i = where % len(frame)
    return frame[:i] + bytes([frame[i] ^ xor]) + frame[i + 1 :]


@PROPS
@given(st.lists(frames, min_size=1, max_size=6), cuts)
def test_frames_decode_the_same_whole_bytewise_and_in_random_splits(
    items: list[Item], points: list[int]
) -> None:
    stream = b"".join(f for f, _ in items)
    for parts in ([stream], [bytes([b]) for b in stream], chunks(stream, points)):
        decoder = s8.Decoder()
        events = feed(decoder, parts)
        assert readings(events) == [v for _, v in items]
        assert not [e for e in events if isinstance(e, DecodeError)]
        assert decoder.counters.frames_ok == len(items)


@PROPS
@given(st.lists(st.tuples(garbage, frames), min_size=1, max_size=6), cuts)
def test_garbage_between_frames_is_skipped_and_counted(
    items: list[tuple[bytes, Item]], points: list[int]
) -> None:
    stream = b"".join(g + f for g, (f, _) in items)
    decoder = s8.Decoder()
    assert readings(feed(decoder, chunks(stream, points))) == [v for _, (_, v) in items]
    if any(g for g, _ in items):
        assert decoder.counters.resyncs >= 1


@PROPS
@given(st.lists(st.tuples(frames, st.none() | damage), min_size=1, max_size=8), frames, cuts)
def test_truncated_and_corrupt_frames_are_rejected_counted_and_hide_no_good_frame(
    items: list[tuple[Item, tuple[str, int, int] | None]], last: Item, points: list[int]
) -> None:
    items = [*items, (last, None)]  # a damaged frame is only known bad once more bytes follow
    stream = b"".join(f if d is None else damaged(f, *d) for (f, _), d in items)
    decoder = s8.Decoder()
    got = readings(feed(decoder, chunks(stream, points)))
    assert got == [v for (_, v), d in items if d is None]
    c = decoder.counters
    if any(d is not None for _, d in items):
        assert c.checksum_errors + c.rejected + c.resyncs >= 1


@PROPS
@given(st.binary(max_size=80), st.lists(frames, min_size=2, max_size=4))
def test_decoding_resynchronises_within_one_frame_after_arbitrary_garbage(
    noise: bytes, items: list[Item]
) -> None:
    got = readings(s8.Decoder().feed(noise + b"".join(f for f, _ in items)))
    assert got[-(len(items) - 1) :] == [v for _, v in items[1:]]


@PROPS
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_random_bytes_never_raise_and_the_buffer_stays_bounded(parts: list[bytes]) -> None:
    decoder = s8.Decoder()
    for part in parts:
        for event in decoder.feed(part):
            assert isinstance(event, Decoded | DecodeError)
        assert len(decoder._buf) <= modbus.MAX_BUFFER


def test_the_published_frame_with_a_wrong_crc_is_rejected() -> None:
    decoder = s8.Decoder()
    events = decoder.feed(bytes.fromhex("FE 04 02 03 88 D5 C5"))
    assert [e.reason for e in events if isinstance(e, DecodeError)] == ["checksum"]
    assert readings(events) == []
    assert decoder.counters.checksum_errors == 1
    assert readings(decoder.feed(bytes.fromhex("FE 04 02 03 88 AD B2"))) == [({"co2": 904}, ())]


def test_meter_status_error_bits_flag_sensor_fault() -> None:
    ok, _ = _response(0xFE, [0x0000, 0, 0, 400])
    bad, _ = _response(0xFE, [0x0010, 0, 0, 400])
    beyond_mask, _ = _response(0xFE, [0x0100, 0, 0, 400])
    got = readings(s8.Decoder().feed(ok + bad + beyond_mask))
    assert [flags for _, flags in got] == [(), ("sensor_fault",), ()]


def test_an_exception_response_is_a_decode_error() -> None:
    decoder = s8.Decoder()
    (event,) = decoder.feed(modbus.encode_exception(0xFE, 4, 2))
    assert isinstance(event, DecodeError)
    assert event.reason == "modbus_exception"
    assert decoder.counters.rejected == 1


def test_decode_error_details_do_not_depend_on_the_payload() -> None:
    def details(frame: bytes) -> list[str]:
        bad = frame[:-1] + bytes([frame[-1] ^ 1])
        return [e.detail for e in s8.Decoder().feed(bad + frame) if isinstance(e, DecodeError)]

    a, b = _response(0xFE, [0, 0, 0, 400])[0], _response(0xFE, [7, 8, 9, 1234])[0]
    assert details(a) == details(b) == ["Modbus CRC mismatch"]


def test_poller_reads_all_four_registers_by_default_or_only_co2() -> None:
    poller = s8.Poller({})
    assert poller.on_open(0.0) == [bytes.fromhex("FE 04 00 00 00 04 E5 C6")]
    assert poller.due(3.9) == []
    assert poller.due(4.0) == [bytes.fromhex("FE 04 00 00 00 04 E5 C6")]
    co2_only = s8.Poller({"read_status": False, "interval_s": 2})
    assert co2_only.on_open(0.0) == [bytes.fromhex("FE 04 00 03 00 01 D5 C5")]


def run_device(options: dict[str, object], seed: int, fault: bool = False) -> list[Decoded]:
    device = s8.Device(random.Random(seed))
    device.fault = fault
    poller = s8.Poller(options)
    decoder = s8.Decoder()
    events: list[Event] = []
    t = 100.0
    for cmd in poller.on_open(t):
        events += decoder.feed(device.receive(cmd, t))
    for step in range(400):
        t = 100.0 + step * 0.25
        for cmd in poller.due(t):
            events += decoder.feed(device.receive(cmd, t))
        events += decoder.feed(device.tick(t))
    assert len(device.sent) >= 20
    assert [dict(v) for v, _ in readings(events)] == device.sent
    assert not [e for e in events if isinstance(e, DecodeError)]
    return [e for e in events if isinstance(e, Decoded)]


def test_device_round_trip_reading_status_and_co2() -> None:
    assert all(d.flags == () for d in run_device({}, seed=1))


def test_device_round_trip_reading_co2_only() -> None:
    run_device({"read_status": False, "address": 0x68}, seed=2)


def test_device_round_trip_with_a_faulty_sensor_flags_every_reading() -> None:
    assert all(d.flags == ("sensor_fault",) for d in run_device({}, seed=3, fault=True))
