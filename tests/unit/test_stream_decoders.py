"""Stream properties every serial decoder must have, checked for each driver in CASES: the same
readings whole, byte by byte and in random splits; garbage between frames skipped and counted;
truncated and corrupt frames rejected without hiding a good one; resynchronisation after noise;
random bytes never raise and never grow the buffer beyond its bound.

Driver-specific behaviour (vectors, commands, pollers, simulators) is in test_driver_<name>.py.
"""

from __future__ import annotations

import struct
from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge import framing, modbus
from firmware_bridge.base import Decoded, DecodeError, Event, FrameCounters
from firmware_bridge.drivers import eastron_sdm as sdm
from firmware_bridge.drivers import node, pms5003, sds011, sps30
from firmware_bridge.drivers import senseair_s8 as s8
from tests.unit.stream_harness import (
    PROPS,
    StreamCase,
    chunks,
    cuts,
    damage,
    damaged,
    errors,
    feed,
    garbage_without,
    splits,
)

# --- valid frames and what each decoder must report for them ---------------------------------

word = st.integers(0, 0xFFFF)
pms5003_frames = st.fixed_dictionaries({w: word for w in pms5003.WORDS}).map(
    lambda words: (pms5003.encode_frame(words), {k: words[k] for k in pms5003.PUBLISHED})
)

sds011_frames = st.tuples(word, word, word).map(
    lambda t: (sds011.encode_frame(t[0], t[1], t[2]), {"pm2_5": t[0] / 10, "pm10": t[1] / 10})
)


def sds011_damaged(frame: bytes, kind: str, where: int, xor: int) -> bytes:
    if kind == "corrupt" and where % len(frame) == 1 and frame[1] ^ xor == sds011.REPLY:
        xor ^= 0x01  # C0 -> C5 makes a valid reply: the checksum does not cover the command byte
    return damaged(frame, kind, where, xor)


def sps30_frame(floats: list[float]) -> tuple[bytes, dict[str, float]]:
    data = struct.pack(">10f", *floats)
    decoded = struct.unpack(">10f", data)
    expected = {k: round(v, 3) for k, v in zip(sps30.KEYS, decoded, strict=True)}
    return sps30.encode_response(sps30.CMD_READ, data), expected


f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
sps30_frames = st.lists(f32, min_size=10, max_size=10).map(sps30_frame)


def s8_response(address: int, regs: list[int]) -> tuple[bytes, object]:
    data = b"".join(r.to_bytes(2, "big") for r in regs)
    co2 = int.from_bytes(data[-2:], "big", signed=True)
    flags = ("sensor_fault",) if len(regs) == 4 and regs[0] & 0x7F else ()
    return modbus.encode_response(address, 4, data), ({"co2": co2}, flags)


def s8_readings(events: list[Event]) -> list[tuple[dict[str, object], tuple[str, ...]]]:
    return [(dict(e.values), e.flags) for e in events if isinstance(e, Decoded)]


# any byte may be a Modbus address, so garbage leaves out the function codes 0x04 and 0x84
# instead, and frames use addresses other than those two
s8_frames = st.tuples(
    st.sampled_from([0xFE, 0x68, 0x01]),
    st.lists(word, min_size=4, max_size=4) | st.lists(word, min_size=1, max_size=1),
).map(lambda t: s8_response(*t))

SDM_BLOCKS = sorted(sdm.BLOCKS_BY_BYTES.values(), key=lambda b: b.start)


def sdm_response(address: int, block: sdm.Block, floats: list[float]) -> tuple[bytes, object]:
    data = struct.pack(f">{block.count // 2}f", *floats[: block.count // 2])
    bits = {key: data[2 * (reg - block.start) : 2 * (reg - block.start) + 4]
            for key, reg in block.fields}  # fmt: skip
    return modbus.encode_response(address, 4, data), bits


def sdm_bits(events: list[Event]) -> list[dict[str, bytes]]:
    """Decoded values as float32 bit patterns: the decoder's shortest decimal must map back."""
    return [{k: struct.pack(">f", v) for k, v in e.values.items()}
            for e in events if isinstance(e, Decoded)]  # fmt: skip


sdm_frames = st.tuples(
    st.sampled_from([1, 2, 17, 247]),
    st.sampled_from(SDM_BLOCKS),
    st.lists(st.floats(width=32, allow_nan=False), min_size=7, max_size=7),
).map(lambda t: sdm_response(*t))

number = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**9), 10**9)
node_frames = st.tuples(
    st.integers(0, 255), st.dictionaries(st.sampled_from(sorted(node.KEYS)), number, min_size=1)
).map(lambda t: (framing.encode_readings(t[0], t[1]), t[1]))

# Framed protocols (SHDLC, COBS): a truncation keeps the opening delimiter and one byte and
# loses at least the last checksum byte; losing only the closing delimiter leaves an intact
# frame, closed by the next frame's opening one.
keep_delimiter = partial(damaged, keep=2, lose=2)

