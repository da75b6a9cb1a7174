"""Shared Modbus RTU pieces: CRC, request encoding, the response stream decoder, float32."""

from __future__ import annotations

import struct
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import modbus
from firmware_bridge.base import DecodeError

PROPS = settings(max_examples=200, derandomize=True, database=None, deadline=None)


def test_crc16_modbus_check_value() -> None:
    assert modbus.crc16(b"123456789") == 0x4B37


def test_crc_is_appended_low_byte_first() -> None:
    assert modbus.with_crc(bytes.fromhex("FE 04 02 01 90")) == bytes.fromhex("FE 04 02 01 90 AC D8")


def test_read_requests_encode_as_the_datasheet_shows() -> None:
    assert modbus.read_input_registers(0xFE, 0x0003, 1) == bytes.fromhex("FE 04 00 03 00 01 D5 C5")
    assert modbus.read_input_registers(0xFE, 0x0000, 4) == bytes.fromhex("FE 04 00 00 00 04 E5 C6")
    assert modbus.read_holding_registers(1, 0, 2)[1] == 0x03


def test_read_request_refuses_bad_function_and_count() -> None:
    for args in ((1, 0x06, 0, 1), (1, 0x04, 0, 0), (1, 0x04, 0, 126), (256, 0x04, 0, 1)):
        try:
            modbus.read_request(*args)
        except ValueError:
            continue
        raise AssertionError(f"accepted {args}")


@given(st.integers(0, 255), st.sampled_from([3, 4]), st.integers(0, 0xFFFF), st.integers(1, 125))
def test_requests_parse_back_to_what_was_encoded(address: int, fn: int, start: int, n: int) -> None:
    assert modbus.parse_request(modbus.read_request(address, fn, start, n)) == (address, fn, start, n)


def test_a_response_decodes_to_its_address_function_and_data() -> None:
    decoder = modbus.ResponseDecoder()
    assert decoder.feed(bytes.fromhex("FE 04 02 01 90 AC D8")) == [
        modbus.Response(0xFE, 4, b"\x01\x90")
    ]


def test_a_crc_mismatch_is_rejected_and_counted() -> None:
    decoder = modbus.ResponseDecoder()
    events = decoder.feed(bytes.fromhex("FE 04 02 03 88 D5 C5"))
    assert [e.reason for e in events if isinstance(e, DecodeError)] == ["checksum"]
    assert not [e for e in events if isinstance(e, modbus.Response)]
    assert decoder.counters.checksum_errors == 1


def test_an_exception_response_is_reported_with_its_code() -> None:
    (frame,) = modbus.ResponseDecoder().feed(modbus.encode_exception(1, 4, 2))
    assert frame == modbus.ExceptionResponse(1, 4, 2)
    assert isinstance(frame, modbus.ExceptionResponse)
    error = frame.error()
    assert error.reason == "modbus_exception"
    assert "illegal data address" in error.detail


def test_resync_drops_one_byte_so_a_frame_behind_a_false_header_is_found() -> None:
    real = modbus.encode_response(1, 4, b"\x00\x01\x00\x02")
    decoder = modbus.ResponseDecoder()
    events = decoder.feed(b"\x01\x04\x04\x99" + real)  # false header claims 4 data bytes
    assert [e for e in events if isinstance(e, modbus.Response)] == [
        modbus.Response(1, 4, b"\x00\x01\x00\x02")
    ]
    assert decoder.counters.checksum_errors == 1


def test_byte_counts_and_addresses_narrow_the_hunt() -> None:
    decoder = modbus.ResponseDecoder(byte_counts=(2,), addresses=(0xFE,))
    assert decoder.feed(modbus.encode_response(0xFE, 4, b"\x00\x01\x00\x02")) == []
    assert decoder.feed(modbus.encode_response(0x01, 4, b"\x00\x01")) == []
    assert decoder.feed(modbus.encode_response(0xFE, 4, b"\x00\x07")) == [
        modbus.Response(0xFE, 4, b"\x00\x07")
    ]


responses = st.tuples(st.integers(1, 247), st.sampled_from([3, 4]),
                      st.binary(min_size=1, max_size=60).map(lambda b: b + b"\x00" * (len(b) % 2)))  # fmt: skip


@PROPS
@given(st.lists(responses, min_size=1, max_size=5), st.lists(st.integers(0, 10_000), max_size=10))
def test_responses_decode_the_same_in_any_split(
    items: list[tuple[int, int, bytes]], points: list[int]
) -> None:
    stream = b"".join(modbus.encode_response(*r) for r in items)
    marks = sorted({p % (len(stream) + 1) for p in points} | {0, len(stream)})
    for parts in ([stream], [bytes([b]) for b in stream],
                  [stream[a:b] for a, b in pairwise(marks)]):  # fmt: skip
        decoder = modbus.ResponseDecoder()
        got = [f for p in parts for f in decoder.feed(p)]
        assert got == [modbus.Response(*r) for r in items]


@PROPS
@given(st.lists(st.binary(max_size=300), max_size=10))
def test_random_bytes_never_raise_and_the_buffer_stays_bounded(parts: list[bytes]) -> None:
    decoder = modbus.ResponseDecoder()
    for part in parts:
        decoder.feed(part)
        assert len(decoder._buf) <= modbus.MAX_BUFFER


def test_float32_reads_as_the_shortest_decimal() -> None:
    assert modbus.float32(modbus.pack_float32(230.1)) == 230.1
    assert modbus.float32(modbus.pack_float32(12345.67)) == 12345.67
    assert modbus.float32(b"\x00\x00" + modbus.pack_float32(50.0), 2) == 50.0


@given(st.floats(width=32, allow_nan=False))
def test_float32_maps_back_to_the_same_bits(value: float) -> None:
    raw = struct.pack(">f", value)
    assert struct.pack(">f", modbus.float32(raw)) == raw
