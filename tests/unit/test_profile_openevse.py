"""OpenEVSE profile: the sample topics decode to documented values; personal data stays marked."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from firmware_bridge.base import Aggregation, Decoded, DecodeError, Event
from firmware_bridge.drivers import MESSAGE_DRIVERS, openevse

SAMPLES = json.loads((Path(__file__).parents[1] / "data" / "mqtt_devices.json").read_text())
BASE = "openevse/a1b2"


def decode(key: str, payload: str | bytes, decoder: openevse.Decoder | None = None) -> list[Event]:
    dec = decoder or openevse.Decoder(openevse.Options.model_validate({}))
    raw = payload.encode() if isinstance(payload, str) else payload
    return dec.decode(f"{BASE}/{key}", raw)


def values(events: list[Event]) -> dict[str, object]:
    assert all(isinstance(e, Decoded) for e in events), events
    merged: dict[str, object] = {}
    for event in events:
        assert isinstance(event, Decoded)
        merged.update(event.values)
    return merged


EXPECTED = {
    "amp": {"current": 16.0},
    "voltage": {"voltage": 240.0},
    "pilot": {"pilot_current": 32.0},
    "wh": {"total_energy": 5.23},
    "session_energy": {"session_energy": 5.2305},
    "total_energy": {"total_energy": 1234.56},
    "temp": {"temperature": 29.5},
    "state": {"evse_state": "charging", "status": "CHARGING"},
    "vehicle": {"vehicle_connected": True},
    "status": {"firmware_status": "active"},
    "elapsed": {"elapsed": 3605.0},
    "rfid_auth": {"rfid_auth": True},
}


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_sample_topic_decodes_to_documented_value(key: str) -> None:
    payload = SAMPLES["openevse"]["topics"][f"<base>/{key}"]
    assert values(decode(key, payload)) == EXPECTED[key]


def test_every_sample_topic_is_covered_by_the_expectations() -> None:
    keys = {t.split("/")[-1] for t in SAMPLES["openevse"]["topics"] if t.startswith("<base>/")}
    assert keys == set(EXPECTED)


def test_announce_and_last_will_are_metadata_without_event() -> None:
    spec = SAMPLES["openevse"]["topics"]["openevse/announce/<id>"]
    dec = openevse.Decoder(openevse.Options.model_validate({}))
    assert dec.decode("openevse/announce/a1b2c3", spec["payload"].encode()) == []
    lwt = spec["payload"].replace("connected", "disconnected")
    assert dec.decode("openevse/announce/a1b2c3", lwt.encode()) == []


def test_unknown_key_is_a_counted_error_that_does_not_name_the_key() -> None:
    [event] = decode("brand_new_key", "12")
    assert isinstance(event, DecodeError) and event.reason == "unknown_key"
    assert "brand_new_key" not in event.detail


def test_known_diagnostic_and_personal_extras_are_dropped_quietly() -> None:
    assert decode("srssi", "-60") == []
    assert decode("vehicle_soc", "54") == []  # SoC is personal: never read
    dec = openevse.Decoder(openevse.Options.model_validate({"ignore_keys": ["my_custom"]}))
    assert decode("my_custom", "1", dec) == []


def test_temperature_false_means_no_sensor_not_an_error() -> None:
    assert decode("temp", "false") == []


@pytest.mark.parametrize(
    ("key", "payload"),
    [("amp", "sixteen"), ("voltage", "null"), ("vehicle", "2"), ("state", "3.5"),
     ("status", "exploded"), ("temp", "[295]"), ("session_energy", "1e999")],
)  # fmt: skip
def test_malformed_values_are_errors(key: str, payload: str) -> None:
    [event] = decode(key, payload)
    assert isinstance(event, DecodeError)
    assert payload not in event.detail or len(payload) < 4


def test_oversized_and_non_utf8_payloads_are_rejected() -> None:
    [big] = decode("amp", b"1" * 100)
    assert isinstance(big, DecodeError) and big.reason == "too_large"
    [bad] = decode("amp", b"\xff\xfe")
    assert isinstance(bad, DecodeError) and bad.reason == "not_utf8"


def test_session_energy_increments_start_after_a_baseline_and_reset_on_new_session() -> None:
    dec = openevse.Decoder(openevse.Options.model_validate({}))
    assert values(decode("session_energy", "5000", dec)) == {"session_energy": 5.0}
    assert values(decode("session_energy", "6250", dec)) == {
        "session_energy": 6.25, "energy_increment": 1.25}  # fmt: skip
    # a drop means a new session: all of its energy so far is new
    assert values(decode("session_energy", "300", dec)) == {
        "session_energy": 0.3, "energy_increment": 0.3}  # fmt: skip


def test_rfid_uid_counts_once_per_card_and_is_never_kept_in_a_reading() -> None:
    uid = SAMPLES["openevse"]["topics"]["<base>/rfid_auth"]
    dec = openevse.Decoder(openevse.Options.model_validate({}))
    first = decode("rfid_auth", uid, dec)
    assert values(first) == {"rfid_auth": True}
    assert decode("rfid_auth", uid, dec) == []  # repeated every 30 s while authenticated
    assert decode("rfid_auth", "", dec) == []  # card released
    assert values(decode("rfid_auth", uid, dec)) == {"rfid_auth": True}
    assert uid not in repr(first) and uid.lower() not in repr(first)


@pytest.mark.parametrize(
    ("code", "name", "ocpi"),
    [(1, "not_connected", "AVAILABLE"), (2, "connected", "CHARGING"),
     (3, "charging", "CHARGING"), (6, "gfci_fault", "OUTOFORDER"),
     (254, "sleeping", "INOPERATIVE"), (255, "disabled", "INOPERATIVE"),
     (0, "starting", "UNKNOWN")],
)  # fmt: skip
def test_j1772_state_maps_to_ocpi_evse_status(code: int, name: str, ocpi: str) -> None:
    assert values(decode("state", str(code))) == {"evse_state": name, "status": ocpi}


def test_unmapped_state_code_reports_unknown_with_a_flag() -> None:
    [event] = decode("state", "77")
    assert isinstance(event, Decoded)
    assert event.values == {"status": "UNKNOWN"} and "unmapped_state" in event.flags


def test_every_state_code_has_an_ocpi_status_from_the_vocabulary() -> None:
    vocabulary = set(SAMPLES["ocpp16j"]["ocpi_221_evse_status"])
    assert set(openevse.STATE_TO_OCPI) == set(openevse.STATE_NAMES)
    assert set(openevse.STATE_TO_OCPI.values()) <= vocabulary


def test_catalogue_marks_session_data_and_rfid_personal_and_aggregates_them() -> None:
    cat = openevse.DRIVER.catalogue_for({})
    personal = {f.key for f in cat.personal_fields}
    assert personal == {"session_energy", "energy_increment", "elapsed", "rfid_auth"}
    energy, auths = cat.field("energy_delivered"), cat.field("authorisations")
    assert energy is not None and energy.aggregation is Aggregation.SUM
    assert energy.source == "energy_increment" and energy.unit == "kW.h"
    assert auths is not None and auths.aggregation is Aggregation.COUNT
    assert auths.source == "rfid_auth"
def test_simulated_burst_decodes_without_errors_on_the_configured_base() -> None:
    dec = openevse.Decoder(openevse.Options.model_validate({}))
    messages = openevse.simulate(random.Random(3), 1_741_946_401.0, "openevse/bay7/+")
    assert messages and all(t.startswith("openevse/bay7/") for t, _ in messages)
    events = [e for t, p in messages for e in dec.decode(t, p)]
    assert not [e for e in events if isinstance(e, DecodeError)]
    assert "status" in values(events)


def test_registered_in_the_mqtt_registry() -> None:
    assert MESSAGE_DRIVERS["openevse"] is openevse.DRIVER
