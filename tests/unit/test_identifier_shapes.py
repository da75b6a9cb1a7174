"""Every identifier shape the egress guard and the log scrubber must catch, in raw, separator,
case, full-width and invisible-character variants; none of the gateway's own vocabulary
(Datastream ids, times, units, numbers, entity metadata, line protocol) may trip them; and a
planted shape in a free-text category field is blocked per observation through the profiles
that can carry free text (generic_json, senml)."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.drivers import MESSAGE_DRIVERS, REGISTERED, SERIAL_DRIVERS
from gateway.config import parse_config
from gateway.model import Observation, Reading, iso_duration, stable_id
from gateway.ops.logs import scrub
from gateway.plan import build_plan
from gateway.privacy.guard import EgressGuard, Verdict, find_identifier, normalise
from gateway.privacy.stage import PrivacyStage
from gateway.standards.lineprotocol import encode
from gateway.standards.sensorthings import entity_messages

# every unit any registered driver declares
UNITS = sorted({f.unit for d in REGISTERED if not getattr(d, "example_options", None)
                for f in d.catalogue_for(d.options()).fields if f.unit is not None})  # fmt: skip

SHAPES = [
    # MACs after a label, spaced, dotted per byte, and EUI-64 in every notation
    ("sn:3c-22-fb-12-34-56", "mac"),
    ("3c 22 fb 12 34 56", "mac"),
    ("3c.22.fb.12.34.56", "mac"),
    ("3c_22_fb_12_34_56", "mac"),
    ("3c:22:fb:ff:fe:12:34:56", "mac"),
    ("3c-22-fb-ff-fe-12-34-56", "mac"),
    ("3c22.fbff.fe12.3456", "mac"),
    ("3c22fbfffe123456", "id_token"),
    # IMEI (the GSMA's example), IMEISV, IMSI (UK MCC 234)
    ("490154203237518", "imei_imsi"),
    ("49-015420-323751-8", "imei_imsi"),
    ("49 015420 323751 8", "imei_imsi"),
    ("35-209900-176148-23", "imei_imsi"),
    ("234150999999999", "imei_imsi"),
    ("234 15 0999999999", "imei_imsi"),
    # phone numbers, international and UK, with spaces, brackets, dashes, dots (Ofcom drama ranges)
    ("+44 (0)20 7946 0958", "phone"),
    ("+44 20 7946 0958", "phone"),
    ("+44 7700 900123", "phone"),
    ("+1 (202) 555-0143", "phone"),
    ("+33 1 23 45 67 89", "phone"),
    ("+353 (0)1 234 5678", "phone"),
    ("0044 20 7946 0958", "phone"),
    ("00 44 113 496 0000", "phone"),
    ("(020) 7946 0958", "phone"),
    ("020 7946 0958", "phone"),
    ("07700 900 123", "phone"),
    ("01632-960-001", "phone"),
    ("0113.496.0000", "phone"),
    # Northern Ireland registrations, and GB ones with a dash
    ("IJZ 4812", "vehicle_registration"),
    ("AZ 1234", "vehicle_registration"),
    ("LIG 123", "vehicle_registration"),
    ("BFZ 9", "vehicle_registration"),
    ("AB12-CDE", "vehicle_registration"),
    # e-mail written to dodge a filter
    ("alex (at) example (dot) org", "email"),
    ("alex[at]example.org", "email"),
    ("alex at example dot org", "email"),
    ("alex.smith {at} example.co.uk", "email"),
    ("alex <at> mail (dot) example (dot) com", "email"),
]


def fullwidth(s: str) -> str:
    """ASCII to its full-width compatibility form (what NFKC folds back)."""
    return "".join("\u3000" if c == " " else chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)


def variants(token: str) -> dict[str, str]:
    out = {
        "raw": token,
        "upper": token.upper(),
        "lower": token.lower(),
        "title": token.title(),
        "fullwidth": fullwidth(token),
        "zero_width": "\u200b".join(token),
        "nbsp": token.replace(" ", "\u00a0"),
        "unicode_dash": token.replace("-", "\u2010"),
        "in_json": json.dumps({"result": 1, "parameters": {"quality": token}}),
        "labelled": f"id={token};",
    }
    if " " in token and not any(w in token.lower() for w in ("at", "dot")):
        out["dashes"] = token.replace(" ", "-")
    return out


@pytest.mark.parametrize(("token", "kind"), SHAPES)
def test_every_shape_is_found_in_every_variant(token: str, kind: str) -> None:
    assert find_identifier(token) == kind
    for name, v in variants(token).items():
        assert find_identifier(v) is not None, f"{name}: {v!r}"


@pytest.mark.parametrize(("token", "kind"), SHAPES)
def test_the_guard_blocks_and_counts_every_shape(token: str, kind: str) -> None:
    g = EgressGuard()
    for v in variants(token).values():
        assert not g.check_text(v).ok
    assert sum(g.blocked.values()) == len(variants(token)) and g.passed == 0


@pytest.mark.parametrize(("token", "kind"), SHAPES)
def test_the_log_scrubber_leaves_no_shape_behind(token: str, kind: str) -> None:
    for name, v in variants(token).items():
        line = scrub(f'level=error msg="device said {v}" sensor=s1')
        assert find_identifier(line) is None, f"{name}: {line}"
        assert normalise(v) not in line and re.search(r"\[[a-z_]+\]", line), line


# ------------------------------------------------------------------ the gateway's own words


def every_driver_config() -> str:
    lines = ["gateway: {id: camden-lc-0423, borough: camden, name: 'Camden High Street, lamp column 423',"
             " description: 'Air quality and footfall', location: {lat: 51.539, lon: -0.1426}, data_dir: /tmp/x}",
             "sensors:"]  # fmt: skip
    for i, d in enumerate(sorted(SERIAL_DRIVERS)):
        lines.append(f"  - {{id: s-{d.replace('_', '-')}, driver: {d}, serial: {{port: /dev/ttyUSB{i}}}}}")
    options = {
        "generic_json": "{fields: [{path: pm25, property: pm2_5, unit: ug/m3}, {path: note, property: note, type: category, allowed: [ok, fault]}]}",
        "senml": "{fields: [{suffix: ':temp', property: temperature, unit: Cel}, {suffix: ':state', property: state, type: category, allowed: [ok, fault]}]}",
    }
    for d in sorted(MESSAGE_DRIVERS):
        example = MESSAGE_DRIVERS[d].example_options
        opt = f", options: {options[d]}" if d in options else f", options: {json.dumps(example)}" if example else ""
        lines.append(f"  - {{id: m-{d.replace('_', '-')}, driver: {d}, mqtt: {{topic: 'x/{d}/#'}}{opt}}}")
    lines += ["inputs: {mqtt: {host: 127.0.0.1}}", "sinks: {file: {path: o.jsonl}}"]
    return "\n".join(lines) + "\n"


def test_entity_metadata_of_every_driver_passes() -> None:
    cfg = parse_config(every_driver_config(), "t.yaml", {})
    plan = build_plan(cfg)
    messages = entity_messages(plan)
    assert len(messages) > 100
    for topic, body in messages:
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        assert find_identifier(payload) is None, (topic, payload)
    for ds in plan.datastreams.values():
        assert len(str(ds.id)) == 16 and find_identifier(f"Datastreams({ds.id})/Observations") is None


def test_units_durations_and_ids_pass() -> None:
    assert find_identifier(json.dumps(sorted(UNITS))) is None
    for code in UNITS:
        assert find_identifier(f"value {code}") is None, code
    assert find_identifier(" ".join(iso_duration(s) for s in (1, 60, 900, 3600, 86400, 90061))) is None
    ids = [stable_id("datastream", "camden-lc-0423", f"s{i}", p) for i in range(200) for p in ("pm2_5", "co2")]
    assert find_identifier(json.dumps(ids)) is None


@settings(max_examples=300)
@given(
    t=st.datetimes(dt.datetime(2002, 1, 1), dt.datetime(2099, 12, 31)),  # 13-digit ms times
    width=st.sampled_from([900, 60, 3600, 86400]),
    result=st.one_of(st.integers(-(10**11) + 1, 10**11 - 1),
                     st.floats(-99_999_999_999.0, 99_999_999_999.0, allow_nan=False),
                     st.sampled_from(["AVAILABLE", "CHARGING", "OUTOFORDER", "BLOCKED", "INOPERATIVE", "UNKNOWN"]),
                     st.booleans(), st.none()),
    samples=st.integers(0, 10**9),
)
def test_observations_and_line_protocol_of_any_value_pass(
    t: dt.datetime, width: int, result: float | int | str | bool | None, samples: int
) -> None:
    ts = t.replace(tzinfo=dt.UTC).timestamp()
    ds = stable_id("datastream", "camden-lc-0423", "pm-north", "pm2_5")
    o = Observation(ds, "pm-north", "pm2_5", ts, ts + 0.25, result, ts + width,
                    {"aggregation": "mean", "period": iso_duration(width), "samples": samples})  # fmt: skip
    g = EgressGuard(frozenset({ds}))
    assert g.check_record(o.to_record()).ok, o.to_record()
    assert g.check_observation_json(json.dumps(o.sensorthings()).encode()).ok, o.sensorthings()
    if result is not None:
        line = encode(o, {"gateway": "camden-lc-0423", "borough": "camden", "sensor": "pm-north", "datastream": str(ds)})
        assert g.check_text(line).ok, line


def test_the_number_lengths_the_guard_blocks_are_the_documented_ones() -> None:
    """A bare run of 12 digits is a MAC without separators whose nibbles are all digits, and
    14-15 digits an IMEI or IMSI: the guard cannot tell them from a number, so a result with
    that many integer digits is blocked (fail closed). 13 (epoch ms) and 16 (Datastream ids)
    pass, as do up to 11 and any fractional digits."""
    blocked = {n for n in range(1, 21) if find_identifier(json.dumps({"r": int("9" * n)})) is not None}
    assert blocked == {12, 14, 15}
    assert find_identifier(json.dumps({"r": 0.123456789012345})) is None


# ------------------------------------------------------------------ through the profiles


FREE_TEXT = """
gateway: {id: camden-lc-0423, borough: camden, location: {lat: 51.539, lon: -0.1426}, data_dir: /tmp/x}
sensors:
  - {id: gj-1, driver: generic_json, mqtt: {topic: 'sensors/gj'}, options: {fields: [{path: pm25, property: pm2_5, unit: ug/m3}, {path: note, property: note, type: category, allowed: [ok, fault]}]}}
  - {id: senml-1, driver: senml, mqtt: {topic: 'senml/x'}, options: {fields: [{suffix: ':temp', property: temperature, unit: Cel}, {suffix: ':note', property: note, type: category, allowed: [ok, fault]}]}}
  - {id: ocpp-1, driver: ocpp16j, mqtt: {topic: 'ocpp/CB-1/in'}}
