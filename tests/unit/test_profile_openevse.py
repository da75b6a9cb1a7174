"""OpenEVSE profile against what the charger's firmware publishes (tests/data/firmware/openevse.json:
every vector cites the firmware file and line it comes from): the default base topic, every key
of a status burst, every status word and state code, the retained housekeeping topics (ignored,
not errors) and malformed values (errors, never exceptions)."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest
from paho.mqtt.client import topic_matches_sub

from firmware_bridge.base import Aggregation, Decoded, DecodeError, Event, Ignored, Role
from firmware_bridge.drivers import MESSAGE_DRIVERS, openevse
from tests.unit.firmware_data import load, payload_bytes

VECTORS = load("firmware", "openevse.json")
BASE = VECTORS["default_base_topic"]
OPTIONS = openevse.Options(base_topic=BASE)
OCPI = set(json.loads((Path(__file__).parents[1] / "data" / "mqtt_devices.json").read_text())
           ["ocpp16j"]["ocpi_221_evse_status"])  # fmt: skip


def new() -> openevse.Decoder:
    return openevse.Decoder(OPTIONS)


def decode(key: str, payload: str | bytes, decoder: openevse.Decoder | None = None) -> list[Event]:
    raw = payload.encode() if isinstance(payload, str) else payload
    return (decoder or new()).decode(f"{BASE}/{key}", raw)


def values(events: list[Event]) -> dict[str, object]:
    assert all(isinstance(e, Decoded) for e in events), events
    merged: dict[str, object] = {}
    for event in events:
        assert isinstance(event, Decoded)
        merged.update(event.values)
    return merged


def vector_id(v: dict[str, object]) -> str:
    return f"{v['expect']}:{v['topic']}={str(v['payload'])[:16]}"


def without_session(values: dict[str, object]) -> dict[str, object]:
    """A reading without the RAM-only session label (tested on its own below)."""
    return {k: v for k, v in values.items() if k != "session"}


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=vector_id)
def test_every_firmware_vector_decodes_as_the_firmware_source_says(vector: dict) -> None:
    """One fresh decoder per vector: a first report, as after a gateway restart."""
    events = new().decode(vector["topic"], payload_bytes(vector["payload"]))
    assert len(events) == 1, events
    [event] = events
    if vector["expect"] == "reading":
        assert isinstance(event, Decoded), event
        assert without_session(dict(event.values)) == vector["values"]
        if "unmapped_state" in vector.get("note", ""):
            assert event.flags == ("unmapped_state",)
    elif vector["expect"] == "ignored":
        assert isinstance(event, Ignored), event
        assert event.reason.isidentifier()
    else:
        assert isinstance(event, DecodeError), event
        assert event.reason == vector["note"]
        assert vector["payload"] not in event.detail or len(vector["payload"]) < 4


def test_the_default_subscription_follows_the_chargers_hostname() -> None:
    topic = openevse.DRIVER.topic(OPTIONS)
    assert topic == f"{BASE}/+"
    on_base = [v for v in VECTORS["vectors"] if v["topic"].count("/") == 1 and v["topic"].startswith(BASE)]
    assert len(on_base) > 100 and all(topic_matches_sub(topic, v["topic"]) for v in on_base)
    status_keys = {v["topic"] for v in VECTORS["vectors"] if v["expect"] == "reading"}
    assert all(topic_matches_sub(topic, t) for t in status_keys)
    assert openevse.DRIVER.default_topic is None  # a fixed filter cannot match openevse-xxxx


def test_every_status_word_of_the_firmware_is_read_and_only_those() -> None:
    words = {v["payload"] for v in VECTORS["vectors"]
             if v["topic"] == f"{BASE}/status" and v["expect"] == "reading"}  # fmt: skip
    assert words == {"active", "disabled", "none", "unknown"} == openevse.FIRMWARE_STATUSES
    assert openevse.CATALOGUE.field("firmware_status").vocabulary == openevse.FIRMWARE_STATUSES
    [event] = decode("status", "sleeping")  # not a word the firmware has
    assert isinstance(event, DecodeError) and event.reason == "bad_value"


def test_every_state_code_has_a_name_and_an_ocpi_status_from_the_vocabularies() -> None:
    assert set(openevse.STATE_TO_OCPI) == set(openevse.STATE_NAMES)
    assert set(openevse.STATE_TO_OCPI.values()) <= OCPI
    cat = openevse.CATALOGUE
    assert cat.field("status").vocabulary == frozenset(openevse.STATE_TO_OCPI.values())
    assert cat.field("evse_state").vocabulary == frozenset(openevse.STATE_NAMES.values())
    codes = {int(v["payload"]) for v in VECTORS["vectors"]
             if v["topic"] == f"{BASE}/state" and v["expect"] == "reading"}  # fmt: skip
    assert set(openevse.STATE_NAMES) <= codes


def test_retained_housekeeping_and_commands_are_ignored_apart_from_errors() -> None:
    reasons = {}
    for v in VECTORS["vectors"]:
        if v["expect"] == "ignored":
            [event] = new().decode(v["topic"], payload_bytes(v["payload"]))
            reasons[v["topic"].removeprefix(f"{BASE}/")] = event.reason
    for key in ("config", "config_version", "claim", "override", "schedule", "limit"):
        assert reasons[key] == "housekeeping", key
    for key in ("override/set", "schedule/clear", "rapi/out", "rapi/in/$SC", "restart"):
        assert reasons[key] == "command", key
    assert reasons["openevse/announce/55ad"] == "announce"
    assert reasons["srssi"] == reasons["rfid_input"] == reasons["watthour"] == "not_collected"


def test_a_custom_filter_still_reads_the_last_level_as_the_key() -> None:
    dec = openevse.Decoder(openevse.Options(base_topic="chargers/bay-7"))
    assert values(dec.decode("chargers/bay-7/amp", b"16000")) == {"current": 16.0}
    assert values(dec.decode("elsewhere/amp", b"8000")) == {"current": 8.0}
    assert dec.decode("chargers/bay-7/claim/set", b"release") == [Ignored("command")]


def test_user_listed_keys_are_ignored_quietly() -> None:
    dec = openevse.Decoder(openevse.Options(base_topic=BASE, ignore_keys=("my_custom",)))
    assert decode("my_custom", "1", dec) == [Ignored("not_collected")]
    [event] = decode("my_custom", "1")
    assert isinstance(event, DecodeError) and event.reason == "unknown_key"
    assert "my_custom" not in event.detail


@pytest.mark.parametrize(
    ("key", "payload", "reason"),
    [("amp", "sixteen", "wrong_type"), ("voltage", "null", "wrong_type"),
     ("vehicle", "2", "wrong_type"), ("state", "3.5", "wrong_type"),
     ("status", "exploded", "bad_value"), ("temp", "[295]", "wrong_type"),
     ("session_energy", "1e999", "wrong_type"), ("session_energy", "-1", "bad_value"),
     ("frequency", "fifty", "wrong_type"), ("amp", "1" * 100, "too_large"),
     ("amp", b"\xff\xfe", "not_utf8")],
)  # fmt: skip
def test_malformed_values_are_errors_that_never_echo_the_value(key: str, payload: str | bytes,
                                                                reason: str) -> None:  # fmt: skip
    [event] = decode(key, payload)
    assert isinstance(event, DecodeError) and event.reason == reason
    assert str(payload) not in event.detail or len(str(payload)) < 4


def test_session_energy_increments_start_after_a_baseline_and_reset_on_new_session() -> None:
    dec = new()
    first = values(decode("session_energy", "5000", dec))
    assert without_session(first) == {"session_energy": 5.0}
    second = values(decode("session_energy", "6250", dec))
    assert without_session(second) == {"session_energy": 6.25, "energy_increment": 1.25}
    # the deprecated Ws duplicate of the same register does not feed the increment
    assert decode("wattsec", "22500000", dec) == [Ignored("not_collected")]
    # a drop means a new session: all of its energy so far is new, and it is another session
    third = values(decode("session_energy", "300", dec))
    assert without_session(third) == {"session_energy": 0.3, "energy_increment": 0.3}
    assert first["session"] == second["session"] != third["session"]


SESSIONS = VECTORS["sessions"]["messages"]


def session_labels(decoder: openevse.Decoder) -> list[tuple[dict[str, object], object]]:
    """(message, the session label its reading carries) for every message the gateway hears."""
    out = []
    for m in SESSIONS:
        if m.get("lost"):
            continue
        [event] = decoder.decode(m["topic"], payload_bytes(m["payload"]))
        assert isinstance(event, Decoded), (m, event)
        out.append((m, event.values.get("session")))
    return out


def test_sessions_follow_the_firmwares_own_boundaries() -> None:
    """Five plug-ins as the firmware publishes them (tests/data/firmware/openevse.json
    `sessions`, each message citing the firmware lines it follows): connects, clears in either
    order around the unplug, a lost unplug and clear, a session first heard mid-way. Every
    reading that carries a plug-in's quantity carries that plug-in's label, one label per
    plug-in; zeroed counters carry none."""
    heard = session_labels(new())
    by_plugin: dict[str, set[object]] = {}
    for m, label in heard:
        if "session" not in m:
            continue  # carries nothing that counts either way
        if m["session"] is None:
            assert label is None, m
        else:
            assert label is not None, m
            by_plugin.setdefault(m["session"], set()).add(label)
    assert sorted(by_plugin) == ["1", "2", "3", "4", "5"]
    assert all(len(labels) == 1 for labels in by_plugin.values()), by_plugin
    assert len(set.union(*by_plugin.values())) == 5  # five plug-ins, five sessions
    # every register step that is a plug-in's energy is credited to it, so the sum of the
    # steps each label gets is that plug-in's share of the register
    register = [(float(m["payload"]), m.get("session"), label) for m, label in heard
                if m["topic"].endswith("/total_energy")]  # fmt: skip
    for (before, _, _), (after, plugin, label) in itertools.pairwise(register):
        if after > before and plugin is not None:
            assert {label} == by_plugin[plugin], (before, after, plugin)


def test_a_session_label_stays_in_ram_and_names_no_one() -> None:
    """The label is the charger's topic and a count: no card, no time, nothing from a person;
    two chargers never share one. It is an identifier, so it is pseudonymised and never leaves."""
    assert openevse.CATALOGUE.field("session").role is Role.IDENTIFIER  # type: ignore[union-attr]
    one, other = new(), openevse.Decoder(openevse.Options(base_topic="openevse-1a2b"))
    a = one.decode(f"{BASE}/session_energy", b"1500")
    b = other.decode("openevse-1a2b/session_energy", b"1500")
    labels = [e.values["session"] for e in (*a, *b) if isinstance(e, Decoded)]
    assert len(set(labels)) == 2
    assert all(str(label).startswith(("openevse-55ad#", "openevse-1a2b#")) for label in labels)


def test_the_lifetime_register_is_read_from_one_key_only() -> None:
    """watthour >= 1e7 keeps 8 significant digits: read beside total_energy it would step down
    (12345.6789 -> 12345.678), which the per-window increment takes for a reset."""
    dec = new()
    assert values(decode("total_energy", "12345.6789", dec)) == {"total_energy": 12345.6789}
    assert decode("watthour", "1.2345678e7", dec) == [Ignored("not_collected")]


def test_rfid_uid_counts_once_per_card_and_is_never_kept_in_a_reading() -> None:
    uid = next(v["payload"] for v in VECTORS["vectors"]
               if v["topic"].endswith("/rfid_auth") and v["expect"] == "reading")  # fmt: skip
    dec = new()
    first = decode("rfid_auth", uid, dec)
    assert values(first) == {"rfid_auth": True}
    assert decode("rfid_auth", uid, dec) == [Ignored("same_card")]  # repeated every 30 s
    assert decode("rfid_auth", "", dec) == [Ignored("no_card")]  # card released
    assert values(decode("rfid_auth", uid, dec)) == {"rfid_auth": True}
    assert uid not in repr(first) and uid.lower() not in repr(first)


def test_catalogue_roles_registers_events_and_their_aggregates() -> None:
    cat = openevse.CATALOGUE
    roles = {f.key: f.role for f in cat.fields if not f.derived}
    assert {k for k, r in roles.items() if r is Role.RUNNING_TOTAL} == {"total_energy", "session_energy"}
    assert {k for k, r in roles.items() if r is Role.PERSON_EVENT} == {
        "energy_increment", "rfid_auth", "elapsed"}  # fmt: skip
    assert {k for k, r in roles.items() if r is Role.IDENTIFIER} == {"rfid_uid", "session"}
    assert roles["status"] is roles["vehicle_connected"] is Role.READING
    aggregates = {f.key: (f.aggregation, f.source) for f in cat.fields if f.derived}
    assert aggregates == {
        "total_energy_increment": (Aggregation.INCREMENT, "total_energy"),
        "energy_delivered": (Aggregation.SUM, "energy_increment"),
        "authorisations": (Aggregation.COUNT, "rfid_auth"),
    }


def test_the_base_topic_refuses_wildcards_and_without_it_the_sensor_needs_a_topic() -> None:
    from pydantic import ValidationError

    from gateway.config import parse_config
    from gateway.plan import PlanError, build_plan

    for bad in ({"base_topic": "openevse-+"}, {"base_topic": "a/#"}, {"base_topic": "/x"},
                {"base_topic": ""}):  # fmt: skip
        with pytest.raises(ValidationError):
            openevse.Options.model_validate(bad)
    doc = ("gateway: {id: g, borough: camden, location: {lat: 51.5, lon: -0.1}}\n"
           "inputs: {mqtt: {}}\nsinks: {file: {}}\nsensors:\n  - {id: ev, driver: openevse, mqtt: {}}\n")  # fmt: skip
    with pytest.raises(PlanError) as e:
        build_plan(parse_config(doc, "gw.yaml", {}))
    assert "sensors[0].mqtt.topic: openevse has no default topic" in str(e.value)
    assert "docs/drivers/openevse.md" in str(e.value)


def test_simulated_burst_is_the_firmware_burst_and_decodes_without_errors() -> None:
    topic = openevse.DRIVER.topic(OPTIONS)
    messages = openevse.simulate(random.Random(3), 1_741_946_401.0, topic)
    assert messages and all(topic_matches_sub(topic, t) for t, _ in messages)
    vector_keys = {v["topic"].removeprefix(f"{BASE}/") for v in VECTORS["vectors"]}
    assert {t.removeprefix(f"{BASE}/") for t, _ in messages} <= vector_keys
    dec = new()
    events = [e for t, p in messages for e in dec.decode(t, p)]
    assert not [e for e in events if isinstance(e, DecodeError)]
    assert any(isinstance(e, Ignored) for e in events)
    read = {k for e in events if isinstance(e, Decoded) for k in e.values}
    assert {"status", "current", "total_energy", "session_energy"} <= read


def test_registered_in_the_mqtt_registry() -> None:
    assert MESSAGE_DRIVERS["openevse"] is openevse.DRIVER
