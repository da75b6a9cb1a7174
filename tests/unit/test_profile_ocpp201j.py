"""OCPP 2.0.1 driver: frames as MicroOcpp writes them (tests/data/ocpp201j_vectors.json cites the
files and commit), the status table against the OCA schema's own enumeration, sessions, units,
and hostile input."""

from __future__ import annotations

import ast
import inspect
import json
import random
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocpp.messages import Call, _validate_payload
from pydantic import ValidationError

from firmware_bridge import jsonpayload, ocppj
from firmware_bridge.base import Aggregation, Decoded, DecodeError, Event, Role
from firmware_bridge.drivers import ocpp201j

DATA = Path(__file__).parents[1] / "data"
VECTORS = json.loads((DATA / "ocpp201j_vectors.json").read_text())
FRAMES: list[list[Any]] = VECTORS["frames"]
OCPI = json.loads((DATA / "mqtt_devices.json").read_text())["ocpp16j"]["ocpi_221_evse_status"]
SCHEMAS = Path(inspect.getfile(_validate_payload)).parent / "v201" / "schemas"
TOPIC = "ocpp/CS-0042/in"


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def feed(decoder: ocpp201j.Decoder, *frames: Any, topic: str = TOPIC) -> list[Event]:
    out: list[Event] = []
    for frame in frames:
        raw = frame.encode() if isinstance(frame, str) else json.dumps(frame).encode()
        out += decoder.decode(topic, raw)
    return out


def decoded(events: list[Event]) -> list[Decoded]:
    assert not [e for e in events if isinstance(e, DecodeError)], events
    return [e for e in events if isinstance(e, Decoded)]


def call(action: str, body: dict[str, Any], uid: str = "u1") -> list[Any]:
    return [2, uid, action, body]


def status(connector_status: str, evse: int = 1, connector: int = 1) -> list[Any]:
    return call("StatusNotification", {"timestamp": "2025-03-14T10:00:00Z",
                                       "connectorStatus": connector_status, "evseId": evse,
                                       "connectorId": connector})  # fmt: skip


def sample(value: Any, measurand: str = "Energy.Active.Import.Register", context: str | None = None,
           unit: str | None = "Wh", multiplier: int | None = None, **extra: Any) -> dict[str, Any]:  # fmt: skip
    s: dict[str, Any] = {"value": value, "measurand": measurand, **extra}
    if context is not None:
        s["context"] = context
    measure: dict[str, Any] = {}
    if unit is not None:
        measure["unit"] = unit
    if multiplier is not None:
        measure["multiplier"] = multiplier
    if measure:
        s["unitOfMeasure"] = measure
    return s


def tx(kind: str, seq: int, samples: list[dict[str, Any]] | None = None, txid: str = "T1",
       evse: int | None = None, uid: str | None = None) -> list[Any]:  # fmt: skip
    body: dict[str, Any] = {"eventType": kind, "timestamp": "2025-03-14T10:00:00Z",
                            "triggerReason": "Trigger", "seqNo": seq,
                            "transactionInfo": {"transactionId": txid}}  # fmt: skip
    if evse is not None:
        body["evse"] = {"id": evse, "connectorId": 1}
    if samples is not None:
        body["meterValue"] = [{"timestamp": "2025-03-14T10:00:00Z", "sampledValue": samples}]
    return call("TransactionEvent", body, uid or f"{txid}-{seq}")


# --------------------------------------------------------------------------- the vectors


def test_the_vectors_are_valid_ocpp_201_by_the_oca_schemas() -> None:
    calls = [frame for frame in FRAMES if frame[0] == 2]
    assert {c[2] for c in calls} >= {"StatusNotification", "TransactionEvent", "MeterValues"}, calls
    for frame in calls:
        _validate_payload(Call(frame[1], frame[2], frame[3]), "2.0.1")  # raises if not


def test_a_microocpp_session_decodes_to_the_documented_readings() -> None:
    dec = ocpp201j.Decoder(ocpp201j.Options())
    got: list[tuple[int, Decoded]] = []
    for i, frame in enumerate(FRAMES):
        got += [(i, e) for e in decoded(feed(dec, frame))]
    want = VECTORS["expected"]
    assert [(i, dict(e.values)) for i, e in got] == [(w["frame"], w["values"]) for w in want]
    assert [e.device_time for _, e in got] == [epoch(w["device_time"]) for w in want]