inputs: {mqtt: {host: 127.0.0.1}}
sinks: {file: {path: o.jsonl}}
"""

# The profiles whose devices send text that becomes a category value: (topic, payload with
# `text` in the category, the category's property, the reading's other property).
PROFILE_PAYLOADS = {
    "gj-1": ("sensors/gj", lambda text: json.dumps({"pm25": 9.5, "note": text}), "note", "pm2_5"),
    "senml-1": ("senml/x", lambda text: json.dumps([{"bn": "urn:dev:ow:10e2073a01080063:", "n": "temp", "u": "Cel", "v": 21.5},
                                                    {"n": "note", "vs": text}]), "note", "temperature"),
    "ocpp-1": ("ocpp/CB-1/in", lambda text: json.dumps([2, "s1", "StatusNotification", {"connectorId": 1, "errorCode": text,
                                                        "status": "Charging", "info": text}]), "error_code", "connector_status"),
}  # fmt: skip


def layers() -> tuple[object, PrivacyStage, EgressGuard]:
    cfg = parse_config(FREE_TEXT, "t.yaml", {})
    plan = build_plan(cfg)
    stage = PrivacyStage(plan, key_factory=lambda: b"k" * 32, salt_rotation_s=3600, started_at=0.0)
    return plan, stage, EgressGuard(frozenset(plan.datastreams), vocabularies=plan.vocabularies)


@pytest.mark.parametrize("sensor", sorted(PROFILE_PAYLOADS))
@pytest.mark.parametrize(("token", "kind"), SHAPES)
def test_a_shape_in_free_text_is_stopped_at_every_layer_on_its_own(sensor: str, token: str, kind: str) -> None:
    """Each layer stops the planted text by itself, so none relies on the one before: the
    decoder (the category's vocabulary), the privacy stage (given a reading that holds it) and
    the egress guard (given an Observation that holds it, as a record and as SensorThings JSON).
    Per observation: the reading's other property still leaves."""
    plan, stage, guard = layers()
    sp = plan.sensors[sensor]  # type: ignore[attr-defined]
    decoder = sp.driver.new_decoder(sp.options)
    topic, payload, prop, other = PROFILE_PAYLOADS[sensor]
    text = token if len(token) <= 64 else token[:64]
    for v in (text, text.upper(), fullwidth(text)[:64]):
        events = decoder.decode(topic, payload(v).encode())
        values: dict[str, object] = {}
        for e in events:
            values.update(getattr(e, "values", {}))
        assert prop not in values and other in values, (events, v)
        assert all(v not in getattr(e, "detail", "") for e in events)

        n = stage.dropped[(sensor, "not_in_vocabulary")]
        obs = stage.process(Reading(sensor, 10.0, {**values, prop: v}), 10.0)  # type: ignore[dict-item]
        assert {o.property for o in obs} >= {other} and prop not in {o.property for o in obs}
        assert stage.dropped[(sensor, "not_in_vocabulary")] == n + 1

        ds = sp.datastreams[prop].id
        planted = Observation(ds, sensor, prop, 10.0, 10.0, v)
        blocked = guard.blocked_by_sensor[(sensor, "not_in_vocabulary")]
        assert guard.check_record(planted.to_record()) == Verdict(False, "not_in_vocabulary")
        assert not guard.check_observation_json(json.dumps(planted.sensorthings()).encode()).ok
        assert guard.blocked_by_sensor[(sensor, "not_in_vocabulary")] == blocked + 2
        for o in obs:
            assert guard.check_record(o.to_record()).ok, o


def test_normalise_folds_compatibility_forms_and_keeps_ascii_as_is() -> None:
    assert normalise("３ｃ：２２：ｆｂ") == "3c:22:fb"
    assert normalise("a\u200bb\u00adc\u2060d") == "abcd"
    assert normalise("07700\u2013900\u2009123") == "07700-900 123"
    ascii_text = "pm2_5,gateway=x value=1.0 1764000000123"
    assert normalise(ascii_text) is ascii_text
    assert re.fullmatch(r"[\x00-\x7f]*", normalise("ｅｘａｍｐｌｅ＠ｍａｉｌ．ｏｒｇ"))
