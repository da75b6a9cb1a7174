"""Our node's decoder: declared fields only, sequence gaps, truncated frames, version 1 still
accepted, simulator round trip (stream properties over COBS frames are in
test_stream_decoders.py)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

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
    wrong_version = framing.encode_frame(bytes([3, 1, 0]) + b"no2=1")
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


# Found by the stream property test: under version 1, losing the last segment byte and the
# closing 00 left `...=-3` followed by `7 f0`, which happened to be the CRC of what was left.
FOUND = {"no2": -1.7258240738929696e16, "humidity": 0.5, "temperature": -37}


def test_the_version_1_truncation_that_passes_the_crc_by_chance() -> None:
    """Why version 2 exists: version 1 has only the CRC against truncation (kept for nodes in
    the field), and this cut fools it."""
    v1 = framing.encode_frame(
        bytes([1, framing.MSG_READINGS, 193]) + framing.format_readings(FOUND)
    )
    following = framing.encode_readings(194, {"no2": 1.5})
    assert values(node.Decoder().feed(v1 + following)) == [FOUND, {"no2": 1.5}]
    assert values(node.Decoder().feed(v1[:-2] + following)) == [
        {**FOUND, "temperature": -3},
        {"no2": 1.5},
    ]


def test_the_same_truncation_of_a_version_2_frame_is_rejected_and_the_next_frame_decodes() -> None:
    frame = framing.encode_readings(193, FOUND)
    following = framing.encode_readings(194, {"no2": 1.5})
    decoder = node.Decoder()
    events = decoder.feed(frame[:-2] + following)
    assert values(events) == [{"no2": 1.5}]
    assert [e.reason for e in errors(events)] == ["cobs"]  # version 2's CRC bytes differ
    # What version 1 decoded by accident: the payload cut after `=-3`, with a CRC that matches.
    # Version 2 rejects it on the length byte alone.
    payload = framing.decode_frame(frame[1:-1])
    assert payload.endswith(b"temperature=-37")
    lucky = framing.encode_frame(payload[:-1])
    decoder = node.Decoder()
    events = decoder.feed(lucky + following)
    assert values(events) == [{"no2": 1.5}]
    assert [e.reason for e in errors(events)] == ["length"]
    assert (decoder.counters.rejected, decoder.counters.checksum_errors) == (1, 0)


numbers = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**12), 10**12)
declared = st.dictionaries(st.sampled_from(sorted(node.KEYS)), numbers, min_size=1)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(st.integers(0, 255), declared)
def test_a_truncated_version_2_frame_never_yields_a_reading(
    seq: int, readings: dict[str, float]
) -> None:
    """Every cut of 1..len-1 segment bytes (plus the closing 00) is rejected by COBS or the
    length byte, never by the CRC, so it holds whatever the CRC bytes; and a truncated payload
    sent with a CRC that matches it (the unlucky case) is rejected all the same."""
    frame = framing.encode_readings(seq, readings)
    segment = frame[1:-1]
    following = framing.encode_readings(seq + 1, {"humidity": 50})
    for lost in range(1, len(segment)):
        decoder = node.Decoder()
        events = decoder.feed(frame[: -1 - lost] + following)
        assert values(events) == [{"humidity": 50}]
        assert (decoder.counters.rejected, decoder.counters.checksum_errors) == (1, 0)
    payload = framing.decode_frame(segment)
    for kept in range(len(payload)):
        decoder = node.Decoder()
        events = decoder.feed(framing.encode_frame(payload[:kept]) + following)
        assert values(events) == [{"humidity": 50}]
        assert [e.reason for e in errors(events)] in (["too_short"], ["length"])