def test_no_id_token_ever_appears_and_the_transaction_id_only_as_a_declared_identifier() -> None:
    dec = ocpp201j.Decoder(ocpp201j.Options())
    events = [e for frame in FRAMES for e in feed(dec, frame)]
    token, txid = VECTORS["identifiers"]
    assert token not in repr(events)
    for e in decoded(events):
        assert all(txid not in str(v) for k, v in e.values.items() if k != "transaction_id")
        # every reading of the session names it, so the privacy stage counts sessions
        if {"energy", "power", "session_start", "session_end"} & set(e.values):
            assert e.values["transaction_id"] == txid


def test_the_catalogue_declares_session_data_personal_as_the_16_driver_does() -> None:
    cat = ocpp201j.catalogue_for(ocpp201j.Options())
    assert {f.key for f in cat.personal_fields} == {
        "session_start", "session_end", "session_energy", "energy", "power", "id_token",
        "transaction_id"}  # fmt: skip
    assert {f.key for f in cat.fields if f.role is Role.IDENTIFIER} == {"id_token", "transaction_id"}
    assert cat.field("energy").role is Role.RUNNING_TOTAL  # type: ignore[union-attr]
    assert {f.key for f in cat.fields if f.role is Role.PERSON_EVENT} == {
        "power", "session_start", "session_end", "session_energy"}  # fmt: skip
    aggregates = {f.key: (f.aggregation, f.source) for f in cat.fields if f.source}
    assert aggregates == {
        "sessions_started": (Aggregation.COUNT, "session_start"),
        "sessions_ended": (Aggregation.COUNT, "session_end"),
        "energy_delivered": (Aggregation.SUM, "session_energy"),
        "energy_metered": (Aggregation.INCREMENT, "energy"),
    }
    # the same properties, units, types and roles as the 1.6 driver, so both feed the same
    # datastreams under the same disclosure rules
    from firmware_bridge.drivers import ocpp16j

    def shape(f: Any) -> tuple[Any, ...]:
        return (f.unit, f.observation_type, f.aggregation, f.source, f.role)

    old = {f.key: shape(f) for f in ocpp16j.CATALOGUE.fields}
    assert {f.key for f in cat.fields if f.key != "id_token"} <= set(old)
    for f in cat.fields:
        if f.key in old:
            assert old[f.key] == shape(f), f.key


# --------------------------------------------------------------------------- status


def test_every_201_connector_status_of_the_oca_schema_maps_into_ocpi() -> None:
    schema = json.loads((SCHEMAS / "StatusNotificationRequest.json").read_text())
    vocabulary = schema["definitions"]["ConnectorStatusEnumType"]["enum"]
    assert set(ocpp201j.OCPP_TO_OCPI) == set(vocabulary)
    assert set(ocpp201j.OCPP_TO_OCPI.values()) <= set(OCPI)
    for word in vocabulary:
        [event] = decoded(feed(ocpp201j.Decoder(ocpp201j.Options()), status(word)))
        assert event.values == {"connector_status": ocpp201j.OCPP_TO_OCPI[word], "connector_id": "1"}  # fmt: skip


def test_an_evse_is_in_use_while_any_of_its_connectors_is() -> None:
    dec = ocpp201j.Decoder(ocpp201j.Options())
    statuses = [e.values["connector_status"] for e in decoded(feed(
        dec, status("Available", 1, 1), status("Available", 1, 2), status("Occupied", 1, 2),
        status("Unavailable", 1, 1),  # the socket is blocked while the cable is in use
        status("Available", 1, 2), status("Faulted", 1, 1), status("Available", 2, 1)))]  # fmt: skip
    assert statuses == ["AVAILABLE", "AVAILABLE", "CHARGING", "CHARGING", "AVAILABLE",
                        "AVAILABLE", "AVAILABLE"]  # fmt: skip
    [last] = decoded(feed(dec, status("Unavailable", 1, 2)))
    assert last.values["connector_status"] == "OUTOFORDER"  # broken beats switched off


def test_an_unknown_status_is_published_as_unknown_and_flagged() -> None:
    [event] = decoded(feed(ocpp201j.Decoder(ocpp201j.Options()), status("Exploded")))
    assert event.values["connector_status"] == "UNKNOWN" and event.flags == ("unmapped_status",)


def test_evse_option_keeps_only_that_evse() -> None:
    dec = ocpp201j.Decoder(ocpp201j.Options(evse_id=2))
    events = decoded(feed(dec, status("Occupied", 1), status("Faulted", 2),
                          tx("Started", 0, [sample(0)], evse=1),
                          call("MeterValues", {"evseId": 1, "meterValue": [{"timestamp": "2025-03-14T10:00:00Z", "sampledValue": [sample(5)]}]})))  # fmt: skip
    assert [dict(e.values) for e in events] == [{"connector_status": "OUTOFORDER", "connector_id": "2"}]  # fmt: skip


