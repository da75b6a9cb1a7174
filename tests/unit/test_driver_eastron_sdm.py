"""Eastron SDM over Modbus RTU: block plans, request/response matching, poller, simulator round
trip for both models (stream properties are in test_stream_decoders.py)."""

from __future__ import annotations

import random
import struct

import pytest

from firmware_bridge import modbus
from firmware_bridge.base import Decoded, DecodeError
from firmware_bridge.drivers import eastron_sdm as sdm
from tests.unit.stream_harness import errors, exchange, values


def reply(address: int, block: sdm.Block, value: float) -> bytes:
    """A read response for `block` with every float32 in it `value`."""
    floats = block.count // 2
    return modbus.encode_response(address, 4, struct.pack(f">{floats}f", *[value] * floats))


def test_every_block_has_a_distinct_byte_count_so_responses_identify_themselves() -> None:
    blocks = {b for plan in sdm.PLANS.values() for b in plan}
    assert len({b.byte_count for b in blocks}) == len(blocks)


def test_blocks_cover_the_documented_registers() -> None:
    registers = {key: reg for b in sdm.PLANS["sdm120"] for key, reg in b.fields}
    assert registers == {"voltage": 0x0000, "current": 0x0006, "power": 0x000C,
                         "frequency": 0x0046, "energy_import": 0x0048, "energy_total": 0x0156}  # fmt: skip
    keys = {key for b in sdm.PLANS["sdm630"] for key, _ in b.fields}
    assert keys == {f.key for f in sdm.CATALOGUE.fields}


def test_decode_error_details_do_not_depend_on_the_payload() -> None:
    def details(frame: bytes) -> list[str]:
        bad = frame[:-1] + bytes([frame[-1] ^ 1])
        return [e.detail for e in sdm.Decoder().feed(bad) if isinstance(e, DecodeError)]

    a = reply(1, sdm.ENERGY_TOTAL, 1.0)
    b = reply(1, sdm.ENERGY_TOTAL, 98765.4)
    assert details(a) == details(b) == ["Modbus CRC mismatch"]


def test_a_response_decodes_to_its_block_fields_as_short_decimals() -> None:
    frame = modbus.encode_response(1, 4, struct.pack(">2f", 50.02, 1234.56))
    (event,) = sdm.Decoder().feed(frame)
    assert isinstance(event, Decoded)
    assert event.values == {"frequency": 50.02, "energy_import": 1234.56}


def test_with_a_shared_transaction_an_unsolicited_response_is_rejected() -> None:
    decoder, _ = sdm.new_session(sdm.Options())
    (event,) = decoder.feed(reply(1, sdm.ENERGY_TOTAL, 1.0))
    assert isinstance(event, DecodeError)
    assert event.reason == "unsolicited"


def test_with_a_shared_transaction_a_response_from_another_device_is_rejected() -> None:
    decoder, poller = sdm.new_session(sdm.Options(address=5))
    poller.on_open(0.0)
    (event,) = decoder.feed(reply(6, sdm.INSTANT_L1, 1.0))
    assert isinstance(event, DecodeError)
    assert event.reason == "unexpected_response"
    assert decoder.counters.rejected == 1


def test_with_a_shared_transaction_an_exception_answers_the_request_in_flight() -> None:
    decoder, poller = sdm.new_session(sdm.Options())
    poller.on_open(0.0)
    (event,) = decoder.feed(modbus.encode_exception(1, 4, 2))
    assert isinstance(event, DecodeError)
    assert event.reason == "modbus_exception"
    assert decoder.transaction is not None and decoder.transaction.pending is None


def test_poller_reads_the_blocks_one_at_a_time_and_repeats_every_interval() -> None:
    """No answer at all: each block waits its timeout (plus the RTU silence), none is skipped."""
    poller = sdm.Poller(sdm.Options.model_validate({"address": 3, "interval_s": 10}))
    sent = [(0.0, poller.on_open(0.0))]
    for step in range(1, 120):
        t = step * 0.1
        sent += [(t, cmds) for cmds in [poller.due(t)] if cmds]
    requests = [(round(t, 1), modbus.parse_request(c)) for t, cmds in sent for c in cmds]
    assert requests[:4] == [
        (0.0, (3, 4, 0x0000, 14)),
        (0.4, (3, 4, 0x0046, 4)),  # 0.29 s timeout + 0.01 s silence, seen on the 0.1 s grid
        (0.8, (3, 4, 0x0156, 2)),
        (10.0, (3, 4, 0x0000, 14)),
    ]
    assert poller.counters.timeouts == 6 and poller.counters.answered == 0  # two cycles


def test_an_answered_block_is_followed_at_once_and_a_long_cycle_is_finished_not_cut() -> None:
    """The bug of issue 14: at interval_s 1 a slow cycle lost its last block (0x0156) to the
    next cycle. Now the cycle always completes; the next one starts late and is counted."""
    decoder, poller = sdm.new_session(sdm.Options.model_validate({"interval_s": 0.9}))
    device = sdm.Device(random.Random(1))
    wire: list[tuple[float, int]] = []

    def talk(t: float, frames: list[bytes]) -> None:
        for f in frames:
            wire.append((round(t, 3), modbus.parse_request(f)[2]))  # type: ignore[index]
            if t < 2.0 or len(wire) % 4:  # the meter ignores every fourth request from t=2 s
                decoder.feed(device.receive(f, t))

    talk(0.0, poller.on_open(0.0))
    t = 0.0
    while t < 20.0:
        t = max(t + 0.001, poller.next_due(t))
        talk(t, poller.due(t))
    blocks = [w[1] for w in wire]
    full = len(blocks) // 3 * 3  # the loop may stop mid-cycle
    assert blocks[:full] == [0x0000, 0x0046, 0x0156] * (full // 3), "every block, every cycle, in order"
    assert full >= 3 * 20
    assert wire[1][0] <= 0.012 and wire[2][0] <= 0.024, "an answered block is followed after the silence"
    c = poller.counters
    assert c.requests == len(wire) == c.answered + c.timeouts and c.timeouts > 0
    assert c.late_cycles == 0  # a 0.9 s interval has room for three timeouts


def test_sdm630_reads_system_values() -> None:
    poller = sdm.Poller(sdm.Options.model_validate({"model": "sdm630"}))
    (request,) = poller.on_open(0.0)
    assert modbus.parse_request(request) == (1, 4, 0x002A, 12)


@pytest.mark.parametrize("options, key", [({"address": 0}, "address"),
                                          ({"model": "sdm72"}, "model"),
                                          ({"interval_s": 0.1}, "interval_s")])  # fmt: skip
def test_bad_options_are_refused_naming_the_key(options: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError, match=key):
        sdm.Options.model_validate(options)


@pytest.mark.parametrize("model", ["sdm120", "sdm630"])
@pytest.mark.parametrize("shared", [False, True])
def test_device_round_trip_gives_exactly_the_sent_values(model: str, shared: bool) -> None:
    device = sdm.Device(random.Random(7), address=9)
    options = {"address": 9, "model": model, "interval_s": 2}
    if shared:
        decoder, poller = sdm.new_session(sdm.Options.model_validate(options))
    else:
        poller, decoder = sdm.Poller(sdm.Options.model_validate(options)), sdm.Decoder()
    events = exchange(device, poller, decoder, start=50.0, step=0.1, steps=400)
    assert len(device.sent) >= 60
    assert values(events) == device.sent
    assert not errors(events)
