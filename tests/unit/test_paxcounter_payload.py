"""Paxcounter payloads against what the firmware itself writes and reads.

The vectors in tests/data/firmware/paxcounter.json were made by compiling the firmware's own
src/payload.cpp and running its own TTN payload formatters (see the file's `source`). The
expected counts come from the inputs handed to the firmware's encoder (the case names) and,
where the firmware's formatter handles the layout, from the formatter's output.
"""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.base import DecodeError
from firmware_bridge.paxcounter_payload import (
    PaxCounts,
    decode_lpp_counts,
    decode_packed_counts,
    decode_plain_counts,
)
from tests.unit.firmware_data import load

VECTORS = load("firmware", "paxcounter.json")
FORMATS = VECTORS["formats"]
PROPS = settings(max_examples=500, derandomize=True, database=None, deadline=None)

# What sendData() was asked to encode, from the harness's case names.
_CASE = re.compile(r"wifi=(\d+)(?:,ble=(\d+))?(\+gps)?(\+sds)?")
SDS = (12.5, 7.2)  # the harness's SDS011 reading (12.5, 7.25) after the firmware's truncation


def expected(case: str) -> PaxCounts:
    m = _CASE.fullmatch(case)
    assert m, case
    pm = SDS if m.group(4) else (None, None)
    ble = int(m.group(2)) if m.group(2) is not None else None
    return PaxCounts(int(m.group(1)), ble, *pm)


def count_cases(fmt: str) -> list[dict[str, object]]:
    return [c for c in FORMATS[fmt] if c["case"].startswith("wifi=")]


def decode(fmt: str, payload: bytes, fport: int) -> PaxCounts | DecodeError | None:
    if fmt.startswith("packed"):
        return decode_packed_counts(payload)
    if fmt == "plain":
        return decode_plain_counts(payload)
    return decode_lpp_counts(payload, packed=fmt == "lpp_packed")


@pytest.mark.parametrize(
    ("fmt", "case"),
    [(fmt, c) for fmt in FORMATS for c in count_cases(fmt)],
    ids=lambda x: x if isinstance(x, str) else x["case"],
)
def test_every_count_message_the_firmware_encodes_decodes_to_its_inputs(fmt, case):
    result = decode(fmt, bytes.fromhex(case["hex"]), case["fport"])
    assert result == expected(case["case"])


@pytest.mark.parametrize("fmt", ["packed", "packed_opensensebox", "plain"])
def test_counts_agree_with_the_firmwares_own_payload_formatter(fmt):
    agreed = 0
    for case in count_cases(fmt):
        data = case["ttn_formatter"]["data"]
        if "+sds" in case["case"]:
            continue  # the formatters misread these layouts; pinned below
        ours = decode(fmt, bytes.fromhex(case["hex"]), 1)
        assert isinstance(ours, PaxCounts)
        assert ours.values()["wifi_devices"] == data["wifi"]
        assert ours.values().get("ble_devices") == data.get("ble")
        assert ours.values()["pax_devices"] == data["pax"]
        agreed += 1
    assert agreed >= 12


def test_the_firmware_formatters_misread_sds011_layouts_that_the_decoder_reads():
    """Pins the formatters' gaps, so a fixed formatter shows up here: packed wifi+SDS011 (6
    bytes) has no branch, plain reads the SDS011 text as a GPS fix."""
    packed = next(c for c in FORMATS["packed"] if c["case"] == "wifi=42+sds")
    assert packed["ttn_formatter"]["data"] == {"pax": 0}
    plain = next(c for c in FORMATS["plain"] if c["case"] == "wifi=42+sds")
    assert plain["ttn_formatter"]["data"]["latitude"] > 90  # text bytes taken as a coordinate
    for fmt, case in (("packed", packed), ("plain", plain)):
        assert decode(fmt, bytes.fromhex(case["hex"]), 1) == PaxCounts(42, None, 12.5, 7.2)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_the_mqtt_client_sends_the_same_bytes_base64_encoded_on_paxout_port(fmt):
    for case in FORMATS[fmt]:
        assert case["mqtt_topic"] == f"paxout/{case['fport']}"
        assert base64.b64decode(case["mqtt_payload"], validate=True) == bytes.fromhex(case["hex"])