# --------------------------------------------------------------------------- metering


def test_units_multipliers_and_what_is_never_collected() -> None:
    samples = [
        sample(12.5, unit="kWh"),
        sample(7.2, "Power.Active.Import", unit="W", multiplier=3),
        sample(2400, "Power.Active.Import", unit="W", phase="L1"),
        sample(54, "SoC", unit="Percent"),
        sample(30, "Energy.Active.Import.Register", location="EV"),
        sample(16, "Current.Import", unit="A"),
    ]
    body = {"evseId": 1, "meterValue": [{"timestamp": "2025-03-14T10:00:00+01:00", "sampledValue": samples}]}  # fmt: skip
    [event] = decoded(feed(ocpp201j.Decoder(ocpp201j.Options()), call("MeterValues", body)))
    assert event.values == {"energy": 12.5, "power": 7200.0}  # no session open, no EVSE id
    assert event.device_time == epoch("2025-03-14T09:00:00+00:00")


def test_every_meter_reading_of_a_session_names_it_and_none_names_its_evse() -> None:
    """The register at a session's first and last moment included: it is never published per
    reading, and the privacy stage needs it to credit the session's last step to that session."""
    dec = ocpp201j.Decoder(ocpp201j.Options())
    events = decoded(feed(dec, tx("Started", 0, [sample(1000, context="Transaction.Begin")], evse=1),
                          tx("Updated", 1, [sample(1500), sample(1600, context="Sample.Clock")]),
                          call("MeterValues", {"evseId": 1, "meterValue": [{"timestamp": "2025-03-14T10:00:00Z", "sampledValue": [sample(1700, context="Sample.Clock")]}]}),
                          call("MeterValues", {"evseId": 2, "meterValue": [{"timestamp": "2025-03-14T10:00:00Z", "sampledValue": [sample(40, context="Sample.Clock")]}]}),
                          tx("Ended", 2, [sample(3000, context="Transaction.End")])))  # fmt: skip
    assert [dict(e.values) for e in events] == [
        {"session_start": True, "transaction_id": "T1"},
        {"energy": 1.0, "transaction_id": "T1"},
        {"energy": 1.6, "transaction_id": "T1"},  # one reading per meterValue: the last sample wins
        {"energy": 1.7, "transaction_id": "T1"},  # MeterValues on the session's EVSE: its reading
        {"energy": 0.04},  # another EVSE, no session open there
        {"session_end": True, "session_energy": 2.0, "transaction_id": "T1"},
        {"energy": 3.0, "transaction_id": "T1"},
    ]


def test_bad_samples_are_errors_and_the_good_ones_still_decode() -> None:
    samples = [sample(1, unit="varh"), sample("lots", "Power.Active.Import", unit="W"), "junk",
               sample(100), sample(5, multiplier=99), sample(5, multiplier=True)]  # fmt: skip
    body = {"evseId": 1, "meterValue": [{"timestamp": "2025-03-14T10:00:00Z", "sampledValue": samples}]}  # fmt: skip
    events = feed(ocpp201j.Decoder(ocpp201j.Options()), call("MeterValues", body))
    assert isinstance(events[0], Decoded) and events[0].values["energy"] == 0.1
    assert sorted(e.reason for e in events[1:] if isinstance(e, DecodeError)) == [
        "wrong_type", "wrong_type", "wrong_unit", "wrong_unit", "wrong_unit"]  # fmt: skip


# --------------------------------------------------------------------------- sessions


def test_a_retried_transaction_event_counts_once() -> None:
    dec = ocpp201j.Decoder(ocpp201j.Options())
    start = tx("Started", 0, [sample(0)], evse=1)
    end = tx("Ended", 1, [sample(2000, context="Transaction.End")])
    events = decoded(feed(dec, start, start, end, [3, "x", {}], end))
    assert [dict(e.values) for e in events] == [
        {"session_start": True, "transaction_id": "T1"}, {"energy": 0.0, "transaction_id": "T1"},
        {"session_end": True, "session_energy": 2.0, "transaction_id": "T1"},
        {"energy": 2.0, "transaction_id": "T1"}]  # fmt: skip


