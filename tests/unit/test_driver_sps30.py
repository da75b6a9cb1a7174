"""SPS30 SHDLC decoder: stuffing, device errors, poller, simulator round trip (stream
properties are in test_stream_decoders.py)."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.base import Decoded, DecodeError
from firmware_bridge.drivers import sps30
from tests.unit.stream_harness import PROPS, errors, exchange, values


def read_reply(value: float) -> bytes:
    """A float-format read reply with every one of the ten values `value`."""
    return sps30.encode_response(sps30.CMD_READ, struct.pack(">10f", *[value] * 10))


def test_destuffing_is_one_left_to_right_pass() -> None:
    assert sps30.destuff(bytes.fromhex("7D 5D 31")) == bytes.fromhex("7D 31")
    # chained replace() would turn the already-destuffed 7D 31 into 11
    assert bytes.fromhex("7D 5D 31").replace(b"\x7d\x5d", b"\x7d").replace(b"\x7d\x31", b"\x11") == b"\x11"


@PROPS
@given(st.binary(max_size=300))
def test_stuffing_round_trips_and_never_leaves_a_flag(data: bytes) -> None:
    stuffed = sps30.stuff(data)
    assert 0x7E not in stuffed
    assert sps30.destuff(stuffed) == data


def test_bad_and_dangling_escapes_are_rejected() -> None:
    assert sps30.destuff(b"\x7d\x00") is None
    assert sps30.destuff(b"\x00\x7d") is None


def test_an_endless_segment_is_dropped_and_the_next_frame_still_decodes() -> None:
    decoder = sps30.Decoder()
    events = decoder.feed(b"\x7e" + b"\x01" * (sps30.MAX_SEGMENT + 10))
    events += decoder.feed(read_reply(1.0))
    assert values(events) == [dict.fromkeys(sps30.KEYS, 1.0)]
    assert decoder.counters.resyncs >= 1


def test_a_non_zero_state_byte_is_a_device_error() -> None:
    decoder = sps30.Decoder()
    (event,) = decoder.feed(bytes.fromhex("7E 00 00 43 00 BC 7E"))
    assert isinstance(event, DecodeError)
    assert event.reason == "device_error"
    assert decoder.counters.rejected == 1


def test_an_empty_read_reply_means_no_new_data_and_yields_nothing() -> None:
    decoder = sps30.Decoder()
    assert decoder.feed(bytes.fromhex("7E 00 03 00 00 FC 7E")) == []
    assert decoder.counters.extra["no_new_data"] == 1


def test_command_acks_are_counted_not_emitted() -> None:
    decoder = sps30.Decoder()
    assert decoder.feed(sps30.encode_response(sps30.CMD_START)) == []
    assert decoder.counters.extra["replies"] == 1


def test_integer_format_replies_decode_with_typical_size_in_micrometres() -> None:
    data = struct.pack(">10H", 1, 2, 3, 4, 5, 6, 7, 8, 9, 835)
    (event,) = sps30.Decoder().feed(sps30.encode_response(sps30.CMD_READ, data))
    assert isinstance(event, Decoded)
    assert event.values["pm2_5"] == 2
    assert event.values["typical_size"] == 0.835


def test_decode_error_details_do_not_depend_on_the_payload() -> None:
    def details(frame: bytes) -> list[str]:
        bad = frame[:-2] + bytes([frame[-2] ^ 0x01]) + frame[-1:]
        return [e.detail for e in sps30.Decoder().feed(bad) if isinstance(e, DecodeError)]

    a, b = read_reply(1.5), read_reply(99.25)
    assert details(a) == details(b) == ["SHDLC checksum mismatch"]


def test_poller_starts_reads_every_interval_and_stops() -> None:
    poller = sps30.Poller(sps30.Options.model_validate({"interval_s": 2}))
    assert poller.on_open(0.0) == [sps30.CMD_START_FLOAT]
    assert poller.due(1.0) == []
    assert poller.due(2.0) == [sps30.CMD_READ_VALUES]
    assert poller.due(3.0) == []
    assert poller.on_close() == [sps30.CMD_STOP_MEASUREMENT]


def test_device_round_trip_gives_exactly_the_sent_values() -> None:
    device = sps30.Device(random.Random(4))
    decoder = sps30.Decoder()
    events = exchange(device, sps30.Poller(sps30.Options.model_validate({"interval_s": 0.5})), decoder,
                      start=500.0, step=0.25, steps=200)  # fmt: skip
    assert len(device.sent) >= 40
    assert values(events) == device.sent
    assert not errors(events)
    assert decoder.counters.extra["no_new_data"] > 0


def test_an_empty_reply_brings_the_next_read_forward_and_later_reads_keep_that_phase() -> None:
    decoder, poller = sps30.new_session(sps30.Options())
    assert poller.on_open(0.0) == [sps30.CMD_START_FLOAT]
    assert poller.next_due(0.0) == 1.0
    assert poller.due(1.0) == [sps30.CMD_READ_VALUES]
    assert poller.next_due(1.0) == 2.0
    decoder.feed(sps30.encode_response(sps30.CMD_READ))  # before the device's sample: empty
    assert poller.next_due(1.01) == 1.01  # look at once
    assert poller.due(1.01) == []
    assert abs(poller.next_due(1.01) - (1.01 + sps30.RETRY_S)) < 1e-9
    again = 1.01 + sps30.RETRY_S
    assert poller.due(again) == [sps30.CMD_READ_VALUES]
    decoder.feed(read_reply(2.0))
    assert poller.due(again + 0.01) == []
    assert poller.next_due(again + 0.01) == again + 1.0  # the new phase: just after the sample
    # empty replies in a row: the retry doubles, never beyond the interval
    t, waits = again + 1.0, []
    assert poller.due(t) == [sps30.CMD_READ_VALUES]
    for _ in range(6):
        decoder.feed(sps30.encode_response(sps30.CMD_READ))
        assert poller.due(t) == []
        waits.append(round(poller.next_due(t) - t, 6))
        t = poller.next_due(t)
        assert poller.due(t) == [sps30.CMD_READ_VALUES]
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    decoder.feed(read_reply(3.0))  # values again: the next empty retries soon again
    assert poller.due(t + 0.01) == []
    t = poller.next_due(t)
    assert poller.due(t) == [sps30.CMD_READ_VALUES]
    decoder.feed(sps30.encode_response(sps30.CMD_READ))
    assert poller.due(t) == []
    assert round(poller.next_due(t) - t, 6) == 0.1


@pytest.mark.parametrize("phase", [0.0, 0.005, 0.01, 0.019, 0.5, 0.99])
def test_woken_only_when_due_it_gets_every_sample_of_a_free_running_device(phase: float) -> None:
    """The serial source wakes the poller at `next_due` (plus the event loop's latency, up to
    20 ms here) or when an answer arrives. Against the simulated SPS30 (a sample a second on its
    own clock, `phase` after the poller's schedule) it gets every sample with hardly more reads
    than samples; read exactly once a second with no retry, a device whose samples fall
    within that jitter loses some."""

    def run(decoder: sps30.Decoder, poller: sps30.Poller) -> tuple[int, int, int]:
        rng = random.Random(19)
        device = sps30.Device(random.Random(4))
        t = 100.0
        reads = 0
        for cmd in poller.on_open(t):
            decoder.feed(device.receive(cmd, t + phase))
        start = t
        while t < start + 300:
            t = max(t, poller.next_due(t)) + rng.uniform(0.0, 0.02)  # the loop's latency
            for cmd in poller.due(t):
                reads += 1
                decoder.feed(device.receive(cmd, t + rng.uniform(0.0, 0.002)))
        return len(device.sent), reads, decoder.counters.frames_ok

    sent, reads, ok = run(*sps30.new_session(sps30.Options()))
    assert ok == sent >= 298  # every sample of 300 s (the first comes a second after start)
    assert reads <= 310  # one read a sample, and a retry when the phase is found late
    if 0.0 < phase < 0.02:
        sent_plain, _, _ = run(sps30.Decoder(), sps30.Poller(sps30.Options()))  # no retry
        assert sent_plain < 290
