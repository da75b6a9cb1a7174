"""OCPP 1.6J profile: sample frames, the OCPP->OCPI status table, and session bookkeeping."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge.base import Aggregation, Decoded, DecodeError, Event, Role
from firmware_bridge.drivers import ocpp16j

SAMPLES = json.loads((Path(__file__).parents[1] / "data" / "mqtt_devices.json").read_text())
MESSAGES = SAMPLES["ocpp16j"]["messages"]
TOPIC = "ocpp/CB-0042/in"


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def feed(decoder: ocpp16j.Decoder, *frames: Any, topic: str = TOPIC) -> list[Event]:
    out: list[Event] = []
    for frame in frames:
        raw = frame.encode() if isinstance(frame, str) else json.dumps(frame).encode()
        out += decoder.decode(topic, raw)
    return out


def only(events: list[Event]) -> Decoded:
    assert len(events) == 1 and isinstance(events[0], Decoded), events
    return events[0]


def call(action: str, body: dict[str, Any], uid: str = "u1") -> list[Any]:
    return [2, uid, action, body]


def test_status_notification_maps_to_ocpi_with_device_time() -> None:
    event = only(feed(ocpp16j.Decoder(ocpp16j.Options.model_validate({})), MESSAGES[0]))
    assert event.values == {"connector_status": "CHARGING", "connector_id": "1",
                            "error_code": "NoError"}  # fmt: skip
    assert event.device_time == epoch("2026-03-14T10:12:31")


def test_start_transaction_yields_only_a_personal_marker_never_the_id_tag() -> None:
    event = only(feed(ocpp16j.Decoder(ocpp16j.Options.model_validate({})), MESSAGES[1]))
    assert event.values == {"session_start": True}
    assert event.device_time == epoch("2026-03-14T10:12:30")


def test_meter_values_convert_energy_to_kwh_and_power_to_w_and_drop_soc() -> None:
    event = only(feed(ocpp16j.Decoder(ocpp16j.Options.model_validate({})), MESSAGES[2]))
    assert event.values == {"energy": 123.15, "power": 7200.0, "transaction_id": "5531"}
    assert event.device_time == epoch("2026-03-14T10:27:30")


def test_stop_transaction_after_the_sample_sequence_yields_session_energy() -> None:
    events = feed(ocpp16j.Decoder(ocpp16j.Options.model_validate({})), *MESSAGES)
    stop = events[-1]
    assert isinstance(stop, Decoded)
    assert stop.values == {"session_end": True, "session_energy": pytest.approx(11.42),
                           "transaction_id": "5531"}  # fmt: skip
    assert stop.device_time == epoch("2026-03-14T11:40:02")


def test_no_id_tag_ever_appears_and_the_transaction_id_only_as_a_declared_identifier() -> None:
    events = feed(ocpp16j.Decoder(ocpp16j.Options.model_validate({})), *MESSAGES)
    assert "04A1B2C3D4E5F6" not in repr(events)
    for e in events:
        assert isinstance(e, Decoded)
        assert all("5531" not in str(v) for k, v in e.values.items() if k != "transaction_id")
    cat = ocpp16j.CATALOGUE
    assert cat.field("transaction_id").role is Role.IDENTIFIER  # type: ignore[union-attr]
    assert cat.field("energy").role is Role.RUNNING_TOTAL  # type: ignore[union-attr]
    assert {f.key for f in cat.fields if f.role is Role.PERSON_EVENT} == {
        "power", "session_start", "session_end", "session_energy"}  # fmt: skip


STATUS_TABLE = [
    ("Available", "AVAILABLE"), ("Preparing", "CHARGING"), ("Charging", "CHARGING"),
    ("SuspendedEVSE", "CHARGING"), ("SuspendedEV", "CHARGING"), ("Finishing", "CHARGING"),
    ("Reserved", "RESERVED"), ("Unavailable", "INOPERATIVE"), ("Faulted", "OUTOFORDER"),
]  # fmt: skip


@pytest.mark.parametrize(("ocpp", "ocpi"), STATUS_TABLE)
def test_every_ocpp_status_maps_to_its_documented_ocpi_status(ocpp: str, ocpi: str) -> None:
    body = {"connectorId": 2, "errorCode": "NoError", "status": ocpp}
    event = only(feed(ocpp16j.Decoder(ocpp16j.Options.model_validate({})), call("StatusNotification", body)))
    assert event.values["connector_status"] == ocpi
    assert event.device_time is None  # timestamp is optional in StatusNotification


def test_status_table_covers_the_ocpp_vocabulary_and_stays_in_ocpi() -> None:
    assert set(ocpp16j.OCPP_TO_OCPI) == set(SAMPLES["ocpp16j"]["status_values_1_6"])
    assert set(ocpp16j.OCPP_TO_OCPI.values()) <= set(SAMPLES["ocpp16j"]["ocpi_221_evse_status"])


def test_unknown_status_and_error_code_publish_unknown_with_flags() -> None:
    body = {"connectorId": 1, "errorCode": "Melted", "status": "Exploded"}
    event = only(feed(ocpp16j.Decoder(ocpp16j.Options.model_validate({})), call("StatusNotification", body)))
    assert event.values == {"connector_status": "UNKNOWN", "connector_id": "1"}
    assert set(event.flags) == {"unmapped_status", "unmapped_error_code"}


def test_kwh_and_kw_units_are_converted_and_phase_values_skipped() -> None:
    body = {"connectorId": 1, "meterValue": [{"timestamp": "2026-03-14T10:00:00+01:00",
            "sampledValue": [
                {"value": "12.5", "unit": "kWh"},  # default measurand is the energy register
                {"value": "7.2", "measurand": "Power.Active.Import", "unit": "kW"},
                {"value": "2400", "measurand": "Power.Active.Import", "phase": "L1"},
                {"value": "16", "measurand": "Current.Import", "unit": "A"}]}]}  # fmt: skip
    event = only(feed(ocpp16j.Decoder(ocpp16j.Options.model_validate({})), call("MeterValues", body)))
    assert event.values == {"energy": 12.5, "power": 7200.0}  # no transaction, no connector
    assert event.device_time == epoch("2026-03-14T09:00:00")


def test_unusable_samples_are_errors_but_good_ones_still_decode() -> None:
    body = {"connectorId": 1, "meterValue": [{"timestamp": "2026-03-14T10:00:00Z",
            "sampledValue": [{"value": "1", "unit": "varh"},
                             {"value": "lots", "measurand": "Power.Active.Import"},
                             "junk", {"value": "100", "unit": "Wh"}]}]}  # fmt: skip
    events = feed(ocpp16j.Decoder(ocpp16j.Options.model_validate({})), call("MeterValues", body))
    assert isinstance(events[0], Decoded) and events[0].values["energy"] == 0.1
    assert sorted(e.reason for e in events[1:] if isinstance(e, DecodeError)) == [
        "wrong_type", "wrong_type", "wrong_unit"]  # fmt: skip


def test_stop_is_linked_to_its_start_through_the_call_result() -> None:
    dec = ocpp16j.Decoder(ocpp16j.Options.model_validate({}))
    start = call("StartTransaction", {"connectorId": 1, "idTag": "T1", "meterStart": 1000,
                                      "timestamp": "2026-03-14T10:00:00Z"}, uid="s1")  # fmt: skip
    other = call("StartTransaction", {"connectorId": 2, "idTag": "T2", "meterStart": 50_000,
                                      "timestamp": "2026-03-14T10:05:00Z"}, uid="s2")  # fmt: skip
    assert feed(dec, start, other, [3, "s1", {"transactionId": 77, "idTagInfo": {}}]) == [
        Decoded({"session_start": True}, device_time=epoch("2026-03-14T10:00:00")),
        Decoded({"session_start": True}, device_time=epoch("2026-03-14T10:05:00")),
    ]
    stop = only(
        feed(
            dec,
            call(
                "StopTransaction",
                {"transactionId": 77, "meterStop": 4500, "timestamp": "2026-03-14T11:00:00Z"},
            ),
        )
    )
    assert stop.values == {"session_end": True, "session_energy": 3.5, "transaction_id": "77"}


def test_redelivered_start_and_stop_count_once() -> None:
    dec = ocpp16j.Decoder(ocpp16j.Options.model_validate({}))
    start = call("StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": 0}, "s")
    stop = call("StopTransaction", {"transactionId": 1, "meterStop": 2000}, "e")
    events = feed(dec, start, start, stop, stop)
    assert [e.values for e in events if isinstance(e, Decoded)] == [
        {"session_start": True}, {"session_end": True, "session_energy": 2.0, "transaction_id": "1"}]  # fmt: skip


def test_stop_without_a_known_start_still_counts_the_session_end() -> None:
    dec = ocpp16j.Decoder(ocpp16j.Options.model_validate({}))
    stop = only(feed(dec, call("StopTransaction", {"transactionId": 9, "meterStop": 10})))
    assert stop.values == {"session_end": True, "transaction_id": "9"}
    assert stop.flags == ("session_energy_unknown",)


def test_sessions_on_other_charge_boxes_are_not_confused() -> None:
    dec = ocpp16j.Decoder(ocpp16j.Options.model_validate({}))
    feed(dec, call("StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": 0}),
         topic="ocpp/OTHER/in")  # fmt: skip
    stop = only(feed(dec, call("StopTransaction", {"transactionId": 1, "meterStop": 10})))
    assert "session_energy" not in stop.values


def test_connector_option_keeps_only_that_connector() -> None:
    dec = ocpp16j.Decoder(ocpp16j.Options.model_validate({"connector_id": 2}))
    one = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
    two = {"connectorId": 2, "errorCode": "NoError", "status": "Faulted"}
    events = feed(dec, call("StatusNotification", one), call("StatusNotification", two))
    assert only(events).values["connector_status"] == "OUTOFORDER"


@pytest.mark.parametrize(
    "frame",
    [[3, "x", {"currentTime": "2026-03-14T10:00:00Z"}], [4, "x", "NotSupported", "", {}],
     [2, "x", "Heartbeat", {}], [2, "x", "Authorize", {"idTag": "04A1B2C3D4E5F6"}],
     [2, "x", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}]],
)  # fmt: skip
def test_protocol_traffic_without_street_data_yields_nothing(frame: list[Any]) -> None:
    assert feed(ocpp16j.Decoder(ocpp16j.Options.model_validate({})), frame) == []


@pytest.mark.parametrize(
    ("frame", "reason"),
    [({"a": 1}, "wrong_type"), ([], "wrong_type"), ([2, "x", "Heartbeat"], "bad_frame"),
     ([7, "x", {}], "bad_frame"), ([2, 5, "Heartbeat", {}], "bad_frame"),
     ([2, "x" * 37, "Heartbeat", {}], "bad_frame"), ([2, "x", "Heartbeat", []], "bad_frame"),
     ([True, "x", {}], "bad_frame"), ([2, "x", "LaunchRocket", {}], "unknown_action"),
     ([2, "x", "StatusNotification", {"status": "Available"}], "missing_field"),
     ([2, "x", "MeterValues", {"connectorId": 1, "meterValue": {}}], "missing_field"),
     ([2, "x", "StopTransaction", {"transactionId": "5531", "meterStop": 1}], "missing_field")],
)  # fmt: skip
def test_malformed_frames_are_errors_with_a_reason(frame: object, reason: str) -> None:
    [event] = feed(ocpp16j.Decoder(ocpp16j.Options.model_validate({})), frame)
    assert isinstance(event, DecodeError) and event.reason == reason


def test_remembered_sessions_are_bounded() -> None:
    dec = ocpp16j.Decoder(ocpp16j.Options.model_validate({}))
    for i in range(3 * ocpp16j.MAX_STATE):
        feed(dec, call("StartTransaction", {"connectorId": i, "idTag": "A", "meterStart": i},
                       uid=str(i)))  # fmt: skip
        feed(dec, [3, str(i), {"transactionId": i}])
    assert len(dec._open) <= ocpp16j.MAX_STATE
    assert len(dec._pending) <= ocpp16j.MAX_STATE
    assert len(dec._sessions) <= ocpp16j.MAX_STATE


def test_catalogue_keeps_session_data_personal_and_declares_aggregates() -> None:
    cat = ocpp16j.DRIVER.catalogue_for({})
    assert {f.key for f in cat.personal_fields} == {"session_start", "session_end", "session_energy",
                                                    "energy", "power", "transaction_id"}  # fmt: skip
    aggregates = {f.key: (f.aggregation, f.source) for f in cat.fields if f.source}
    assert aggregates == {
        "sessions_started": (Aggregation.COUNT, "session_start"),
        "sessions_ended": (Aggregation.COUNT, "session_end"),
        "energy_delivered": (Aggregation.SUM, "session_energy"),
        "energy_metered": (Aggregation.INCREMENT, "energy"),
    }
def test_a_simulated_two_hour_cycle_yields_a_whole_session() -> None:
    dec = ocpp16j.Decoder(ocpp16j.Options.model_validate({}))
    rng = random.Random(5)
    start = 1_741_946_400.0 - 1_741_946_400 % 7200
    events = [e for t in range(0, 7200, 30)
              for topic, body in ocpp16j.simulate(rng, start + t, "ocpp/+/in")
              for e in dec.decode(topic, body)]  # fmt: skip
    assert not [e for e in events if isinstance(e, DecodeError)]
    keys = [k for e in events if isinstance(e, Decoded) for k in e.values]
    # the simulator repeats start/stop on consecutive ticks with the same message id, as a
    # QoS 1 redelivery would; each session still counts once
    assert keys.count("session_start") == 1 and keys.count("session_end") == 1
    energy = [e.values["session_energy"] for e in events
              if isinstance(e, Decoded) and "session_energy" in e.values]  # fmt: skip
    assert energy == [10.8]
