"""SDS011 decoder: rejection and counters, warm-up, simulator round trip (stream properties are
in test_stream_decoders.py)."""

from __future__ import annotations

import random

import pytest

from firmware_bridge.base import Decoded, DecodeError
from firmware_bridge.drivers import sds011
from tests.unit.stream_harness import errors, exchange, values


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
    poller = sds011.Poller(sds011.Options.model_validate({"mode": "query", "interval_s": 5, "warmup_s": 30}))
    assert sds011.CMD_QUERY not in poller.on_open(0.0)
    assert [poller.due(t) for t in (1.0, 29.0)] == [[], []]
    assert poller.due(30.0) == [sds011.CMD_QUERY]


def test_duty_cycle_sleeps_and_wakes_the_sensor_and_close_puts_it_to_sleep() -> None:
    poller = sds011.Poller(sds011.Options.model_validate({"duty_cycle": {"work_s": 30, "sleep_s": 270}}))
    assert poller.on_open(0.0) == [sds011.CMD_WORK, sds011.CMD_ACTIVE, sds011.CMD_CONTINUOUS]
    assert poller.due(29.0) == []
    assert poller.due(30.0) == [sds011.CMD_SLEEP]
    assert poller.due(299.0) == []
    assert poller.due(300.0) == [sds011.CMD_WORK]
    assert poller.on_close() == [sds011.CMD_SLEEP]


def test_options_refuse_an_unknown_mode_naming_the_option() -> None:
    with pytest.raises(ValueError, match="mode"):
        sds011.Options.model_validate({"mode": "passive"})


def run_device(options: dict[str, object], seconds: int, seed: int) -> list[Decoded]:
    device = sds011.Device(random.Random(seed))
    events = exchange(device, sds011.Poller(sds011.Options.model_validate(options)), sds011.Decoder(),
                      start=1000.0, step=0.25, steps=seconds * 4)  # fmt: skip
    assert device.sent, "the device sent nothing"
    assert values(events) == device.sent
    assert not errors(events)
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