def test_session_energy_unknown_or_backwards_is_flagged_not_guessed() -> None:
    dec = ocpp201j.Decoder(ocpp201j.Options())
    [end, _] = decoded(feed(dec, tx("Ended", 5, [sample(9000, context="Transaction.End")], txid="never-started")))  # fmt: skip
    assert end.values == {"session_end": True, "transaction_id": "never-started"}
    assert end.flags == ("session_energy_unknown",)
    feed(dec, tx("Started", 0, None, txid="no-meter", evse=1))  # a station sending no start register
    [end, _] = decoded(feed(dec, tx("Ended", 1, [sample(500)], txid="no-meter")))
    assert end.flags == ("session_energy_unknown",)
    feed(dec, tx("Started", 0, [sample(5000)], txid="replaced-meter", evse=1))
    [end, _] = decoded(feed(dec, tx("Ended", 1, [sample(10, context="Transaction.End")], txid="replaced-meter")))  # fmt: skip
    assert end.flags == ("meter_went_backwards",) and "session_energy" not in end.values


def test_the_last_register_of_the_session_closes_it_when_ended_has_none() -> None:
    dec = ocpp201j.Decoder(ocpp201j.Options())
    events = decoded(feed(dec, tx("Started", 0, [sample(1000)], evse=1),
                          tx("Updated", 1, [sample(1800)]), tx("Ended", 2)))  # fmt: skip
    assert events[-1].values == {"session_end": True, "session_energy": 0.8, "transaction_id": "T1"}


def test_sessions_on_other_stations_are_not_confused() -> None:
    dec = ocpp201j.Decoder(ocpp201j.Options())
    feed(dec, tx("Started", 0, [sample(0)], evse=1), topic="ocpp/OTHER/in")
    [end, _] = decoded(feed(dec, tx("Ended", 1, [sample(10)])))
    assert end.flags == ("session_energy_unknown",)


@pytest.mark.parametrize(
    "frame",
    [[3, "x", {"idTokenInfo": {"status": "Accepted"}, "totalCost": 12.5}],
     [4, "x", "NotImplemented", "", {}], [2, "x", "Heartbeat", {}],
     [2, "x", "Authorize", {"idToken": {"idToken": "04A1B2C3D4E5F6", "type": "ISO14443"}}],
     [2, "x", "RequestStartTransaction", {"idToken": {"idToken": "AB", "type": "Central"}, "remoteStartId": 1}],
     [2, "x", "NotifyEvent", {"generatedAt": "2025-03-14T10:00:00Z", "seqNo": 0, "eventData": []}],
     [2, "x", "BootNotification", {"chargingStation": {"model": "M", "vendorName": "V"}, "reason": "PowerUp"}]],
)  # fmt: skip
def test_protocol_traffic_without_street_data_yields_nothing(frame: list[Any]) -> None:
    assert feed(ocpp201j.Decoder(ocpp201j.Options()), frame) == []


@pytest.mark.parametrize(
    ("frame", "reason"),
    [({"a": 1}, "wrong_type"), ([], "wrong_type"), ("not json", "not_json"),
     ([2, "x", "Heartbeat"], "bad_frame"), ([7, "x", {}], "bad_frame"),
     ([2, 5, "Heartbeat", {}], "bad_frame"), ([2, "x" * 37, "Heartbeat", {}], "bad_frame"),
     ([True, "x", {}], "bad_frame"), ([3, "x", []], "bad_frame"),
     ([2, "x", "StartTransaction", {}], "unknown_action"),  # 1.6 only
     ([2, "x", "StatusNotification", {"connectorStatus": "Available"}], "missing_field"),
     ([2, "x", "StatusNotification", {"evseId": 1, "connectorId": 1}], "missing_field"),
     ([2, "x", "MeterValues", {"evseId": 1, "meterValue": {}}], "missing_field"),
     ([2, "x", "MeterValues", {"meterValue": []}], "missing_field"),
     ([2, "x", "TransactionEvent", {"eventType": "Begun", "seqNo": 0, "transactionInfo": {"transactionId": "a"}}], "missing_field"),
     ([2, "x", "TransactionEvent", {"eventType": "Started", "seqNo": 0, "transactionInfo": {"transactionId": 5}}], "missing_field"),
     ([2, "x", "TransactionEvent", {"eventType": "Started", "seqNo": 0, "transactionInfo": {"transactionId": "a"}, "meterValue": {}}], "wrong_type")],
)  # fmt: skip
def test_malformed_frames_are_errors_with_a_reason(frame: object, reason: str) -> None:
    [event] = feed(ocpp201j.Decoder(ocpp201j.Options()), frame)
    assert isinstance(event, DecodeError) and event.reason == reason


