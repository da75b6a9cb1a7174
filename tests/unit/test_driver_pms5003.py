"""PMS5003 decoder: rejection and counters, simulator round trip (stream properties are in
test_stream_decoders.py)."""

from __future__ import annotations

import random

from firmware_bridge.base import DecodeError
from firmware_bridge.drivers import pms5003
from tests.unit.stream_harness import exchange, values


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
    device = pms5003.Device(random.Random(seed))
    events = exchange(device, pms5003.Poller(pms5003.Options.model_validate(driver_options)), pms5003.Decoder(),
                      start=1000.0, step=0.25, steps=seconds * 4)  # fmt: skip
    assert device.sent, "the device sent nothing"
    assert values(events) == device.sent


def test_device_round_trip_in_active_mode_gives_exactly_the_sent_values() -> None:
    run_device({}, 30, seed=1)


def test_device_round_trip_in_passive_mode_with_duty_cycle_gives_exactly_the_sent_values() -> None:
    run_device({"mode": "passive", "interval_s": 2, "duty_cycle": {"work_s": 10, "sleep_s": 5}},
               60, seed=2)  # fmt: skip