@pytest.mark.parametrize("fmt", ["lpp_dynamic", "lpp_packed"])
def test_lpp_status_and_battery_frames_on_the_count_port_are_not_counts(fmt):
    for case in FORMATS[fmt]:
        if case["case"] in ("status", "battery"):
            assert decode_lpp_counts(bytes.fromhex(case["hex"]), fmt == "lpp_packed") is None


def test_values_use_catalogue_names_and_pax_is_wifi_plus_ble():
    assert PaxCounts(3, 4, 1.5, 0.5).values() == {
        "wifi_devices": 3,
        "ble_devices": 4,
        "pax_devices": 7,
        "pm10": 1.5,
        "pm2_5": 0.5,
    }
    assert PaxCounts(3).values() == {"wifi_devices": 3, "pax_devices": 3}


@pytest.mark.parametrize(
    ("decoder", "payload", "reason"),
    [
        (decode_packed_counts, b"", "bad_length"),
        (decode_packed_counts, b"\x01", "bad_length"),
        (decode_packed_counts, b"\x01\x02\x03", "bad_length"),
        (decode_packed_counts, bytes(7), "bad_length"),
        (decode_plain_counts, b"\x00", "bad_length"),
        (decode_plain_counts, bytes(5), "bad_length"),
        (decode_plain_counts, b"\x00\x2a, 12.5", "bad_length"),  # SDS011 text cut short
    ],
)
def test_lengths_no_firmware_layout_has_are_errors(decoder, payload, reason):
    result = decoder(payload)
    assert isinstance(result, DecodeError) and result.reason == reason


@pytest.mark.parametrize(
    ("payload", "packed", "reason"),
    [
        (b"\x15\x65\x00", False, "truncated"),
        (b"\x15", False, "truncated"),
        (b"\x15\xff\x00\x01", False, "unknown_type"),
        (b"\x15\x67\x00\x01", False, "wrong_type"),  # a temperature on the Wi-Fi channel
        (b"\x15\x65\x00\x01\x15\x65\x00\x02", False, "duplicate_channel"),
        (b"\x65\x00", True, "truncated"),
        (b"\x65\x00\x01\x67\x00\x01", True, "wrong_type"),
        (b"\x65\x00\x01" * 5, True, "bad_length"),
        (b"", True, "empty"),
    ],
)
def test_malformed_lpp_count_frames_are_errors(payload, packed, reason):
    result = decode_lpp_counts(payload, packed)
    assert isinstance(result, DecodeError) and result.reason == reason


@PROPS
@given(st.binary(max_size=300))
def test_any_bytes_give_counts_or_an_error_never_an_exception(payload):
    for result in (
        decode_packed_counts(payload),
        decode_plain_counts(payload),
        decode_lpp_counts(payload, packed=False),
        decode_lpp_counts(payload, packed=True),
    ):
        assert result is None or isinstance(result, PaxCounts | DecodeError)
        if isinstance(result, PaxCounts):
            assert 0 <= result.wifi <= 0xFFFF
            assert result.ble is None or 0 <= result.ble <= 0xFFFF


@PROPS
@given(st.integers(0, 0xFFFF), st.one_of(st.none(), st.integers(0, 0xFFFF)))
def test_packed_and_plain_round_trip_any_16_bit_counts(wifi, ble):
    packed = wifi.to_bytes(2, "little") + (b"" if ble is None else ble.to_bytes(2, "little"))
    plain = wifi.to_bytes(2, "big") + (b"" if ble is None else ble.to_bytes(2, "big"))
    assert decode_packed_counts(packed) == PaxCounts(wifi, ble)
    assert decode_plain_counts(plain) == PaxCounts(wifi, ble)
