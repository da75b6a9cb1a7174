"""Our node's decoder: declared fields only, sequence gaps, simulator round trip (stream
properties over COBS frames are in test_stream_decoders.py)."""

from __future__ import annotations

import random

from firmware_bridge import framing
from firmware_bridge.base import DecodeError
from firmware_bridge.drivers import node
from tests.unit.stream_harness import errors, exchange, values


def test_an_endless_segment_is_dropped_and_the_next_frame_still_decodes() -> None:
    decoder = node.Decoder()
    events = decoder.feed(b"\x01" * (framing.MAX_ENCODED + 50))
    events += decoder.feed(b"\x02" * 10 + framing.encode_readings(0, {"no2": 1.5}))
    assert values(events) == [{"no2": 1.5}]
    assert decoder.counters.resyncs == 1
    assert not errors(events)


def test_undeclared_keys_are_dropped_and_counted() -> None:
    decoder = node.Decoder()
    events = decoder.feed(framing.encode_readings(0, {"no2": 20.5, "wifi_ssid_hash": 7}))
    assert values(events) == [{"no2": 20.5}]
    assert decoder.counters.extra["undeclared_keys"] == 1


def test_sequence_gaps_are_counted_and_wrap_is_not_a_gap() -> None:
    decoder = node.Decoder()
    for seq in (254, 255, 0, 1, 5):
        decoder.feed(framing.encode_readings(seq, {"humidity": 50}))
    assert decoder.counters.extra["seq_gaps"] == 1
    assert decoder.counters.frames_ok == 5


def test_unknown_message_type_and_version_are_rejected() -> None:
    decoder = node.Decoder()
    wrong_type = framing.encode_frame(framing.encode_message(9, 0, b"no2=1"))
    wrong_version = framing.encode_frame(bytes([2, 1, 0]) + b"no2=1")
    reasons = [e.reason for e in errors(decoder.feed(wrong_type + wrong_version))]
    assert reasons == ["unknown_type", "unsupported_version"]
    assert decoder.counters.rejected == 2


def test_decode_error_details_do_not_depend_on_the_payload() -> None:
    def details(frame: bytes) -> list[str]:
        bad = frame[:-2] + bytes([frame[-2] ^ 1]) + frame[-1:]
        return [e.detail for e in node.Decoder().feed(bad) if isinstance(e, DecodeError)]

    a = framing.encode_readings(1, {"no2": 11.5})
    b = framing.encode_readings(1, {"no2": 99.25})
    assert details(a) == details(b) == ["CRC-16 mismatch"]


def test_device_round_trip_gives_exactly_the_sent_values() -> None:
    device = node.Device(random.Random(5), period_s=2.0)
    decoder = node.Decoder()
    events = exchange(device, None, decoder, start=10.0, step=0.5, steps=200)
    assert len(device.sent) >= 40
    assert values(events) == device.sent
    assert not errors(events)
    assert "seq_gaps" not in decoder.counters.extra
