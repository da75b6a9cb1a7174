"""Every byte-exact vector in tests/data/serial_vectors.json: valid frames decode to their
documented values, invalid ones are rejected, encoders reproduce the documented commands."""

from __future__ import annotations

import binascii
import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge import framing, modbus
from firmware_bridge.base import Decoded, DecodeError, Event, StreamDecoder
from firmware_bridge.drivers import pms5003, sds011, senseair_s8, sps30

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "data" / "serial_vectors.json").read_text()
)


def hx(text: str) -> bytes:
    return bytes.fromhex(text)


def decoded(events: list[Event]) -> list[Decoded]:
    return [e for e in events if isinstance(e, Decoded)]


def errors(events: list[Event]) -> list[DecodeError]:
    return [e for e in events if isinstance(e, DecodeError)]


def frames(device: str, valid: bool) -> list[dict[str, Any]]:
    return [f for f in VECTORS[device]["frames"] if f["valid"] is valid]


@pytest.mark.parametrize("vector", frames("pms5003", True), ids=lambda v: v["hex"][:20])
def test_pms5003_frames_decode_to_their_documented_words(vector: dict[str, Any]) -> None:
    (reading,) = decoded(pms5003.Decoder().feed(hx(vector["hex"])))
    words = dict(zip(pms5003.WORDS, vector["words"], strict=True))
    assert dict(reading.values) == {k: words[k] for k in pms5003.PUBLISHED}


def test_pms5003_commands_and_acks_match_the_vectors() -> None:
    cmds = VECTORS["pms5003"]["commands"]
    assert hx(cmds["passive_mode"]) == pms5003.CMD_PASSIVE
    assert hx(cmds["active_mode"]) == pms5003.CMD_ACTIVE
    assert hx(cmds["read_in_passive"]) == pms5003.CMD_READ
    assert hx(cmds["sleep"]) == pms5003.CMD_SLEEP
    assert hx(cmds["wake"]) == pms5003.CMD_WAKE
    decoder = pms5003.Decoder()
    acks = ("passive_mode_ack", "active_mode_ack", "sleep_ack")
    assert decoder.feed(b"".join(hx(cmds[k]) for k in acks)) == []
    assert decoder.counters.extra["replies"] == 3


def test_pms5003_header_hunt_survives_a_doubled_first_header_byte() -> None:
    frame = hx(frames("pms5003", True)[0]["hex"])
    assert len(decoded(pms5003.Decoder().feed(b"\x42" + frame))) == 1


@pytest.mark.parametrize("vector", [f for f in frames("sds011", True) if "pm2_5" in f],
                         ids=lambda v: v["hex"][:20])  # fmt: skip
def test_sds011_data_frames_decode_to_their_documented_pm_values(vector: dict[str, Any]) -> None:
    (reading,) = decoded(sds011.Decoder().feed(hx(vector["hex"])))
    assert dict(reading.values) == {"pm2_5": vector["pm2_5"], "pm10": vector["pm10"]}
    assert vector["device_id"].lower() not in repr(reading).lower()


@pytest.mark.parametrize("vector", [f for f in frames("sds011", True) if "pm2_5" not in f],
                         ids=lambda v: v["hex"][:20])  # fmt: skip
def test_sds011_reply_frames_are_counted_not_emitted(vector: dict[str, Any]) -> None:
    decoder = sds011.Decoder()
    assert decoder.feed(hx(vector["hex"])) == []
    assert decoder.counters.extra["replies"] == 1


def test_sds011_query_command_matches_the_vector() -> None:
    assert hx(VECTORS["sds011"]["commands"]["query_data"]) == sds011.CMD_QUERY


def test_sds011_set_query_mode_reply_matches_what_the_simulator_echoes() -> None:
    reply = hx(frames("sds011", True)[2]["hex"])
    assert sds011.encode_reply(sds011.CMD_REPORT_MODE, 1, 1, 0, 0xA160) == reply


