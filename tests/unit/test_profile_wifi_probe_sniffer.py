"""Wi-Fi probe sniffer profile: every probe field is personal; only footfall may leave."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from firmware_bridge.base import Aggregation, Decoded, DecodeError, ObservationType
from firmware_bridge.drivers import wifi_probe_sniffer as sniffer

SAMPLES = json.loads((Path(__file__).parents[1] / "data" / "mqtt_devices.json").read_text())
PAYLOADS = [p.encode() for p in SAMPLES["wifi_probe_sniffer"]["payloads"]]
TOPIC = "footfall/sniffer-1/probes"


def decode(payload: bytes, options: dict[str, object] | None = None) -> list[object]:
    return list(sniffer.Decoder(sniffer.Options.model_validate(options or {})).decode(TOPIC, payload))


def test_single_probe_samples_decode_with_normalised_mac_and_device_time() -> None:
    assert decode(PAYLOADS[0]) == [Decoded(
        {"mac": "3c:22:fb:12:34:56", "rssi": -58, "randomised": False, "ch": 6},
        device_time=1741946401.120)]  # fmt: skip
    assert decode(PAYLOADS[1]) == [Decoded(
        {"mac": "da:a1:19:0f:5e:77", "rssi": -80, "randomised": True, "ch": 1},
        device_time=1741946401.733)]  # fmt: skip


def test_a_batch_yields_one_reading_per_probe() -> None:
    events = decode(PAYLOADS[2])
    assert [e.values["mac"] for e in events if isinstance(e, Decoded)] == [
        "3c:22:fb:12:34:56", "f2:11:00:aa:bb:cc"]  # fmt: skip
    assert [e.values["randomised"] for e in events if isinstance(e, Decoded)] == [False, True]


def test_sequence_number_is_dropped_at_decode() -> None:
    for payload in PAYLOADS:
        for event in decode(payload):
            assert isinstance(event, Decoded) and "seq" not in event.values


@pytest.mark.parametrize(
    ("mac", "expected"),
    [("3C-22-FB-12-34-56", "3c:22:fb:12:34:56"), ("3c22fb123456", "3c:22:fb:12:34:56"),
     ("3c:22:fb:12:34:56", "3c:22:fb:12:34:56"), ("3c:22-fb:12:34:56", None),
     ("3c:22:fb:12:34", None), ("zz:22:fb:12:34:56", None), (123, None)],
)  # fmt: skip
def test_mac_normalisation(mac: object, expected: str | None) -> None:
    assert sniffer.normalise_mac(mac) == expected


@pytest.mark.parametrize(("digit", "randomised"), [*[(d, True) for d in "26aeAE"],
                                                   *[(d, False) for d in "013457"]])  # fmt: skip
def test_locally_administered_bit_marks_a_randomised_mac(digit: str, randomised: bool) -> None:
    mac = sniffer.normalise_mac(f"0{digit}:00:00:00:00:01")
    assert mac is not None and sniffer.is_randomised(mac) is randomised


def test_bad_probes_in_a_batch_are_errors_and_good_ones_still_decode() -> None:
    batch = [{"mac": "3c:22:fb:12:34:56", "rssi": -60}, {"mac": "not-a-mac", "rssi": -60},
             {"rssi": -60}, {"mac": "3c:22:fb:12:34:57", "rssi": 20}, "probe",
             {"mac": "3c:22:fb:12:34:58", "rssi": -60, "ch": 0},
             {"mac": "3c:22:fb:12:34:59", "rssi": -60, "ts": -5}]  # fmt: skip
    events = decode(json.dumps(batch).encode())
    assert isinstance(events[0], Decoded) and events[0].device_time is None
    assert [e.reason for e in events[1:] if isinstance(e, DecodeError)] == [
        "bad_value",
        "missing_field",
        "bad_value",
        "wrong_type",
        "bad_value",
        "bad_value",
    ]


def test_batches_above_the_bound_are_rejected_whole() -> None:
    probe = {"mac": "3c:22:fb:12:34:56", "rssi": -60}
    [event] = decode(json.dumps([probe] * 501).encode())
    assert isinstance(event, DecodeError) and event.reason == "too_large"
    assert len(decode(json.dumps([probe] * 500).encode())) == 500
    [small] = decode(json.dumps([probe] * 3).encode(), {"max_probes_per_message": 2})
    assert isinstance(small, DecodeError) and small.reason == "too_large"


def test_every_decoded_field_is_personal_and_footfall_is_a_distinct_count_of_macs() -> None:
    cat = sniffer.DRIVER.catalogue_for({})
    assert {f.key for f in cat.personal_fields} == {"mac", "rssi", "randomised", "ch"}
    assert cat.public_fields == ()
    footfall = cat.field("footfall")
    assert footfall is not None and not footfall.personal
    assert footfall.aggregation is Aggregation.DISTINCT_COUNT and footfall.source == "mac"
    assert footfall.unit == "{devices}" and footfall.observation_type is ObservationType.COUNT


def test_simulated_crowd_has_randomised_macs_repeats_and_spread_rssi() -> None:
    rng = random.Random(11)
    messages = sniffer.simulate(rng, 1_741_946_401.0, sniffer.DRIVER.default_topic)
    assert all(t == "footfall/sniffer-1/probes" for t, _ in messages)
    dec = sniffer.Decoder(sniffer.Options.model_validate({}))
    events = [e for t, p in messages for e in dec.decode(t, p)]
    assert events and all(isinstance(e, Decoded) for e in events)
    macs = [e.values["mac"] for e in events if isinstance(e, Decoded)]
    rssi = [e.values["rssi"] for e in events if isinstance(e, Decoded)]
    assert len(set(macs)) < len(macs)  # some devices probe more than once
    assert any(e.values["randomised"] for e in events if isinstance(e, Decoded))
    assert max(rssi) - min(rssi) >= 15  # type: ignore[operator]
