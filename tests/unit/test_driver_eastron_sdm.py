"""Eastron SDM over Modbus RTU: block plans, request/response matching, stream properties,
simulator round trip for both models."""

from __future__ import annotations

import random
import struct
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import modbus
from firmware_bridge.base import Decoded, DecodeError, Event
from firmware_bridge.drivers import eastron_sdm as sdm

PROPS = settings(max_examples=200, derandomize=True, database=None, deadline=None)

Item = tuple[bytes, dict[str, bytes]]
BLOCKS = sorted(sdm.BLOCKS_BY_BYTES.values(), key=lambda b: b.start)


def _response(address: int, block: sdm.Block, floats: list[float]) -> Item:
    data = struct.pack(f">{block.count // 2}f", *floats[: block.count // 2])
    bits = {key: data[2 * (reg - block.start) : 2 * (reg - block.start) + 4]
            for key, reg in block.fields}  # fmt: skip
    return modbus.encode_response(address, 4, data), bits


f32 = st.floats(width=32, allow_nan=False)
addresses = st.sampled_from([1, 2, 17, 247])  # not 0x04 or 0x84, which garbage leaves out
frames = st.tuples(addresses, st.sampled_from(BLOCKS), st.lists(f32, min_size=7, max_size=7)).map(
    lambda t: _response(*t)
)
# garbage without the function codes 0x04 / 0x84 cannot start a frame
garbage = st.binary(max_size=30).map(lambda b: b.replace(b"\x04", b"").replace(b"\x84", b""))
cuts = st.lists(st.integers(0, 10_000), max_size=12)
damage = st.tuples(st.sampled_from(["truncate", "corrupt"]), st.integers(0, 10_000),
                   st.integers(1, 255))  # fmt: skip


def chunks(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(marks)]


def feed(decoder: sdm.Decoder, parts: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for part in parts:
        events += decoder.feed(part)
    return events


def bits(events: list[Event]) -> list[dict[str, bytes]]:
    """Decoded values as float32 bit patterns: the decoder's shortest decimal must map back."""
    return [{k: struct.pack(">f", v) for k, v in e.values.items()}
            for e in events if isinstance(e, Decoded)]  # fmt: skip


def damaged(frame: bytes, kind: str, where: int, xor: int) -> bytes:
    if kind == "truncate":
        return frame[: 1 + where % (len(frame) - 1)]
    i = where % len(frame)
    return frame[:i] + bytes([frame[i] ^ xor]) + frame[i + 1 :]


def test_every_block_has_a_distinct_byte_count_so_responses_identify_themselves() -> None:
    blocks = {b for plan in sdm.PLANS.values() for b in plan}
    assert len({b.byte_count for b in blocks}) == len(blocks)


def test_blocks_cover_the_documented_registers() -> None:
    registers = {key: reg for b in sdm.PLANS["sdm120"] for key, reg in b.fields}
    assert registers == {"voltage": 0x0000, "current": 0x0006, "power": 0x000C,
                         "frequency": 0x0046, "energy_import": 0x0048, "energy_total": 0x0156}  # fmt: skip
    keys = {key for b in sdm.PLANS["sdm630"] for key, _ in b.fields}
    assert keys == {f.key for f in sdm.CATALOGUE.fields}


@PROPS
@given(st.lists(frames, min_size=1, max_size=5), cuts)
def test_frames_decode_the_same_whole_bytewise_and_in_random_splits(
    items: list[Item], points: list[int]
) -> None:
    stream = b"".join(f for f, _ in items)
    for parts in ([stream], [bytes([b]) for b in stream], chunks(stream, points)):
        decoder = sdm.Decoder()
        events = feed(decoder, parts)
        assert bits(events) == [v for _, v in items]
        assert not [e for e in events if isinstance(e, DecodeError)]
        assert decoder.counters.frames_ok == len(items)


@PROPS
@given(st.lists(st.tuples(garbage, frames), min_size=1, max_size=5), cuts)
def test_garbage_between_frames_is_skipped_and_counted(
    items: list[tuple[bytes, Item]], points: list[int]
) -> None:
    stream = b"".join(g + f for g, (f, _) in items)
    decoder = sdm.Decoder()
    assert bits(feed(decoder, chunks(stream, points))) == [v for _, (_, v) in items]
    if any(g for g, _ in items):
        assert decoder.counters.resyncs >= 1


@PROPS
@given(st.lists(st.tuples(frames, st.none() | damage), min_size=1, max_size=6), frames, cuts)
def test_truncated_and_corrupt_frames_are_rejected_counted_and_hide_no_good_frame(
    items: list[tuple[Item, tuple[str, int, int] | None]], last: Item, points: list[int]
) -> None:
    items = [*items, (last, None)]  # a damaged frame is only known bad once more bytes follow
    stream = b"".join(f if d is None else damaged(f, *d) for (f, _), d in items)
    decoder = sdm.Decoder()
    assert bits(feed(decoder, chunks(stream, points))) == [v for (_, v), d in items if d is None]
    c = decoder.counters
    if any(d is not None for _, d in items):
        assert c.checksum_errors + c.rejected + c.resyncs >= 1


@PROPS
@given(st.binary(max_size=80), st.lists(frames, min_size=2, max_size=4))
def test_decoding_resynchronises_within_one_frame_after_arbitrary_garbage(
    noise: bytes, items: list[Item]
) -> None:
    got = bits(sdm.Decoder().feed(noise + b"".join(f for f, _ in items)))
    assert got[-(len(items) - 1) :] == [v for _, v in items[1:]]


@PROPS
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_random_bytes_never_raise_and_the_buffer_stays_bounded(parts: list[bytes]) -> None:
    decoder = sdm.Decoder()
    for part in parts:
        for event in decoder.feed(part):
            assert isinstance(event, Decoded | DecodeError)
        assert len(decoder._buf) <= modbus.MAX_BUFFER


def test_decode_error_details_do_not_depend_on_the_payload() -> None:
    def details(frame: bytes) -> list[str]:
        bad = frame[:-1] + bytes([frame[-1] ^ 1])
        return [e.detail for e in sdm.Decoder().feed(bad) if isinstance(e, DecodeError)]

    a = _response(1, sdm.ENERGY_TOTAL, [1.0] * 7)[0]
    b = _response(1, sdm.ENERGY_TOTAL, [98765.4] * 7)[0]
    assert details(a) == details(b) == ["Modbus CRC mismatch"]


def test_a_response_decodes_to_its_block_fields_as_short_decimals() -> None:
    frame = modbus.encode_response(1, 4, struct.pack(">2f", 50.02, 1234.56))
    (event,) = sdm.Decoder().feed(frame)
    assert isinstance(event, Decoded)
    assert event.values == {"frequency": 50.02, "energy_import": 1234.56}


def test_with_a_shared_transaction_an_unsolicited_response_is_rejected() -> None:
    _, decoder = sdm.new_session({})
    (event,) = decoder.feed(_response(1, sdm.ENERGY_TOTAL, [1.0] * 7)[0])
    assert isinstance(event, DecodeError)
    assert event.reason == "unsolicited"


def test_with_a_shared_transaction_a_response_from_another_device_is_rejected() -> None:
    poller, decoder = sdm.new_session({"address": 5})
    poller.on_open(0.0)
    (event,) = decoder.feed(_response(6, sdm.INSTANT_L1, [1.0] * 7)[0])
    assert isinstance(event, DecodeError)
    assert event.reason == "unexpected_response"
    assert decoder.counters.rejected == 1


def test_with_a_shared_transaction_an_exception_answers_the_request_in_flight() -> None:
    poller, decoder = sdm.new_session({})
    poller.on_open(0.0)
    (event,) = decoder.feed(modbus.encode_exception(1, 4, 2))
    assert isinstance(event, DecodeError)
    assert event.reason == "modbus_exception"
    assert decoder.transaction is not None and decoder.transaction.pending is None


def test_poller_reads_the_blocks_in_turn_spaced_and_repeats_every_interval() -> None:
    poller = sdm.Poller({"address": 3, "interval_s": 10})
    sent = [(0.0, poller.on_open(0.0))]
    for step in range(1, 120):
        t = step * 0.1
        sent += [(t, cmds) for cmds in [poller.due(t)] if cmds]
    requests = [(round(t, 1), modbus.parse_request(c)) for t, cmds in sent for c in cmds]
    assert requests[:4] == [
        (0.0, (3, 4, 0x0000, 14)),
        (0.3, (3, 4, 0x0046, 4)),
        (0.6, (3, 4, 0x0156, 2)),
        (10.0, (3, 4, 0x0000, 14)),
    ]


def test_sdm630_reads_system_values() -> None:
    poller = sdm.Poller({"model": "sdm630"})
    (request,) = poller.on_open(0.0)
    assert modbus.parse_request(request) == (1, 4, 0x002A, 12)


@pytest.mark.parametrize("options, key", [({"address": 0}, "options.address"),
                                          ({"model": "sdm72"}, "options.model"),
                                          ({"interval_s": 0.1}, "options.interval_s")])  # fmt: skip
def test_bad_options_are_refused_naming_the_key(options: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError, match=key):
        sdm.Poller(options)


@pytest.mark.parametrize("model", ["sdm120", "sdm630"])
@pytest.mark.parametrize("shared", [False, True])
def test_device_round_trip_gives_exactly_the_sent_values(model: str, shared: bool) -> None:
    device = sdm.Device(random.Random(7), address=9)
    options = {"address": 9, "model": model, "interval_s": 2}
    if shared:
        poller, decoder = sdm.new_session(options)
    else:
        poller, decoder = sdm.Poller(options), sdm.Decoder()
    events: list[Event] = []
    t = 50.0
    for cmd in poller.on_open(t):
        events += decoder.feed(device.receive(cmd, t))
    for step in range(400):
        t = 50.0 + step * 0.1
        for cmd in poller.due(t):
            events += decoder.feed(device.receive(cmd, t))
        events += decoder.feed(device.tick(t))
    assert len(device.sent) >= 60
    assert [dict(e.values) for e in events if isinstance(e, Decoded)] == device.sent
    assert not [e for e in events if isinstance(e, DecodeError)]