@pytest.mark.parametrize("vector", frames("sps30", True), ids=lambda v: v["hex"][:20])
def test_sps30_frames_decode_to_their_documented_floats(vector: dict[str, Any]) -> None:
    (reading,) = decoded(sps30.Decoder().feed(hx(vector["hex"])))
    assert list(reading.values) == list(sps30.KEYS)
    assert list(reading.values.values()) == pytest.approx(vector["values"], abs=1e-3)


def test_sps30_commands_and_replies_match_the_vectors() -> None:
    cmds = VECTORS["sps30"]["commands"]
    assert hx(cmds["start_measurement_float"]) == sps30.CMD_START_FLOAT
    assert hx(cmds["read_values"]) == sps30.CMD_READ_VALUES
    assert hx(cmds["stop"]) == sps30.CMD_STOP_MEASUREMENT
    decoder = sps30.Decoder()
    assert decoder.feed(hx(cmds["no_new_data_reply"])) == []
    assert [e.reason for e in errors(decoder.feed(hx(cmds["error_reply_state_0x43"])))] == [
        "device_error"
    ]


def test_senseair_s8_requests_in_the_vectors_are_what_the_poller_sends() -> None:
    requests = [hx(f["hex"]) for f in frames("senseair_s8", True) if len(hx(f["hex"])) == 8]
    assert senseair_s8.CMD_READ_CO2 in requests
    assert senseair_s8.CMD_READ_ALL in requests
    for request in requests:
        assert modbus.crc_ok(request)


def test_senseair_s8_response_decodes_to_400_ppm() -> None:
    (vector,) = [f for f in frames("senseair_s8", True) if "co2_ppm" in f]
    (reading,) = decoded(senseair_s8.Decoder().feed(hx(vector["hex"])))
    assert reading.values == {"co2": vector["co2_ppm"]} == {"co2": 400}


@pytest.mark.parametrize("vector", frames("senseair_s8", False), ids=lambda v: v["hex"][:20])
def test_senseair_s8_invalid_frames_are_rejected(vector: dict[str, Any]) -> None:
    decoder = senseair_s8.Decoder()
    events = decoder.feed(hx(vector["hex"]))
    assert decoded(events) == []
    assert [e.reason for e in errors(events)] == ["checksum"]
    assert decoder.counters.checksum_errors == 1


def test_every_invalid_vector_is_rejected_by_its_decoder() -> None:
    decoders: dict[str, Callable[[], StreamDecoder]] = {
        "pms5003": pms5003.Decoder, "sds011": sds011.Decoder, "sps30": sps30.Decoder,
        "senseair_s8": senseair_s8.Decoder,
    }  # fmt: skip
    for device, new in decoders.items():
        for vector in frames(device, False):
            assert decoded(new().feed(hx(vector["hex"]))) == [], vector["hex"]


def check_value(text: str) -> int:
    return int(text.split()[0], 16)


def test_crc_check_values() -> None:
    crc = VECTORS["crc_check_values"]
    data = b"123456789"
    assert crc["input"] == "ASCII 123456789"
    assert framing.crc16_ccitt(data) == check_value(crc["crc16_ccitt_false"]) == 0x29B1
    assert binascii.crc_hqx(data, 0xFFFF) == check_value(crc["crc16_ccitt_false"])
    assert binascii.crc_hqx(data, 0) == check_value(crc["crc16_xmodem"])
    assert modbus.crc16(data) == check_value(crc["crc16_modbus"])
    assert zlib.crc32(data) == check_value(crc["crc32"])


@pytest.mark.parametrize("example", VECTORS["cobs"]["examples"], ids=lambda e: e["in"])
def test_cobs_examples(example: dict[str, str]) -> None:
    wire = hx(example["out"])
    assert framing.cobs_encode(hx(example["in"])) + framing.DELIMITER == wire
    assert framing.cobs_decode(wire[:-1]) == hx(example["in"])
