"""SenseAir S8 over Modbus RTU: status flags, rejection, poller, round trip (stream properties
are in test_stream_decoders.py)."""

from __future__ import annotations

import random

from firmware_bridge import modbus
from firmware_bridge.base import Decoded, DecodeError, Event
from firmware_bridge.drivers import senseair_s8 as s8
from tests.unit.stream_harness import errors, exchange


def reply(regs: list[int]) -> bytes:
    """An input-register read response from the "any sensor" address."""
    return modbus.encode_response(0xFE, 4, b"".join(r.to_bytes(2, "big") for r in regs))


def readings(events: list[Event]) -> list[tuple[dict[str, object], tuple[str, ...]]]:
    return [(dict(e.values), e.flags) for e in events if isinstance(e, Decoded)]


def test_the_published_frame_with_a_wrong_crc_is_rejected() -> None:
    decoder = s8.Decoder()
    events = decoder.feed(bytes.fromhex("FE 04 02 03 88 D5 C5"))
    assert [e.reason for e in events if isinstance(e, DecodeError)] == ["checksum"]
    assert readings(events) == []
    assert decoder.counters.checksum_errors == 1
    assert readings(decoder.feed(bytes.fromhex("FE 04 02 03 88 AD B2"))) == [({"co2": 904}, ())]


def test_meter_status_error_bits_flag_sensor_fault() -> None:
    ok = reply([0x0000, 0, 0, 400])
    bad = reply([0x0010, 0, 0, 400])
    beyond_mask = reply([0x0100, 0, 0, 400])
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

    a, b = reply([0, 0, 0, 400]), reply([7, 8, 9, 1234])
    assert details(a) == details(b) == ["Modbus CRC mismatch"]


def test_poller_reads_all_four_registers_by_default_or_only_co2() -> None:
    poller = s8.Poller(s8.Options.model_validate({}))
    assert poller.on_open(0.0) == [bytes.fromhex("FE 04 00 00 00 04 E5 C6")]
    assert poller.due(3.9) == []
    assert poller.due(4.0) == [bytes.fromhex("FE 04 00 00 00 04 E5 C6")]
    co2_only = s8.Poller(s8.Options.model_validate({"read_status": False, "interval_s": 2}))
    assert co2_only.on_open(0.0) == [bytes.fromhex("FE 04 00 03 00 01 D5 C5")]


def run_device(options: dict[str, object], seed: int, fault: bool = False) -> list[Decoded]:
    device = s8.Device(random.Random(seed))
    device.fault = fault
    events = exchange(device, s8.Poller(s8.Options.model_validate(options)), s8.Decoder(), start=100.0, step=0.25, steps=400)
    assert len(device.sent) >= 20
    assert [dict(v) for v, _ in readings(events)] == device.sent
    assert not errors(events)
    return [e for e in events if isinstance(e, Decoded)]


def test_device_round_trip_reading_status_and_co2() -> None:
    assert all(d.flags == () for d in run_device({}, seed=1))


def test_device_round_trip_reading_co2_only() -> None:
    run_device({"read_status": False, "address": 0x68}, seed=2)


def test_device_round_trip_with_a_faulty_sensor_flags_every_reading() -> None:
    assert all(d.flags == ("sensor_fault",) for d in run_device({}, seed=3, fault=True))