CASES = [
    StreamCase("pms5003", pms5003.Decoder, pms5003_frames, garbage_without(0x42, max_size=40),
               pms5003.MAX_BUFFER),
    StreamCase("sds011", sds011.Decoder, sds011_frames, garbage_without(0xAA),
               sds011.MAX_BUFFER, damaged=sds011_damaged),
    StreamCase("sps30", sps30.Decoder, sps30_frames, garbage_without(0x7E), sps30.MAX_BUFFER,
               damaged=keep_delimiter, garbage_counters=("resyncs", "rejected", "checksum_errors"),
               max_frames=5, max_noise_part=200),
    StreamCase("senseair_s8", s8.Decoder, s8_frames, garbage_without(0x04, 0x84),
               modbus.MAX_BUFFER, observe=s8_readings),
    StreamCase("eastron_sdm", sdm.Decoder, sdm_frames, garbage_without(0x04, 0x84),
               modbus.MAX_BUFFER, observe=sdm_bits, max_frames=5),
    # garbage without 00 stays inside one COBS segment, which fails its CRC or is rejected
    StreamCase("node", node.Decoder, node_frames, garbage_without(0x00), node.MAX_BUFFER,
               damaged=keep_delimiter, garbage_counters=("rejected", "checksum_errors"),
               max_frames=5, max_noise_part=200),
]  # fmt: skip
drivers = pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])


def counted(counters: FrameCounters, names: tuple[str, ...]) -> int:
    return sum(getattr(counters, name) for name in names)


# --- the properties ----------------------------------------------------------------------------


@drivers
@PROPS
@given(st.data(), cuts)
def test_frames_decode_the_same_whole_bytewise_and_in_random_splits(
    case: StreamCase, data: st.DataObject, points: list[int]
) -> None:
    items = data.draw(st.lists(case.frames, min_size=1, max_size=case.max_frames))
    stream = b"".join(f for f, _ in items)
    for parts in splits(stream, points):
        decoder = case.new_decoder()
        events = feed(decoder, parts)
        assert case.observe(events) == [v for _, v in items]
        assert not errors(events)
        assert decoder.counters.frames_ok == len(items)
        assert decoder.counters.bytes == len(stream)


@drivers
@PROPS
@given(st.data(), cuts)
def test_garbage_between_frames_is_dropped_and_counted(
    case: StreamCase, data: st.DataObject, points: list[int]
) -> None:
    items = data.draw(
        st.lists(st.tuples(case.garbage, case.frames), min_size=1, max_size=case.max_frames)
    )
    stream = b"".join(g + f for g, (f, _) in items)
    decoder = case.new_decoder()
    assert case.observe(feed(decoder, chunks(stream, points))) == [v for _, (_, v) in items]
    if any(g for g, _ in items):
        assert counted(decoder.counters, case.garbage_counters) >= 1


@drivers
@PROPS
@given(st.data(), cuts)
def test_truncated_and_corrupt_frames_are_rejected_counted_and_hide_no_good_frame(
    case: StreamCase, data: st.DataObject, points: list[int]
) -> None:
    damaged_or_not = st.tuples(case.frames, st.none() | damage)
    items = data.draw(st.lists(damaged_or_not, min_size=1, max_size=case.max_frames + 2))
    last = data.draw(case.frames)
    items = [*items, (last, None)]  # a damaged frame is only known bad once more bytes follow
    stream = b"".join(f if d is None else case.damaged(f, *d) for (f, _), d in items)
    decoder = case.new_decoder()
    got = case.observe(feed(decoder, chunks(stream, points)))
    assert got == [v for (_, v), d in items if d is None]
    if any(d is not None for _, d in items):
        assert counted(decoder.counters, ("checksum_errors", "rejected", "resyncs")) >= 1


@drivers
@PROPS
@given(st.data(), st.binary(max_size=80))
def test_decoding_resynchronises_within_one_frame_after_arbitrary_garbage(
    case: StreamCase, data: st.DataObject, noise: bytes
) -> None:
    items = data.draw(st.lists(case.frames, min_size=2, max_size=4))
    got = case.observe(case.new_decoder().feed(noise + b"".join(f for f, _ in items)))
    assert got[-(len(items) - 1) :] == [v for _, v in items[1:]]


@drivers
@PROPS
@given(st.data())
def test_random_bytes_never_raise_and_the_buffer_stays_bounded(
    case: StreamCase, data: st.DataObject
) -> None:
    parts = data.draw(st.lists(st.binary(max_size=case.max_noise_part), max_size=20))
    decoder = case.new_decoder()
    for part in parts:
        for event in decoder.feed(part):
            assert isinstance(event, Decoded | DecodeError)
        assert len(decoder._buf) <= case.max_buffer


def test_every_registered_serial_driver_has_a_stream_case() -> None:
    """A new serial driver fails here until its frames get a case above (its simulated-device
    round trip is already covered by test_registry.py from the moment it is registered)."""
    from firmware_bridge.driver import SerialDriver
    from firmware_bridge.drivers import REGISTERED

    registered = {d.name for d in REGISTERED if isinstance(d, SerialDriver)}
    assert registered == {c.name for c in CASES}, registered ^ {c.name for c in CASES}