def test_remembered_state_is_bounded() -> None:
    dec = ocpp201j.Decoder(ocpp201j.Options())
    for i in range(3 * ocpp201j.MAX_STATE):
        feed(dec, tx("Started", 0, [sample(i)], txid=f"t{i}", evse=i), status("Occupied", i))
        feed(dec, *[status("Available", 1, c) for c in range(3 * ocpp201j.MAX_CONNECTORS)])
    assert len(dec._sessions) <= ocpp201j.MAX_STATE and len(dec._seen) <= ocpp201j.MAX_STATE
    assert len(dec._connectors) <= ocpp201j.MAX_STATE
    assert all(len(c) <= ocpp201j.MAX_CONNECTORS for c in dec._connectors.values())


def test_options() -> None:
    assert ocpp201j.Options.model_validate({"evse_id": 1, "max_payload_bytes": 1024}).evse_id == 1
    with pytest.raises(ValidationError) as e:
        ocpp201j.Options.model_validate({"evse_id": -1, "connector_id": 1})
    assert {err["loc"][0] for err in e.value.errors()} == {"evse_id", "connector_id"}


def test_a_simulated_two_hour_cycle_yields_one_whole_valid_session() -> None:
    dec = ocpp201j.Decoder(ocpp201j.Options())
    rng = random.Random(5)
    start = 1_741_946_400.0 - 1_741_946_400 % 7200
    events: list[Event] = []
    for t in range(0, 7200, 30):
        for topic, body in ocpp201j.simulate(rng, start + t, "ocpp/+/in"):
            frame = json.loads(body)
            _validate_payload(Call(frame[1], frame[2], frame[3]), "2.0.1")
            events += dec.decode(topic, body)
    keys = [k for e in decoded(events) for k in e.values]
    assert keys.count("session_start") == 1 and keys.count("session_end") == 1
    energy = [e.values["session_energy"] for e in decoded(events) if "session_energy" in e.values]
    assert energy == [10.8]


# --------------------------------------------------------------------------- hostile input


def _details() -> set[str]:
    """Every fixed DecodeError detail written in the driver and the JSON loader."""
    texts: set[str] = set()
    for module in (ocpp201j, ocppj, jsonpayload):
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, ast.Call) and len(node.args) >= 2:
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if name in ("DecodeError", "err") and isinstance(node.args[1], ast.Constant):
                    texts.add(node.args[1].value)
    texts.add(jsonpayload.too_large(jsonpayload.DEFAULT_MAX_PAYLOAD_BYTES).detail)
    return texts


DETAILS = _details()
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)  # fmt: skip


def mutate(data: st.DataObject, value: Any, depth: int = 0) -> Any:
    """A vector with one value somewhere replaced by arbitrary JSON."""
    if depth > 6 or data.draw(st.integers(0, 4)) == 0:
        return data.draw(JSON)
    if isinstance(value, list) and value:
        i = data.draw(st.integers(0, len(value) - 1))
        return [*value[:i], mutate(data, value[i], depth + 1), *value[i + 1:]]
    if isinstance(value, dict) and value:
        key = data.draw(st.sampled_from(sorted(value)))
        return {**value, key: mutate(data, value[key], depth + 1)}
    return data.draw(JSON)


def check(events: list[Event]) -> None:
    assert isinstance(events, list)
    for e in events:
        assert isinstance(e, Decoded | DecodeError)
        if isinstance(e, DecodeError):
            assert e.reason != "decoder_bug", "the decoder raised on this input"
            assert e.detail in DETAILS, e.detail  # fixed words: nothing from the payload


@FUZZ
@given(payload=st.binary(max_size=300))
def test_random_bytes_never_raise_or_echo(payload: bytes) -> None:
    check(ocpp201j.Decoder(ocpp201j.Options()).decode(TOPIC, payload))


@FUZZ
@given(data=st.data())
def test_mutated_vectors_never_raise_or_echo_or_leak(data: st.DataObject) -> None:
    dec = ocpp201j.Decoder(ocpp201j.Options())
    for frame in FRAMES:  # a decoder that already holds session state
        dec.decode(TOPIC, json.dumps(frame).encode())
    frame = mutate(data, data.draw(st.sampled_from(FRAMES)))
    events = dec.decode(TOPIC, json.dumps(frame).encode())
    check(events)
    token, txid = VECTORS["identifiers"]
    for e in events:
        if isinstance(e, Decoded):
            assert set(e.values) <= {f.key for f in ocpp201j.CATALOGUE.fields}
            assert "id_token" not in e.values and token not in repr(e.values)
            # the transaction id only ever in its declared identifier field
            assert all(txid not in str(v) for k, v in e.values.items() if k != "transaction_id")
